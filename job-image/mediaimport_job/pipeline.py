"""One import, start to finish: download → verify → probe → thumbnail → upload.

The file name (and so the key) is usually known before the body arrives
(``--name`` or the URL's last segment): then the upload streams alongside the
download, probing runs while the last parts are still in flight, and once the
probe has accepted the file the upload is completed (and its metadata set) on a
background thread while the thumbnail is rendered and stored. Only when the
name needs the probed format (no usable name, or one without an extension)
does the upload start after probing.

Where the objects go is the ``Storage`` the caller picks (``upload.DirectStorage``
with the pod's S3 credentials, or ``brokered.BrokeredStorage`` through the
operator's channel); the steps report to a ``progress.Tracker``, and ``finish``
(the channel's result submission) runs before the run counts as done, so a
refused result still cleans up like any failure.

What only the steps after the download need (ffprobe's result models, i.e.
pydantic) is imported lazily, ahead of time on a background thread
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
from .download import DownloadLimits, Sink, download
from .errors import JobError, Terminated
from .netguard import AddressPolicy, GuardedPoolManager
from .progress import Tracker
from .reasons import FailureReason
from .upload import SINGLE_PUT_LIMIT, Storage, StreamingUpload, Written
from .urls import redact

if TYPE_CHECKING:
    from .probe import Probed
    from .result import ReadyResult

T = TypeVar("T")

# Imported after the download; ``warm_up`` loads them while it runs.
# Seconds of the grace period kept for writing the result and exiting after the cleanup.
CLEANUP_MARGIN = 5.0
_LATER_MODULES = (
    "mediaimport_job.result",
    "mediaimport_job.probe",
    "mediaimport_job.thumbnail",
    "mediaimport_job.channel_protocol",
)

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


def start_warm_up() -> threading.Thread:
    """``warm_up`` on a daemon thread (where no S3 client is built to chain it to)."""

    def run() -> None:
        try:
            warm_up()
        except Exception:
            log.debug("background warm-up failed", exc_info=True)

    thread = threading.Thread(target=run, name="warm-up", daemon=True)
    thread.start()
    return thread


class _TrackedSink:
    """The download's sink: tells the tracker, then the streaming upload (if any)."""

    def __init__(self, upload: StreamingUpload | None, tracker: Tracker) -> None:
        self.upload = upload
        self.tracker = tracker

    def expect(self, size: int | None) -> None:
        self.tracker.expect_download(size)
        if self.upload is not None:
            self.upload.expect(size)

    def written(self, offset: int) -> None:
        self.tracker.downloaded(offset)
        if self.upload is not None:
            self.upload.written(offset)

    def restart(self) -> None:
        self.tracker.download_restarted()
        if self.upload is not None:
            self.upload.restart()


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


def run(
    settings: Settings,
    workspace: Workspace,
    storage: Storage,
    *,
    tracker: Tracker | None = None,
    finish: Callable[[ReadyResult], None] | None = None,
) -> ReadyResult:
    """Import ``settings.url``; raises ``JobError`` (or ``Terminated``) after cleaning up S3.

    ``finish`` gets the result once everything is stored (the channel's submission); if
    it raises, the run fails and is cleaned up like any other failure.
    """
    tracker = tracker if tracker is not None else Tracker()
    http = GuardedPoolManager(
        AddressPolicy(settings.allow_networks), settings.download_proxy, num_pools=4, maxsize=1
    )
    written = Written(storage)
    name = planned_name(settings)
    streaming = None
    storing: Future[None] | None = None  # the media object, stored in the background
    if name is not None:
        streaming = StreamingUpload(
            storage,
            f"{settings.key_prefix}/{name}",
            workspace.source,
            max_bytes=max_file_bytes(settings)[0],
            concurrency=settings.upload_concurrency,
            tracker=tracker,
        )
        written.add_upload(streaming)
    sink: Sink = _TrackedSink(streaming, tracker)
    try:
        proxy = settings.download_proxy
        via = f" through the proxy {proxy.where}" if proxy else ""
        log.info("downloading %s%s", redact(settings.url), via)
        downloaded = download(
            settings.url, workspace.source, http, limits_from(settings), sink=sink
        )
        log.info("downloaded %d bytes, sha256 %s", downloaded.size, downloaded.sha256)
        tracker.download_done(downloaded.size)
        tracker.set_phase("probing")
        if streaming is not None:
            streaming.finish(downloaded.size)  # the last parts go up while we probe
        verify_checksum(settings.sha256, downloaded.sha256)
        from .probe import probe  # noqa: PLC0415 - see warm_up

        probed = probe(workspace.source, settings.media_type, name_hint=name or "")
        tracker.probe_done()
        log.info("probed: %s %s", probed.media_type, probed.media.model_dump_json())
        key = f"{settings.key_prefix}/{name or final_name(settings, probed)}"

        def store() -> None:
            _store_media(
                settings, workspace, storage, written, streaming, tracker=tracker,
                key=key, size=downloaded.size, content_type=probed.content_type,
                sha256=downloaded.sha256,
            )  # fmt: skip

        if (streaming is not None and streaming.multipart) or downloaded.size <= SINGLE_PUT_LIMIT:
            # Completing the upload and the metadata copy are S3 round trips (and the
            # last parts draining): overlap them with ffmpeg.
            storing = _in_background("store-media", store)
        else:
            # The whole upload still lies ahead: keep it where SIGTERM can abort it.
            tracker.set_phase("uploading")
            store()
        thumbnail_key = _thumbnail(
            settings, workspace, storage, written=written, tracker=tracker, probed=probed,
            storing=storing,
        )  # fmt: skip
        if storing is not None:
            storing.result()
        log.info("stored s3://%s/%s", settings.bucket, key)
        from .result import ReadyResult  # noqa: PLC0415 - see warm_up

        ready = ReadyResult(
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
        tracker.set_phase("finishing")
        tracker.done()
        if finish is not None:
            finish(ready)
    except BaseException:
        # Whatever happened (a failure, SIGTERM), nothing half-written may remain.
        clean_up(written, storing, cleanup_budget(settings.grace_period))
        raise
    finally:
        http.clear()
    return ready


def _thumbnail(
    settings: Settings,
    workspace: Workspace,
    storage: Storage,
    *,
    written: Written,
    tracker: Tracker,
    probed: Probed,
    storing: Future[None] | None,
) -> str | None:
    """Render and store the thumbnail (of a file with pictures); returns its key.

    Not stored when storing the media has failed meanwhile: a brokered run could not
    delete it again."""
    from . import thumbnail  # noqa: PLC0415 - see warm_up

    if probed.video_stream is None:
        tracker.render_fraction(1.0)  # nothing to render
        tracker.set_phase("uploading")
        return None
    tracker.set_phase("rendering")
    thumb = thumbnail.render(
        workspace.source,
        workspace.thumbnail,
        width=settings.thumbnail_width,
        at=settings.thumbnail_at,
        duration=probed.media.duration,
        stream=probed.video_stream,
        on_fraction=tracker.render_fraction,
    )
    tracker.set_phase("uploading")
    if storing is not None and storing.done():
        storing.result()  # raises its failure
    thumbnail_size = thumb.stat().st_size
    tracker.expect_upload((tracker.bytes_total or 0) + thumbnail_size)
    key = f"{settings.key_prefix}/{filenames.THUMBNAIL_NAME}"
    written.add(key)
    storage.put_file(key, thumb, content_type="image/jpeg", sha256=_sha256_file(thumb))
    tracker.uploaded(thumbnail_size)
    return key


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
        "an object of this run",
        budget,
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
    storage: Storage,
    written: Written,
    streaming: StreamingUpload | None,
    *,
    tracker: Tracker,
    key: str,
    size: int,
    content_type: str,
    sha256: str,
) -> None:
    """Make the verified file the object at ``key`` (the run's cleanup undoes it on failure)."""
    if streaming is not None and streaming.multipart:
        written.add(key)  # before completing: a completion cut short is cleaned up too
        streaming.complete(size=size, content_type=content_type, sha256=sha256)
        return
    written.add(key)
    if size <= SINGLE_PUT_LIMIT:
        storage.put_file(key, workspace.source, content_type=content_type, sha256=sha256)
        tracker.uploaded(size)
        return
    # The key needed the probe: upload now, with the final metadata up front.
    upload = StreamingUpload(
        storage, key, workspace.source,
        max_bytes=size, concurrency=settings.upload_concurrency,
        content_type=content_type, sha256=sha256, tracker=tracker,
    )  # fmt: skip
    written.add_upload(upload)  # aborted by the run's cleanup if it fails
    upload.expect(size)
    upload.written(size)
    upload.finish(size)
    upload.complete(size=size, content_type=content_type, sha256=sha256)


def _sha256_file(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
