"""One import, start to finish: download → verify → probe → thumbnail → upload.

The file name (and so the key) is usually known before the body arrives
(``--name`` or the URL's last segment): then the upload streams alongside the
download, and probing and the thumbnail run while the last parts are still in
flight. Only when the name needs the probed format (no usable name, or one
without an extension) does the upload start after probing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from . import filenames, thumbnail
from .config import Settings
from .download import DownloadLimits, download, redact
from .errors import JobError
from .netguard import AddressPolicy, GuardedPoolManager
from .probe import Probed, probe
from .result import FailureReason, ReadyResult
from .upload import (
    SINGLE_PUT_LIMIT,
    ClientPromise,
    StreamingUpload,
    Written,
    object_args,
    put_small,
    replace_metadata,
    storage_failure,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Workspace:
    """The private temp directory of one run (removed by the caller)."""

    root: Path

    @property
    def source(self) -> Path:
        # No extension: ffprobe must recognise the content, not trust a name.
        return self.root / "source"

    @property
    def thumbnail(self) -> Path:
        return self.root / "thumbnail.jpg"


def planned_name(settings: Settings) -> str | None:
    """The file name when it is known before probing (it has an extension), else None."""
    name = filenames.sanitize(settings.name) if settings.name else ""
    if not name:
        name = filenames.name_from_url(settings.url)
    return name if name and filenames.has_extension(name) else None


def final_name(settings: Settings, probed: Probed) -> str:
    name = filenames.sanitize(settings.name) if settings.name else ""
    if not name:
        name = filenames.name_from_url(settings.url)
    if not name:
        return filenames.default_name(probed.media_type, probed.extension)
    return filenames.with_extension(name, probed.extension)


def limits_from(settings: Settings) -> DownloadLimits:
    return DownloadLimits(
        max_bytes=settings.max_bytes,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        deadline=settings.download_timeout,
        min_rate=settings.min_rate,
        min_rate_window=settings.min_rate_window,
        retries=settings.retries,
    )


def verify_checksum(expected: str | None, actual: str) -> None:
    if expected is not None and expected != actual:
        raise JobError(
            FailureReason.CHECKSUM_MISMATCH,
            f"the file's SHA-256 is {actual}, expected {expected}",
            retryable=False,
        )


def run(settings: Settings, workspace: Workspace, clients: ClientPromise) -> ReadyResult:
    """Import ``settings.url``; raises ``JobError`` (or ``Terminated``) after cleaning up S3."""
    http = GuardedPoolManager(AddressPolicy(settings.allow_networks), num_pools=4, maxsize=1)
    written = Written(clients, settings.bucket)
    name = planned_name(settings)
    streaming = None
    if name is not None:
        streaming = StreamingUpload(
            clients,
            settings.bucket,
            f"{settings.key_prefix}/{name}",
            workspace.source,
            max_bytes=settings.max_bytes,
            concurrency=settings.upload_concurrency,
        )
    try:
        log.info("downloading %s", redact(settings.url))
        downloaded = download(
            settings.url, workspace.source, http, limits_from(settings), sink=streaming
        )
        log.info("downloaded %d bytes, sha256 %s", downloaded.size, downloaded.sha256)
        if streaming is not None:
            streaming.finish(downloaded.size)  # the last parts go up while we probe
        verify_checksum(settings.sha256, downloaded.sha256)
        probed = probe(workspace.source, settings.media_type, name_hint=name or "")
        log.info("probed: %s %s", probed.media_type, probed.media.model_dump_json())
        thumb = None
        if probed.video_stream is not None:
            thumb = thumbnail.render(
                workspace.source,
                workspace.thumbnail,
                width=settings.thumbnail_width,
                at=settings.thumbnail_at,
                duration=probed.media.duration,
                stream=probed.video_stream,
            )
        key = f"{settings.key_prefix}/{name or final_name(settings, probed)}"
        streaming = _store_media(
            settings, workspace, clients, written, streaming,
            key=key, size=downloaded.size, content_type=probed.content_type,
            sha256=downloaded.sha256,
        )  # fmt: skip
        thumbnail_key = None
        if thumb is not None:
            thumbnail_key = f"{settings.key_prefix}/{filenames.THUMBNAIL_NAME}"
            written.add(thumbnail_key)
            _storage(
                put_small, clients.get(), settings.bucket, thumbnail_key, thumb,
                content_type="image/jpeg", sha256=_sha256_file(thumb),
            )  # fmt: skip
    except BaseException:
        # Whatever happened (a failure, SIGTERM), nothing half-written may remain.
        if streaming is not None:
            streaming.abort()
        written.delete_all()
        raise
    finally:
        http.clear()
    log.info("stored s3://%s/%s", settings.bucket, key)
    return ReadyResult(
        type=probed.media_type,
        bucket=settings.bucket,
        key=key,
        thumbnailKey=thumbnail_key,
        name=key.rsplit("/", 1)[-1],
        size=downloaded.size,
        sha256=downloaded.sha256,
        contentType=probed.content_type,
        media=probed.media,
    )


def _store_media(
    settings: Settings,
    workspace: Workspace,
    clients: ClientPromise,
    written: Written,
    streaming: StreamingUpload | None,
    *,
    key: str,
    size: int,
    content_type: str,
    sha256: str,
) -> StreamingUpload | None:
    """Make the verified file the object at ``key``; returns the upload to abort on failure."""
    if streaming is not None and streaming.multipart:
        streaming.complete()
        written.add(key)
        _storage(
            replace_metadata, clients.get(), settings.bucket, key,
            size=size, content_type=content_type, sha256=sha256,
        )  # fmt: skip
        return streaming
    written.add(key)
    if size <= SINGLE_PUT_LIMIT:
        _storage(
            put_small, clients.get(), settings.bucket, key, workspace.source,
            content_type=content_type, sha256=sha256,
        )  # fmt: skip
        return streaming
    # The key needed the probe: upload now, with the final metadata up front.
    upload = StreamingUpload(
        clients, settings.bucket, key, workspace.source,
        max_bytes=size, concurrency=settings.upload_concurrency,
        create_args=object_args(content_type, sha256),
    )  # fmt: skip
    try:
        upload.expect(size)
        upload.written(size)
        upload.finish(size)
        upload.complete()
    except BaseException:
        upload.abort()
        raise
    return upload


def _storage(action: Callable[..., None], *args: object, **kwargs: object) -> None:
    """Call an S3 helper, turning boto errors into a result-ready JobError."""
    try:
        action(*args, **kwargs)
    except (BotoCoreError, ClientError) as exc:
        raise storage_failure(exc, f"writing s3://{args[1]}/{args[2]}") from None


def _sha256_file(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
