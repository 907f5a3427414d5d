"""One import, start to finish: download → verify → probe → thumbnail → upload.

The file name (and so the key) is usually known before the body arrives
(``--name`` or the URL's last segment): then the upload streams alongside the
download, probing runs while the last parts are still in flight, and once the
probe has accepted the file the upload is completed (and its metadata set) on a
background thread while the thumbnail is rendered and stored. Only when the
name needs the probed format (no usable name, or one without an extension)
does the upload start after probing.

What only the steps after the download need (ffprobe's result models, i.e.
pydantic) is imported lazily, ahead of time on the S3 client's thread
(``warm_up``), so the first request goes out sooner.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from . import filenames
from .config import Settings
from .download import DownloadLimits, download, redact
from .errors import JobError
from .netguard import AddressPolicy, GuardedPoolManager
from .reasons import FailureReason
from .upload import (
    CLEANUP_WAIT,
    SINGLE_PUT_LIMIT,
    ClientPromise,
    StreamingUpload,
    Written,
    boto_errors,
    object_args,
    put_small,
    replace_metadata,
    storage_failure,
)

if TYPE_CHECKING:
    from .probe import Probed
    from .result import ReadyResult

T = TypeVar("T")

# Imported after the download; ``warm_up`` loads them while it runs.
_LATER_MODULES = ("mediaimport_job.result", "mediaimport_job.probe", "mediaimport_job.thumbnail")

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


def warm_up() -> None:
    """Import the modules the steps after the download need (run on a background thread)."""
    for module in _LATER_MODULES:
        importlib.import_module(module)


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
    storing: Future[StreamingUpload | None] | None = None  # the media object, in the background
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
        from . import thumbnail  # noqa: PLC0415 - see warm_up
        from .probe import probe  # noqa: PLC0415

        probed = probe(workspace.source, settings.media_type, name_hint=name or "")
        log.info("probed: %s %s", probed.media_type, probed.media.model_dump_json())
        key = f"{settings.key_prefix}/{name or final_name(settings, probed)}"

        def store() -> StreamingUpload | None:
            return _store_media(
                settings, workspace, clients, written, streaming,
                key=key, size=downloaded.size, content_type=probed.content_type,
                sha256=downloaded.sha256,
            )  # fmt: skip

        if (streaming is not None and streaming.multipart) or downloaded.size <= SINGLE_PUT_LIMIT:
            # Completing the upload and the metadata copy are S3 round trips (and the
            # last parts draining): overlap them with ffmpeg.
            storing = _in_background("store-media", store)
        else:
            # The whole upload still lies ahead: keep it where SIGTERM can abort it.
            streaming = store()
        thumbnail_key = None
        if probed.video_stream is not None:
            thumb = thumbnail.render(
                workspace.source,
                workspace.thumbnail,
                width=settings.thumbnail_width,
                at=settings.thumbnail_at,
                duration=probed.media.duration,
                stream=probed.video_stream,
            )
            thumbnail_key = f"{settings.key_prefix}/{filenames.THUMBNAIL_NAME}"
            written.add(thumbnail_key)
            _storage(
                put_small, clients.get(), settings.bucket, thumbnail_key, thumb,
                content_type="image/jpeg", sha256=_sha256_file(thumb),
            )  # fmt: skip
        if storing is not None:
            storing.result()
    except BaseException:
        # Whatever happened (a failure, SIGTERM), nothing half-written may remain.
        if storing is not None:
            # Let the background store end first (fast: its queued parts are dropped),
            # so it cannot complete the upload after the cleanup below.
            if streaming is not None:
                streaming.cancel()
            wait([storing], timeout=CLEANUP_WAIT)
        if streaming is not None:
            streaming.abort()
        written.delete_all()
        raise
    finally:
        http.clear()
    log.info("stored s3://%s/%s", settings.bucket, key)
    from .result import ReadyResult  # noqa: PLC0415 - see warm_up

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


def _in_background(name: str, action: Callable[[], T]) -> Future[T]:
    """Run ``action`` on a daemon thread; its result or exception lands in the future."""
    future: Future[T] = Future()

    def target() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = action()
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future


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
        written.add(key)  # before completing: a completion cut short is cleaned up too
        streaming.complete()
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
    except boto_errors() as exc:
        raise storage_failure(exc, f"writing s3://{args[1]}/{args[2]}") from None


def _sha256_file(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
