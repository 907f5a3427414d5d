"""S3 side: a multipart upload that follows the download, and cleanup on failure.

Two ways to write, behind one small interface (``Storage`` / ``MultipartTarget``):
``DirectStorage``, a botocore client with the pod's own credentials (the AWS_*
variables), and ``brokered.BrokeredStorage``, presigned requests from the operator's
channel (no S3 credential in the pod). ``StreamingUpload``, ``Written`` and the pipeline
only see the interface.

Why overlap: at equal download and upload rates, downloading first and
uploading after takes twice as long as doing both at once. ``StreamingUpload``
is the download's sink: each time another full part is on disk it queues an
UploadPart whose body is a seekable reader over that range of the file
(``FileSlice``, ``os.preadv`` into botocore's own buffers), so no part is ever
held in memory whole, however large the file is.

The object only appears when the upload completes, after the file has been
verified and probed. Its Content-Type and SHA-256 are only known then, so for
an overlapped upload they are set afterwards by copying the object onto itself
with ``MetadataDirective=REPLACE`` (a server-side copy; a managed multipart copy
above 5 GiB). Everything this run creates is tracked in ``Written`` so any
failure, SIGTERM included, aborts the multipart upload and deletes the objects.
Keys are deterministic, so a second run of the same pod overwrites, never
duplicates.

boto3 and botocore are imported lazily: ``make_client`` runs on the
``ClientPromise`` thread, so their ~0.1-0.2 s of imports overlap the download
instead of delaying its first request; everything else here that touches them
runs only once a client exists.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    InvalidStateError,
    ThreadPoolExecutor,
    wait,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from .errors import JobError
from .reasons import FailureReason

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer
    from mypy_boto3_s3 import S3Client

    from .progress import Tracker

log = logging.getLogger(__name__)

# Which attempt (pod) wrote an object: the pod's uid (the operator passes it through the
# downward API), else one of this process's own. Stored as object metadata, it keeps a
# failed attempt's cleanup from deleting what a newer attempt stored under the same keys.
ATTEMPT_KEY = "attempt"
ATTEMPT = os.environ.get("MEDIAIMPORT_ATTEMPT") or uuid.uuid4().hex

MiB = 1024 * 1024
SINGLE_PUT_LIMIT = 16 * MiB  # below this one PutObject beats a multipart round trip
MIN_PART_SIZE = 5 * MiB  # S3's minimum; small parts start the upload sooner
MAX_PARTS = 10_000
MAX_COPY_OBJECT = 5 * 1024**3  # CopyObject's limit; larger copies go multipart
CLEANUP_WAIT = 15.0  # seconds to let in-flight parts finish before aborting
# Error codes that no retry can fix: wrong credentials, bucket or permissions.
_PERMANENT_CODES = {
    "AccessDenied",
    "AllAccessDisabled",
    "AuthorizationHeaderMalformed",
    "InvalidAccessKeyId",
    "InvalidBucketName",
    "InvalidRequest",
    "NoSuchBucket",
    "SignatureDoesNotMatch",
}


def boto_errors(*also: type[Exception]) -> tuple[type[Exception], ...]:
    """botocore's exception types (and ``also``), for ``except`` clauses around S3 calls.

    A function, not module constants, so importing this module does not import
    botocore; by the time an S3 call can raise, the client has loaded it.
    """
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - lazy

    return (BotoCoreError, ClientError, *also)


def make_client(concurrency: int) -> S3Client:
    """An S3 client from the standard AWS environment variables.

    Checksums are only sent where S3 requires them: botocore's newer default
    (CRC32 on every upload) is not understood by every S3-compatible store, and
    our own SHA-256 goes into the object's metadata anyway. Runs on the
    ``ClientPromise`` thread, which is why botocore is imported here.

    A plain botocore client: every call the job makes is botocore's own, and
    skipping boto3 (its session, resource factories and the s3transfer methods
    it injects into S3 clients) makes the client ready, and so the upload
    start, ~0.05 s sooner. Only the managed copy above 5 GiB uses s3transfer.
    """
    import botocore.session  # noqa: PLC0415 - lazy: off the download's start-up path
    from botocore.config import Config  # noqa: PLC0415

    config = Config(
        connect_timeout=10,
        read_timeout=60,
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=concurrency + 4,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return cast("S3Client", botocore.session.get_session().create_client("s3", config=config))


def part_size_for(expected_size: int) -> int:
    """A part size that fits ``expected_size`` into S3's 10,000 parts, in whole MiB."""
    needed = -(-expected_size // MAX_PARTS)
    return max(MIN_PART_SIZE, -(-needed // MiB) * MiB)


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return str((response or {}).get("Error", {}).get("Code", "")) if response else ""


def storage_failure(exc: BaseException, action: str) -> JobError:
    """Map a boto3 error to the result: configuration errors are permanent."""
    if isinstance(exc, JobError):
        return exc
    if "botocore.exceptions" not in sys.modules:  # brokered: botocore is never loaded
        return JobError(
            FailureReason.UPLOAD_FAILED,
            f"{action}: {type(exc).__name__}: {exc}"[:500],
            retryable=True,
        )
    from botocore.exceptions import ClientError, NoCredentialsError  # noqa: PLC0415 - lazy

    if isinstance(exc, NoCredentialsError):
        return JobError(
            FailureReason.UPLOAD_FAILED,
            f"{action}: no S3 credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
            retryable=False,
        )
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", "")) or str(exc)
        return JobError(
            FailureReason.UPLOAD_FAILED,
            f"{action}: S3 answered {code}: {message}"[:500],
            retryable=code not in _PERMANENT_CODES,
        )
    return JobError(
        FailureReason.UPLOAD_FAILED, f"{action}: {type(exc).__name__}: {exc}"[:500], retryable=True
    )


class MultipartTarget(Protocol):
    """One created multipart upload."""

    upload_id: str

    def upload_part(self, number: int, body: FileSlice) -> str:
        """Send part ``number`` (the whole of ``body``, streamed); returns its ETag."""

    def complete(
        self, parts: list[tuple[int, str]], *, size: int, content_type: str, sha256: str
    ) -> None:
        """Complete with (part number, ETag) in order; the object then has ``content_type``
        and the ``sha256`` metadata."""

    def abort(self) -> None:
        """Abort; an upload already aborted or completed is no error. Raises JobError."""


class Storage(Protocol):
    """The writes an import makes. Every method raises ``JobError`` on failure."""

    bucket: str
    # Whether a failed run deletes the objects it wrote itself; brokered runs cannot
    # (the channel grants writes only) and leave that to the operator.
    deletes_own: bool

    def put_file(self, key: str, path: Path, *, content_type: str, sha256: str) -> None:
        """Store a small file as one object, with its final metadata."""

    def create_multipart(
        self,
        key: str,
        *,
        parts: int | None,
        content_type: str | None = None,
        sha256: str | None = None,
    ) -> MultipartTarget:
        """Start a multipart upload of (about) ``parts`` parts, None: unknown; with the
        final metadata when it is known already."""

    def delete_own(self, key: str) -> None:
        """Delete ``key`` if this attempt wrote it (only where ``deletes_own``)."""


class DirectStorage:
    """The pod's own S3 credentials, through a botocore client built in the background."""

    deletes_own = True

    def __init__(self, clients: ClientPromise, bucket: str) -> None:
        self.clients = clients
        self.bucket = bucket

    def put_file(self, key: str, path: Path, *, content_type: str, sha256: str) -> None:
        try:
            put_small(
                self.clients.get(), self.bucket, key, path,
                content_type=content_type, sha256=sha256,
            )  # fmt: skip
        except boto_errors() as exc:
            raise storage_failure(exc, f"writing s3://{self.bucket}/{key}") from None

    def create_multipart(
        self,
        key: str,
        *,
        parts: int | None,
        content_type: str | None = None,
        sha256: str | None = None,
    ) -> MultipartTarget:
        # The attempt is in the metadata from the start: a cleanup may come before the
        # final metadata is set (``replace_metadata``).
        final = content_type is not None and sha256 is not None
        args = (
            object_args(content_type, sha256)
            if content_type is not None and sha256 is not None
            else {"Metadata": {ATTEMPT_KEY: ATTEMPT}}
        )
        try:
            created = self.clients.get().create_multipart_upload(
                Bucket=self.bucket, Key=key, **args
            )
        except boto_errors() as exc:
            raise storage_failure(exc, "starting the multipart upload") from None
        return _DirectMultipart(self, key, created["UploadId"], final_metadata=final)

    def delete_own(self, key: str) -> None:
        client = self.clients.get()
        try:
            head = client.head_object(Bucket=self.bucket, Key=key)
        except boto_errors(JobError) as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return  # never created (or already gone)
            raise
        if head.get("Metadata", {}).get(ATTEMPT_KEY) != ATTEMPT:
            log.info("left s3://%s/%s: another attempt wrote it", self.bucket, key)
            return
        client.delete_object(Bucket=self.bucket, Key=key)


class _DirectMultipart:
    def __init__(
        self, storage: DirectStorage, key: str, upload_id: str, *, final_metadata: bool
    ) -> None:
        self.storage = storage
        self.key = key
        self.upload_id = upload_id
        self.final_metadata = final_metadata

    def upload_part(self, number: int, body: FileSlice) -> str:
        try:
            answer = self.storage.clients.get().upload_part(
                Bucket=self.storage.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=body,  # type: ignore[arg-type]
                ContentLength=len(body),
            )
        except boto_errors() as exc:
            raise storage_failure(exc, f"uploading part {number}") from None
        return answer["ETag"]

    def complete(
        self, parts: list[tuple[int, str]], *, size: int, content_type: str, sha256: str
    ) -> None:
        client, bucket = self.storage.clients.get(), self.storage.bucket
        try:
            client.complete_multipart_upload(
                Bucket=bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": number, "ETag": etag} for number, etag in parts]
                },
            )
        except boto_errors() as exc:
            raise storage_failure(exc, "completing the multipart upload") from None
        if self.final_metadata:
            return
        try:
            replace_metadata(
                client, bucket, self.key, size=size, content_type=content_type, sha256=sha256
            )
        except boto_errors() as exc:
            raise storage_failure(exc, f"writing s3://{bucket}/{self.key}") from None

    def abort(self) -> None:
        try:
            self.storage.clients.get().abort_multipart_upload(
                Bucket=self.storage.bucket, Key=self.key, UploadId=self.upload_id
            )
        except boto_errors(JobError) as exc:
            if _error_code(exc) == "NoSuchUpload":  # aborted (or completed) already
                return
            raise storage_failure(exc, "aborting the multipart upload") from None


@dataclass
class Written:
    """What this run created (or is creating) in S3, removed again when the run fails:
    objects, and multipart uploads not yet completed.

    Keys are added before the request that creates them, so an object whose
    creation was cut short is deleted too (deleting a missing key is a no-op); but only
    an object this attempt wrote (its ``attempt`` metadata is ``ATTEMPT``): a newer
    attempt of the same import (another pod, the same keys) keeps what it stored.
    Where the storage cannot delete (brokered), the objects are left to the operator,
    which deletes what a failed import wrote. Thread-safe: the media object and the
    thumbnail are stored concurrently.
    """

    storage: Storage
    keys: list[str] = field(default_factory=list)
    uploads: list[StreamingUpload] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def bucket(self) -> str:
        return self.storage.bucket

    def add(self, key: str) -> None:
        with self._lock:
            if key not in self.keys:
                self.keys.append(key)

    def add_upload(self, upload: StreamingUpload) -> None:
        with self._lock:
            self.uploads.append(upload)

    def cancel_uploads(self) -> None:
        """Drop queued parts and send the aborts now (does not wait for running parts)."""
        for upload in self._uploads():
            upload.cancel()
            upload.send_abort()

    def abort_uploads(self, timeout: float) -> None:
        """Let running parts end (at most ``timeout`` seconds in all), abort again."""
        deadline = time.monotonic() + timeout
        for upload in self._uploads():
            upload.abort(max(0.0, deadline - time.monotonic()))

    def delete_all(self) -> None:
        with self._lock:
            keys, self.keys = self.keys, []
        if not self.storage.deletes_own:
            if keys:
                log.info(
                    "left %d key(s) of this run for the operator to delete: %s",
                    len(keys), ", ".join(keys),
                )  # fmt: skip
            return
        for key in keys:
            try:
                self.storage.delete_own(key)
            except Exception:
                log.exception("could not delete s3://%s/%s after a failure", self.bucket, key)

    def _uploads(self) -> list[StreamingUpload]:
        with self._lock:
            return list(self.uploads)


def object_args(content_type: str, sha256: str) -> dict[str, Any]:
    return {"ContentType": content_type, "Metadata": {"sha256": sha256, ATTEMPT_KEY: ATTEMPT}}


def put_small(
    client: S3Client, bucket: str, key: str, path: Path, *, content_type: str, sha256: str
) -> None:
    with path.open("rb") as body:
        client.put_object(Bucket=bucket, Key=key, Body=body, **object_args(content_type, sha256))


def replace_metadata(
    client: S3Client, bucket: str, key: str, *, size: int, content_type: str, sha256: str
) -> None:
    """Set Content-Type and the sha256 metadata of an existing object (copy onto itself)."""
    source = {"Bucket": bucket, "Key": key}
    args = {"MetadataDirective": "REPLACE", **object_args(content_type, sha256)}
    if size <= MAX_COPY_OBJECT:
        client.copy_object(Bucket=bucket, Key=key, CopySource=source, **args)  # type: ignore[arg-type]
        return
    # CopyObject stops at 5 GiB; the managed copy switches to UploadPartCopy (what
    # boto3's injected ``client.copy`` does; the job's client is plain botocore).
    from boto3.s3.transfer import TransferConfig, create_transfer_manager  # noqa: PLC0415

    config = TransferConfig(
        multipart_threshold=MAX_COPY_OBJECT,
        multipart_chunksize=part_size_for(size),
        max_concurrency=4,
        preferred_transfer_client="classic",  # the CRT client cannot copy
    )
    with create_transfer_manager(client, config) as manager:
        manager.copy(copy_source=source, bucket=bucket, key=key, extra_args=args).result()


class ClientPromise:
    """An S3 client built on a background thread.

    Importing boto3 and building a client (botocore's service model) takes
    0.3-0.8 s of CPU; started first thing, it overlaps the first seconds of the
    download instead of delaying them. ``then`` runs on the same thread once the
    client is available (the job uses it to import what it needs after the
    download); its errors are only logged, whoever needs those imports repeats them.
    """

    def __init__(
        self, factory: Callable[[], S3Client], then: Callable[[], object] | None = None
    ) -> None:
        self._client: S3Client | None = None
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(
            target=self._build, args=(factory, then), name="s3-client", daemon=True
        )
        self._thread.start()

    def _build(self, factory: Callable[[], S3Client], then: Callable[[], object] | None) -> None:
        try:
            self._client = factory()
        except BaseException as exc:  # re-raised by get() on the caller's thread
            self._error = exc
        finally:
            self._ready.set()
        if then is not None:
            try:
                then()
            except Exception:
                log.debug("background warm-up failed", exc_info=True)

    def get(self) -> S3Client:
        self._ready.wait()
        if self._error is not None:
            raise storage_failure(self._error, "creating the S3 client")
        assert self._client is not None
        return self._client


class StreamingUpload:
    """A multipart upload of a file that is still being written (a download ``Sink``).

    Nothing is sent for files up to ``SINGLE_PUT_LIMIT``: ``multipart`` stays
    False and the caller uses one PutObject with the final metadata instead.
    Nothing here blocks the download: creating the upload runs as the first
    task of the worker pool and the part tasks wait for it.
    """

    def __init__(
        self,
        storage: Storage,
        key: str,
        path: Path,
        *,
        max_bytes: int,
        concurrency: int,
        content_type: str | None = None,
        sha256: str | None = None,
        tracker: Tracker | None = None,
    ) -> None:
        self.storage = storage
        self.bucket = storage.bucket
        self.key = key
        self.path = path
        self.max_bytes = max_bytes
        self.concurrency = concurrency
        # The final metadata when known up front (the key needed the probe).
        self.content_type = content_type
        self.sha256 = sha256
        self.tracker = tracker
        self.part_size = part_size_for(max_bytes)
        self.expected: int | None = None
        self.target: Future[MultipartTarget] | None = None
        self.submitted = 0  # bytes [0, submitted) are queued as parts
        self.sent = 0  # bytes of finished parts (progress)
        self.futures: list[Future[tuple[int, str]]] = []
        self.executor: ThreadPoolExecutor | None = None
        self.fd: int | None = None
        self.cancelled = threading.Event()
        self._stop: Future[None] = Future()  # fails when cancelled: wakes ``complete``
        self._sent_lock = threading.Lock()
        self.aborted = False

    @property
    def multipart(self) -> bool:
        return self.target is not None

    # -- Sink --------------------------------------------------------------------

    def expect(self, size: int | None) -> None:
        if self.target is not None:
            return
        # Known size: the smallest part size that fits 10,000 parts; unknown:
        # sized for the largest file we accept.
        self.expected = size
        self.part_size = part_size_for(size if size is not None else self.max_bytes)
        if size is not None and size > SINGLE_PUT_LIMIT:
            self._create()  # start now: the first part is uploaded the moment it is on disk

    def written(self, offset: int) -> None:
        self._raise_failed_part()
        if self.target is None:
            if offset <= SINGLE_PUT_LIMIT:
                return
            self._create()
        while offset - self.submitted >= self.part_size:
            self._submit(self.submitted, self.part_size)

    def restart(self) -> None:
        self.abort()
        self.submitted = 0
        with self._sent_lock:
            sent, self.sent = self.sent, 0
        if self.tracker is not None:
            self.tracker.upload_restarted(sent)
        self.expect(self.expected)

    # -- completion ----------------------------------------------------------------

    def finish(self, size: int) -> None:
        """The file is complete at ``size`` bytes: queue what is left (does not wait)."""
        if self.target is None:
            return
        self._raise_failed_part()
        while size - self.submitted > 0:
            self._submit(self.submitted, min(self.part_size, size - self.submitted))

    def complete(self, *, size: int, content_type: str, sha256: str) -> None:
        """Wait for every part and complete the upload: the object appears now, with
        ``content_type`` and the ``sha256`` metadata.

        May run on another thread than the download; ``cancel`` (from any thread)
        makes it fail fast.
        """
        assert self.target is not None
        pending: list[Future[Any]] = [self.target, *self.futures]
        # ``cancel`` ends the wait too: parts still running (an S3 that stopped
        # answering) are not waited for then.
        wait([_settled(pending), self._stop], return_when=FIRST_COMPLETED)
        self._raise_failed_part()
        if self.cancelled.is_set() or any(future.cancelled() for future in pending):
            raise JobError(
                FailureReason.UPLOAD_FAILED, "the multipart upload was cancelled", retryable=True
            )
        parts = sorted(future.result() for future in self.futures)
        self.target.result().complete(parts, size=size, content_type=content_type, sha256=sha256)
        self.target = None
        self._close()

    def cancel(self) -> None:
        """Drop the queued parts now (thread-safe; does not wait, never raises)."""
        self.cancelled.set()
        with contextlib.suppress(InvalidStateError):  # cancelled twice at once
            self._stop.set_exception(
                JobError(FailureReason.UPLOAD_FAILED, "cancelled", retryable=True)
            )
        executor = self.executor
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def abort(self, timeout: float = CLEANUP_WAIT) -> None:
        """Abort the upload, give running parts up to ``timeout`` seconds to end, and abort
        again if any was running: a part still in flight at the first abort may land after
        it. Never raises."""
        self.cancel()
        self.send_abort()
        tasks: list[Future[Any] | None] = [self.target, *self.futures]
        running = [task for task in tasks if task is not None and not task.done()]
        if running:
            wait(running, timeout=timeout)
            self.send_abort()
        self.target = None
        if all(task.done() for task in running):
            self._close()  # else a part still reads the file: leave it to the process's end

    def send_abort(self) -> None:
        """Abort the multipart upload if it was created (again: a no-op). Never raises."""
        created = self.target
        if created is None or not created.done() or created.cancelled() or created.exception():
            return
        try:
            created.result().abort()
        except Exception:
            log.exception("could not abort the multipart upload of %s", self.key)
            return
        if not self.aborted:
            self.aborted = True
            log.info("aborted the multipart upload of s3://%s/%s", self.bucket, self.key)

    # -- internals -----------------------------------------------------------------

    def _create(self) -> None:
        # Parts are streamed from the file, not held in memory: no memory cap on workers.
        workers = max(1, self.concurrency)
        self.cancelled.clear()
        self._stop = Future()
        self.aborted = False
        self._close()  # what an aborted predecessor left open
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="upload-part")
        self.fd = os.open(self.path, os.O_RDONLY)
        self.futures = []
        parts = -(-self.expected // self.part_size) if self.expected is not None else None
        self.target = self.executor.submit(self._create_upload, parts)
        log.info(
            "streaming s3://%s/%s in parts of %d MiB with %d workers",
            self.bucket, self.key, self.part_size // MiB, workers,
        )  # fmt: skip

    def _create_upload(self, parts: int | None) -> MultipartTarget:
        return self.storage.create_multipart(
            self.key, parts=parts, content_type=self.content_type, sha256=self.sha256
        )

    def _submit(self, offset: int, length: int) -> None:
        assert self.executor is not None and self.target is not None
        number = offset // self.part_size + 1
        self.futures.append(self.executor.submit(self._upload_part, number, offset, length))
        self.submitted = offset + length

    def _upload_part(self, number: int, offset: int, length: int) -> tuple[int, str]:
        assert self.fd is not None and self.target is not None
        target = self.target.result()
        available = os.fstat(self.fd).st_size - offset
        if available < length:
            raise JobError(
                FailureReason.INTERNAL_ERROR,
                f"part {number}: only {max(0, available)} of {length} bytes are in the file",
                retryable=True,
            )
        etag = target.upload_part(number, FileSlice(self.fd, offset, length, f"part {number}"))
        with self._sent_lock:
            self.sent += length
        if self.tracker is not None:
            self.tracker.uploaded(length)
        return number, etag

    def _raise_failed_part(self) -> None:
        tasks: list[Future[Any] | None] = [self.target, *self.futures]
        for future in tasks:
            if future is not None and future.done() and not future.cancelled():
                exc = future.exception()
                if exc is not None:
                    raise storage_failure(exc, "uploading a part")

    def _close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _settled(futures: list[Future[Any]]) -> Future[None]:
    """A future that is done once all ``futures`` are, or as soon as one fails or is
    cancelled (what ``wait(..., FIRST_EXCEPTION)`` waits for, as one future)."""
    settled: Future[None] = Future()
    left = len(futures)
    lock = threading.Lock()

    def on_done(future: Future[Any]) -> None:
        nonlocal left
        with lock:
            left -= 1
            if settled.done():
                return
            if left == 0 or future.cancelled() or future.exception() is not None:
                settled.set_result(None)

    if not futures:
        settled.set_result(None)
    for future in futures:
        future.add_done_callback(on_done)
    return settled


class FileSlice(io.RawIOBase):
    """``length`` bytes of an open file from ``offset``: a seekable, sized stream.

    An UploadPart body that botocore reads (to sign it, then to send it, and
    again on a retry after seeking back) in its own small blocks, so a part
    costs no memory of its own. The file descriptor is shared and never closed
    here; ``os.preadv`` has no file position to share.
    """

    def __init__(self, fd: int, offset: int, length: int, what: str = "part") -> None:
        super().__init__()
        self._fd = fd
        self._offset = offset
        self._length = length
        self._position = 0
        self._what = what

    def __len__(self) -> int:
        return self._length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._position + offset
        elif whence == io.SEEK_END:
            position = self._length + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        self._position = position
        return position

    def readinto(self, buffer: WriteableBuffer) -> int:
        size = min(memoryview(buffer).nbytes, self._length - self._position)
        if size <= 0:
            return 0
        with memoryview(buffer) as view, view.cast("B") as target:
            count = os.preadv(self._fd, [target[:size]], self._offset + self._position)
        if count == 0:
            raise JobError(
                FailureReason.INTERNAL_ERROR,
                f"{self._what}: the file ended {self._length - self._position} bytes early",
                retryable=True,
            )
        self._position += count
        return count
