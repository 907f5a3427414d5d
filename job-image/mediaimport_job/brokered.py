"""Writes without keys: presigned requests from the operator's channel (``Storage``).

The pod holds no S3 credential. For each object it asks the channel (``uploads/put``) for
a presigned PUT and sends the file with exactly the headers returned (they are part of
the signature: Content-Type and the sha256 metadata); for a large one the operator
creates a multipart upload (``uploads/multipart``), presigns UploadPart URLs in batches
of up to ``MAX_PARTS_PER_REQUEST`` (``uploads/parts``, the next batch fetched while the
current one is used, so a 10 GB file costs a few dozen channel round trips, not
thousands), and completes (``uploads/complete``, with the final Content-Type and sha256,
which the operator sets) or aborts (``uploads/abort``) it. Reading, listing and
deleting are not possible from here: a failed run aborts its uploads and leaves the
objects it wrote to the operator.

Every body is streamed from the file (``FileSlice``) with its Content-Length: a part is
never held in memory whole. botocore is never imported on this path.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from urllib3 import PoolManager
from urllib3.exceptions import HTTPError
from urllib3.util import Timeout

from .errors import JobError
from .reasons import FailureReason
from .upload import FileSlice, MultipartTarget

if TYPE_CHECKING:
    from .channel import ChannelClient

log = logging.getLogger(__name__)

BLOCK_SIZE = 256 * 1024  # bytes per send: few Python round trips per part
PUT_ATTEMPTS = 5  # like botocore's standard retry mode
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0
# A presigned URL this close to its expiry is fetched again before use.
EXPIRY_MARGIN_S = 60.0
ABORT_BUDGET_S = 10.0  # aborts happen in a cleanup bounded by the grace period
# Completing asks the operator to complete and then copy the object onto itself (its final
# metadata): for a large object that takes a while, so its budget grows with the size.
COMPLETE_BYTES_PER_S = 20 * 1024 * 1024
MAX_ERROR_BODY = 4096
MAX_PART_NUMBER = 10_000


class _ExpiredError(Exception):
    """S3 refused a presigned request (403): it may have expired; sign again once."""


def _backoff(attempt: int) -> float:
    return random.random() * min(  # noqa: S311 - jitter, not a secret
        BACKOFF_CAP, BACKOFF_BASE * 2.0 ** (attempt - 1)
    )


def _s3_error(data: bytes) -> str:
    """``Code: Message`` from an S3 error document (best effort)."""
    text = data.decode(errors="replace")

    def element(name: str) -> str:
        start = text.find(f"<{name}>")
        end = text.find(f"</{name}>")
        return text[start + len(name) + 2 : end] if 0 <= start < end else ""

    code, message = element("Code"), element("Message")
    found = f"{code}: {message}" if code else text[:120]
    return "".join(char if char.isprintable() else " " for char in found)[:300]


class BrokeredStorage:
    """``upload.Storage`` through the channel; the S3 requests themselves go straight to
    the store's presigned URLs."""

    deletes_own = False

    def __init__(self, channel: ChannelClient, bucket: str, *, concurrency: int) -> None:
        self.channel = channel
        self.bucket = bucket
        # S3's connections: apart from the channel's (retrying the channel opens new
        # connections; that must not drop the parts' ones).
        self.http = PoolManager(
            num_pools=4, maxsize=concurrency + 2, retries=False, blocksize=BLOCK_SIZE
        )

    def put_file(self, key: str, path: Path, *, content_type: str, sha256: str) -> None:
        from .channel_protocol import PUT, PresignedRequest, PutRequest  # noqa: PLC0415

        size = path.stat().st_size
        request = PutRequest(key=key, contentType=content_type, sha256=sha256, contentLength=size)

        def sign() -> tuple[str, dict[str, str]]:
            signed = self.channel.call(PUT, request, PresignedRequest)
            assert signed is not None
            return signed.url, dict(signed.headers)

        with path.open("rb") as file:
            self.send(sign, FileSlice(file.fileno(), 0, size, key), f"writing {key}")

    def create_multipart(
        self,
        key: str,
        *,
        parts: int | None,
        content_type: str | None = None,
        sha256: str | None = None,
    ) -> MultipartTarget:
        # The final metadata goes with the completion (the protocol's create takes a key).
        from .channel_protocol import MULTIPART, MultipartCreated, MultipartRequest  # noqa: PLC0415

        created = self.channel.call(MULTIPART, MultipartRequest(key=key), MultipartCreated)
        assert created is not None
        upload = _BrokeredMultipart(self, key, created.uploadId, parts)
        upload.urls.get(1)  # the first batch now: the first part is about to need it
        return upload

    def delete_own(self, key: str) -> None:
        raise JobError(
            FailureReason.INTERNAL_ERROR,
            f"brokered storage cannot delete {key}: the operator does",
            retryable=True,
        )

    def send(
        self,
        sign: Callable[[], tuple[str, dict[str, str]]],
        body: FileSlice,
        what: str,
    ) -> str:
        """PUT ``body`` to a presigned URL from ``sign`` (called again when S3 says the
        signature expired); retries connection errors, 408/429/5xx. Returns the ETag."""
        url, headers = sign()
        signed_again = False
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._put(url, headers, body)
            except _ExpiredError as exc:
                if signed_again:
                    # Signed afresh and still refused: the operator's signing is wrong
                    # (like SignatureDoesNotMatch with keys), which no retry fixes.
                    raise JobError(
                        FailureReason.UPLOAD_FAILED,
                        f"{what}: S3 refused the channel's presigned request: {exc}",
                        retryable=False,
                    ) from None
                signed_again = True
                url, headers = sign()
                attempt -= 1
                continue
            except _TransientError as exc:
                if attempt >= PUT_ATTEMPTS:
                    raise JobError(
                        FailureReason.UPLOAD_FAILED,
                        f"{what}: giving up after {attempt} attempts: {exc}",
                        retryable=True,
                    ) from None
                delay = _backoff(attempt)
                log.warning("%s: attempt %d failed (%s); retrying in %.2f s",
                            what, attempt, exc, delay)  # fmt: skip
                time.sleep(delay)

    def _put(self, url: str, headers: dict[str, str], body: FileSlice) -> str:
        if urlsplit(url).scheme not in {"http", "https"}:
            raise JobError(
                FailureReason.UPLOAD_FAILED,
                "the channel's presigned URL is not http(s)",
                retryable=False,
            )
        body.seek(0)
        try:
            response = self.http.request(
                "PUT",
                url,
                body=body,
                # Exactly the signed headers, and the length (a PUT must not be chunked).
                headers={**headers, "Content-Length": str(len(body))},
                timeout=Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
                redirect=False,
                retries=False,
                preload_content=False,
            )
        except HTTPError as exc:
            raise _TransientError(f"{type(exc).__name__}: {exc}") from None
        try:
            status = response.status
            if 200 <= status < 300:
                etag = response.headers.get("ETag")
                if not etag:
                    raise JobError(
                        FailureReason.UPLOAD_FAILED,
                        "S3 answered the presigned PUT without an ETag",
                        retryable=True,
                    )
                response.drain_conn()
                return etag
            detail = f"S3 answered {status}: {_s3_error(response.read(MAX_ERROR_BODY))}"
        except HTTPError as exc:
            raise _TransientError(f"{type(exc).__name__}: {exc}") from None
        finally:
            response.release_conn()
        if status == 403:
            raise _ExpiredError(detail)
        if status in {408, 429} or status >= 500:
            raise _TransientError(detail)
        raise JobError(FailureReason.UPLOAD_FAILED, detail, retryable=False)


class _TransientError(Exception):
    """A failed attempt worth another."""


@dataclass
class _Batch:
    urls: dict[int, str]
    expires_at: float


class PartUrls:
    """Presigned UploadPart URLs of one upload, in batches of ``MAX_PARTS_PER_REQUEST``.

    ``get(n)`` returns part n's URL, fetching its batch if needed; once a part in the
    second half of a batch is asked for, the next batch is fetched in the background, so
    parts rarely wait for the channel. Batches near their expiry are fetched again.
    """

    def __init__(self, channel: ChannelClient, key: str, upload_id: str, parts: int | None) -> None:
        from .channel_protocol import MAX_PARTS_PER_REQUEST  # noqa: PLC0415

        self.channel = channel
        self.key = key
        self.upload_id = upload_id
        self.parts = parts  # None: unknown (no Content-Length)
        self.size = MAX_PARTS_PER_REQUEST
        self._lock = threading.Lock()
        self._batches: dict[int, Future[_Batch]] = {}
        self._fetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="part-urls")
        self.fetches = 0

    def get(self, number: int, *, fresh: bool = False) -> str:
        index = (number - 1) // self.size
        following = (index + 1) * self.size + 1
        with self._lock:
            batch = self._batch(index, fresh=fresh)
            if (
                (number - 1) % self.size >= self.size // 2
                and (self.parts is None or following <= self.parts)
                and following <= MAX_PART_NUMBER
            ):
                self._batch(index + 1, fresh=False)
        url = batch.result().urls.get(number)
        if url is None:
            raise JobError(
                FailureReason.CHANNEL_UNAVAILABLE,
                f"the channel signed no URL for part {number}",
                retryable=True,
            )
        return url

    def close(self) -> None:
        self._fetcher.shutdown(wait=False, cancel_futures=True)

    def _batch(self, index: int, *, fresh: bool) -> Future[_Batch]:
        existing = self._batches.get(index)
        if existing is not None and not fresh:
            if not existing.done():
                return existing
            if existing.exception() is None and (
                existing.result().expires_at - time.monotonic() >= EXPIRY_MARGIN_S
            ):
                return existing
        first = index * self.size + 1
        count = self.size
        if self.parts is not None and first <= self.parts:
            count = min(self.size, self.parts - first + 1)
        return self._start(index, first, min(count, MAX_PART_NUMBER - first + 1))

    def _start(self, index: int, first: int, count: int) -> Future[_Batch]:
        future = self._fetcher.submit(self._fetch, first, count)
        self._batches[index] = future
        return future

    def _fetch(self, first: int, count: int) -> _Batch:
        from .channel_protocol import PARTS, PartsRequest, PartsSigned  # noqa: PLC0415

        started = time.monotonic()
        signed = self.channel.call(
            PARTS,
            PartsRequest(key=self.key, uploadId=self.upload_id, first=first, count=count),
            PartsSigned,
        )
        assert signed is not None
        self.fetches += 1
        return _Batch(
            urls={part.partNumber: part.url for part in signed.parts},
            expires_at=started + signed.expiresIn,
        )


class _BrokeredMultipart:
    def __init__(
        self, storage: BrokeredStorage, key: str, upload_id: str, parts: int | None
    ) -> None:
        self.storage = storage
        self.key = key
        self.upload_id = upload_id
        self.urls = PartUrls(storage.channel, key, upload_id, parts)

    def upload_part(self, number: int, body: FileSlice) -> str:
        signs = 0

        def sign() -> tuple[str, dict[str, str]]:
            nonlocal signs
            signs += 1
            return self.urls.get(number, fresh=signs > 1), {}

        return self.storage.send(sign, body, f"uploading part {number}")

    def complete(
        self, parts: list[tuple[int, str]], *, size: int, content_type: str, sha256: str
    ) -> None:
        from .channel_protocol import COMPLETE, CompletedPart, CompleteRequest  # noqa: PLC0415

        self.urls.close()
        request = CompleteRequest(
            key=self.key,
            uploadId=self.upload_id,
            parts=[CompletedPart(partNumber=number, etag=etag) for number, etag in parts],
            contentType=content_type,
            sha256=sha256,
            size=size,
        )
        patience = 60.0 + size / COMPLETE_BYTES_PER_S
        channel = self.storage.channel
        channel.call(
            COMPLETE, request, budget=max(channel.budget, 2 * patience), read_timeout=patience
        )

    def abort(self) -> None:
        from .channel_protocol import ABORT, AbortRequest  # noqa: PLC0415

        self.urls.close()
        self.storage.channel.call(
            ABORT,
            AbortRequest(key=self.key, uploadId=self.upload_id),
            budget=min(self.storage.channel.budget, ABORT_BUDGET_S),
        )
