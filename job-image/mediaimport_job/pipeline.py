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
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from . import filenames
from .config import TMP_RESERVE, Settings
from .download import DownloadLimits, download
from .errors import JobError, Terminated
from .netguard import AddressPolicy, GuardedPoolManager
from .reasons import FailureReason
from .upload import (
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
from .urls import redact

if TYPE_CHECKING:
    from .probe import Probed
    from .result import ReadyResult

T = TypeVar("T")

# Imported after the download; ``warm_up`` loads them while it runs.
# Seconds of the grace period kept for writing the result and exiting after the cleanup.
CLEANUP_MARGIN = 5.0
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


def max_file_bytes(settings: Settings) -> tuple[int, str | None]:
    """The largest file this run accepts, and what sets it (for the TooLarge message).

    A download must fit the temporary volume: past the pod's /tmp sizeLimit the
    kubelet evicts the pod, and an eviction is retried forever.
    """
    if settings.tmp_limit is not None and settings.tmp_limit - TMP_RESERVE < settings.max_bytes:
        room = settings.tmp_limit - TMP_RESERVE
        return room, (
            f"the {room} bytes the job's temporary volume has room for (--tmp-limit "
            f"{settings.tmp_limit} less {TMP_RESERVE // 1024**2} MiB for the thumbnail)"
        )
    return settings.max_bytes, None


def limits_from(settings: Settings) -> DownloadLimits:
    max_bytes, reason = max_file_bytes(settings)
    return DownloadLimits(
        max_bytes=max_bytes,
        max_bytes_reason=reason,
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
    http = GuardedPoolManager(
        AddressPolicy(settings.allow_networks), settings.download_proxy, num_pools=4, maxsize=1
    )
    written = Written(clients, settings.bucket)
    name = planned_name(settings)
    streaming = None
    storing: Future[None] | None = None  # the media object, stored in the background
    if name is not None:
        streaming = StreamingUpload(
            clients,
            settings.bucket,
            f"{settings.key_prefix}/{name}",
            workspace.source,
            max_bytes=max_file_bytes(settings)[0],
            concurrency=settings.upload_concurrency,
        )
        written.add_upload(streaming)
    try:
        proxy = settings.download_proxy
        via = f" through the proxy {proxy.where}" if proxy else ""
        log.info("downloading %s%s", redact(settings.url), via)
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

        def store() -> None:
            _store_media(
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
            store()
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
        clean_up(written, storing, cleanup_budget(settings.grace_period))
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


def cleanup_budget(grace_period: float) -> float:
    """Seconds the cleanup may take: the pod's grace period less a margin for writing
    the result and exiting before the kubelet's SIGKILL."""
    return max(1.0, grace_period - CLEANUP_MARGIN)


def clean_up(written: Written, storing: Future[None] | None, budget: float) -> None:
    """Abort the uploads and delete the objects of a failed run, within ``budget`` seconds.

    The aborts go out first, so nothing can complete an upload afterwards; then the
    background store ends (it may be copying an object's metadata), the objects are
    deleted, and running parts get the time left to end before the uploads are
    aborted again (a part in flight may land after the first abort). It runs on a
    thread of its own so an S3 call that hangs cannot hold the result document past
    the grace period: what is left then is logged (a bucket lifecycle rule for
    incomplete multipart uploads is the backstop). A SIGTERM meanwhile shortens the
    wait, it does not end it.
    """
    deadline = time.monotonic() + budget

    def steps() -> None:
        written.cancel_uploads()
        if storing is not None:
            wait([storing], timeout=max(0.0, deadline - time.monotonic()))
        written.delete_all()
        # Parts still running get what is left, less a second for the last abort request.
        written.abort_uploads(max(0.0, deadline - time.monotonic() - 1.0))

    done = _in_background("cleanup", steps)
    while True:
        try:
            done.result(timeout=max(0.0, deadline - time.monotonic()))
        except Terminated:
            # Stopped while cleaning up after another failure: that failure is the
            # result; the cleanup still ends within the grace period.
            deadline = min(deadline, time.monotonic() + budget)
            continue
        except TimeoutError:
            break
        except Exception:
            log.exception("the cleanup failed")
        return
    log.warning(
        "the cleanup did not finish within %.0f s; S3 may keep an incomplete upload or "
        "an object of this run", budget,
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
) -> None:
    """Make the verified file the object at ``key`` (the run's cleanup undoes it on failure)."""
    if streaming is not None and streaming.multipart:
        written.add(key)  # before completing: a completion cut short is cleaned up too
        streaming.complete()
        _storage(
            replace_metadata, clients.get(), settings.bucket, key,
            size=size, content_type=content_type, sha256=sha256,
        )  # fmt: skip
        return
    written.add(key)
    if size <= SINGLE_PUT_LIMIT:
        _storage(
            put_small, clients.get(), settings.bucket, key, workspace.source,
            content_type=content_type, sha256=sha256,
        )  # fmt: skip
        return
    # The key needed the probe: upload now, with the final metadata up front.
    upload = StreamingUpload(
        clients, settings.bucket, key, workspace.source,
        max_bytes=size, concurrency=settings.upload_concurrency,
        create_args=object_args(content_type, sha256),
    )  # fmt: skip
    written.add_upload(upload)  # aborted by the run's cleanup if it fails
    upload.expect(size)
    upload.written(size)
    upload.finish(size)
    upload.complete()


def _storage(action: Callable[..., None], *args: object, **kwargs: object) -> None:
    """Call an S3 helper, turning boto errors into a result-ready JobError."""
    try:
        action(*args, **kwargs)
    except boto_errors() as exc:
        raise storage_failure(exc, f"writing s3://{args[1]}/{args[2]}") from None


def _sha256_file(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
