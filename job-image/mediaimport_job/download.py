"""Streaming download: guarded, bounded in size and time, hashed in the same pass, resumable.

The body goes straight to a file in reads of up to 1 MiB (never whole in
memory) and through SHA-256 as it passes: one buffer per read, hashed and
written without further copies. The hash runs on a helper thread
(``_BackgroundSHA256``; hashlib releases the GIL), so hashing one read overlaps
receiving and writing the next. Reads use ``read1`` so each returns as soon as
any bytes arrive: the loop then checks the overall deadline and the minimum
rate, which per-read socket timeouts cannot do against an origin that drips
one byte at a time. A signal (SIGTERM) interrupts the blocking read because
the download runs on the main thread.

Transient failures (connection errors, dropped bodies, 408/429/5xx) are retried
with exponential backoff and full jitter, honouring a bounded Retry-After. A
dropped body resumes with ``Range`` when the origin answers 206 with the
matching ``Content-Range``; a 200 restarts from zero with a fresh hash and
tells the sink (the streaming uploader) to start over.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import logging
import os
import queue
import random
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urljoin, urlsplit

from urllib3 import PoolManager
from urllib3.exceptions import (
    HTTPError,
    NameResolutionError,
    SSLError,
)
from urllib3.response import BaseHTTPResponse
from urllib3.util import Timeout

from .errors import JobError
from .netguard import BlockedAddressError
from .reasons import FailureReason
from .urls import redact

log = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024  # per read1; fewer Python round trips at loopback speed
HASH_QUEUE_DEPTH = 8  # reads waiting for the hash thread: at most 8 MiB
MAX_REDIRECTS = 10
MAX_RETRY_AFTER = 60.0
BACKOFF_BASE = 0.5
BACKOFF_CAP = 10.0
USER_AGENT = "mediaimport-job/0.1"
_REDIRECTS = {301, 302, 303, 307, 308}
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


@dataclass(frozen=True)
class DownloadLimits:
    max_bytes: int
    # What sets the cap, for the TooLarge message ("the limit of N bytes" when None):
    # the space of the temporary volume when that is smaller than the limit.
    max_bytes_reason: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    deadline: float = 3000.0  # seconds for the whole download, retries included
    min_rate: int = 4096  # bytes per second, measured over min_rate_window
    min_rate_window: float = 20.0
    retries: int = 5

    def cap(self) -> str:
        return self.max_bytes_reason or f"the limit of {self.max_bytes} bytes"


@dataclass(frozen=True)
class Downloaded:
    path: Path
    size: int
    sha256: str
    content_type: str | None  # the origin's claim, for logs only: the probe decides


class Sink(Protocol):
    """Follows the file as it is written (the streaming uploader)."""

    def expect(self, size: int | None) -> None:
        """The full size as the origin announced it (None: unknown)."""

    def written(self, offset: int) -> None:
        """Bytes [0, offset) are in the file; may raise to stop the download."""

    def restart(self) -> None:
        """The file starts over from byte 0 (the origin ignored a Range request)."""


class _TransientError(Exception):
    """A failure worth retrying; ``retry_after`` is the origin's request, if any."""

    def __init__(self, reason: FailureReason, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    reference = time.time() if now is None else now
    return max(0.0, float(when.timestamp()) - reference)


def backoff_delay(attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Exponential backoff with full jitter (attempt counts from 1)."""
    return rng() * min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** (attempt - 1))


def _status_failure(status: int, url: str) -> JobError | _TransientError:
    where = redact(url)
    if status in {401, 403}:
        return JobError(
            FailureReason.SOURCE_FORBIDDEN,
            f"the origin refused access ({status}) to {where}; a signed URL may have expired",
            retryable=False,
        )
    if status in {404, 410}:
        return JobError(
            FailureReason.SOURCE_NOT_FOUND,
            f"the origin has no file at {where} ({status})",
            retryable=False,
        )
    if status in {408, 425, 429} or status >= 500:
        return _TransientError(FailureReason.SOURCE_UNAVAILABLE, f"the origin answered {status}")
    return JobError(
        FailureReason.SOURCE_REJECTED,
        f"the origin answered {status} for {where}",
        retryable=False,
    )


class _Download:
    """One download's state across attempts."""

    def __init__(
        self,
        url: str,
        destination: Path,
        *,
        http: PoolManager,
        limits: DownloadLimits,
        sink: Sink | None,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self.url = url
        self.destination = destination
        self.http = http
        self.limits = limits
        self.sink = sink
        self.clock = clock
        self.sleep = sleep
        self.deadline = clock() + limits.deadline
        self.offset = 0
        self.total: int | None = None
        self.announced = False
        self.validator: str | None = None  # ETag or Last-Modified, for If-Range
        self.hasher = _BackgroundSHA256()
        self.content_type: str | None = None
        self.current_url = url  # after redirects; resumes go straight there

    # -- connection and redirects ------------------------------------------------

    def _open(self, headers: dict[str, str]) -> BaseHTTPResponse:
        url = self.url if self.offset == 0 else self.current_url
        for _hop in range(MAX_REDIRECTS + 1):
            scheme = urlsplit(url).scheme.lower()
            if scheme not in {"http", "https"}:
                raise JobError(
                    FailureReason.INVALID_URL,
                    f"a redirect led to an unsupported scheme {scheme!r} ({redact(url)})",
                    retryable=False,
                )
            timeout = Timeout(
                connect=self.limits.connect_timeout,
                read=min(self.limits.read_timeout, max(0.1, self.deadline - self.clock())),
            )
            response = self.http.urlopen(
                "GET",
                url,
                headers=headers,
                redirect=False,
                retries=False,
                preload_content=False,
                decode_content=False,
                timeout=timeout,
            )
            if response.status not in _REDIRECTS:
                self.current_url = url
                return response
            location = response.headers.get("Location")
            _discard(response)
            if not location:
                raise JobError(
                    FailureReason.SOURCE_REJECTED,
                    f"the origin answered {response.status} without a Location header",
                    retryable=False,
                )
            url = urljoin(url, location.strip())
            log.info("redirected to %s", redact(url))
        raise JobError(
            FailureReason.TOO_MANY_REDIRECTS,
            f"more than {MAX_REDIRECTS} redirects starting at {redact(self.url)}",
            retryable=False,
        )

    # -- one attempt -------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if self.offset > 0:
            headers["Range"] = f"bytes={self.offset}-"
            if self.validator:
                headers["If-Range"] = self.validator
        return headers

    def _restart(self, file: _File) -> None:
        log.info("the origin sent the whole file again: restarting from byte 0")
        self.offset = 0
        self.hasher.close()
        self.hasher = _BackgroundSHA256()
        file.truncate()
        if self.sink is not None:
            self.sink.restart()

    def _accept(self, response: BaseHTTPResponse, file: _File) -> None:
        """Check the response's status and headers; set the expected total."""
        status = response.status
        if status == 206 and self.offset > 0:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", "").strip())
            total = int(match.group(3)) if match and match.group(3) != "*" else None
            if match is None or int(match.group(1)) != self.offset or total != self.total:
                # Not the range we asked for: start over rather than splice.
                _discard(response)
                self._restart(file)
                raise _TransientError(FailureReason.INCOMPLETE_BODY, "unusable Content-Range")
            return
        if status == 416 and self.offset > 0:
            _discard(response)
            raise JobError(
                FailureReason.INCOMPLETE_BODY,
                f"the origin sent {self.offset} bytes but announced {self.total}, and has "
                "nothing more",
                retryable=True,
            )
        if status != 200:
            failure = _status_failure(status, self.current_url)
            if isinstance(failure, _TransientError):
                failure.retry_after = parse_retry_after(response.headers.get("Retry-After"))
            _discard(response)
            raise failure
        if self.offset > 0:
            self._restart(file)
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.strip().isdigit() else None
        if total is not None and total > self.limits.max_bytes:
            _discard(response)
            raise JobError(
                FailureReason.TOO_LARGE,
                f"the file is {total} bytes, more than {self.limits.cap()}",
                retryable=False,
            )
        self.total = total
        self.validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
        self.content_type = response.headers.get("Content-Type")
        if self.sink is not None and not self.announced:
            self.sink.expect(total)
            self.announced = True

    def _read_body(self, response: BaseHTTPResponse, file: _File) -> None:
        window_start = self.clock()
        window_offset = self.offset
        limits = self.limits
        while True:
            data = response.read1(CHUNK_SIZE)
            now = self.clock()
            if data:
                self.offset += len(data)
                if self.offset > limits.max_bytes:
                    # Counting matters as much as Content-Length: chunked and
                    # close-delimited bodies announce nothing.
                    raise JobError(
                        FailureReason.TOO_LARGE,
                        f"the body exceeded {limits.cap()}",
                        retryable=False,
                    )
                self.hasher.update(data)
                file.write(data)
                if self.sink is not None:
                    self.sink.written(self.offset)
            if now > self.deadline:
                raise JobError(
                    FailureReason.DOWNLOAD_TIMEOUT,
                    f"the download did not finish within {limits.deadline:g} s "
                    f"({self.offset} bytes received)",
                    retryable=True,
                )
            if now - window_start >= limits.min_rate_window:
                rate = (self.offset - window_offset) / (now - window_start)
                if rate < limits.min_rate:
                    raise JobError(
                        FailureReason.DOWNLOAD_TIMEOUT,
                        f"the origin sent {rate:.0f} bytes/s over {now - window_start:.0f} s, "
                        f"below the minimum of {limits.min_rate} bytes/s",
                        retryable=True,
                    )
                window_start, window_offset = now, self.offset
            if not data:
                break
        if self.total is not None and self.offset < self.total:
            raise _TransientError(
                FailureReason.INCOMPLETE_BODY,
                f"the body ended after {self.offset} of {self.total} bytes",
            )

    # -- the retry loop ------------------------------------------------------------

    def run(self) -> Downloaded:
        attempts_without_progress = 0
        best = 0
        with _File(self.destination) as file, contextlib.closing(self.hasher):
            while True:
                try:
                    response = self._open(self._headers())
                    try:
                        self._accept(response, file)
                        self._read_body(response, file)
                    finally:
                        _discard(response)
                    return Downloaded(
                        path=self.destination,
                        size=self.offset,
                        sha256=self.hasher.hexdigest(),
                        content_type=self.content_type,
                    )
                except BlockedAddressError as exc:
                    raise JobError(
                        FailureReason.BLOCKED_ADDRESS,
                        f"refusing to connect to {redact(self.current_url)}: {exc}",
                        retryable=False,
                    ) from None
                except _TransientError as exc:
                    failure: _TransientError = exc
                except HTTPError as exc:
                    failure = self._classify(exc)
                if self.offset > best:
                    # Progress past anything seen before resets the budget, so a
                    # long file over a flaky link can finish; repeating the same
                    # bytes (a short body restarted from zero) does not.
                    best = self.offset
                    attempts_without_progress = 0
                attempts_without_progress += 1
                self._wait(failure, attempts_without_progress)

    def _classify(self, exc: HTTPError) -> _TransientError:
        if isinstance(exc, NameResolutionError):
            cause = exc.__cause__
            if isinstance(cause, socket.gaierror) and cause.errno in {
                socket.EAI_NONAME,
                getattr(socket, "EAI_NODATA", socket.EAI_NONAME),
            }:
                raise JobError(
                    FailureReason.INVALID_URL,
                    f"the host of {redact(self.current_url)} does not resolve",
                    retryable=False,
                ) from None
        if isinstance(exc, SSLError) and isinstance(exc.__cause__, ssl.SSLCertVerificationError):
            raise JobError(
                FailureReason.SOURCE_REJECTED,
                f"the origin's TLS certificate is not valid: {exc.__cause__.verify_message}",
                retryable=False,
            ) from None
        reason = (
            FailureReason.INCOMPLETE_BODY if self.offset > 0 else FailureReason.SOURCE_UNAVAILABLE
        )
        return _TransientError(reason, f"{type(exc).__name__}: {exc}")

    def _wait(self, failure: _TransientError, attempt: int) -> None:
        message = str(failure)
        if attempt > self.limits.retries:
            if failure.reason is FailureReason.INCOMPLETE_BODY and self.total is not None:
                message = (
                    f"the body ended after {self.offset} of {self.total} bytes "
                    f"{attempt} times in a row ({message})"
                )
            raise JobError(
                failure.reason,
                f"giving up after {attempt} attempts: {message}",
                retryable=True,
            )
        delay = backoff_delay(attempt)
        if failure.retry_after is not None:
            if failure.retry_after > MAX_RETRY_AFTER:
                raise JobError(
                    failure.reason,
                    f"{message}; the origin asked to retry after {failure.retry_after:.0f} s",
                    retryable=True,
                )
            delay = max(delay, failure.retry_after)
        remaining = self.deadline - self.clock()
        if delay >= remaining:
            raise JobError(
                FailureReason.DOWNLOAD_TIMEOUT,
                f"the download deadline of {self.limits.deadline:g} s passed while retrying "
                f"({message})",
                retryable=True,
            )
        log.warning("attempt %d failed (%s); retrying in %.2f s", attempt, message, delay)
        self.sleep(delay)


class _BackgroundSHA256:
    """SHA-256 of the reads handed to ``update``, computed on a helper thread.

    ``hashlib`` releases the GIL while it hashes, so on a second core the hash
    of one read overlaps the next recv and write (unthrottled: +20-40 %). The
    bounded queue keeps at most ``HASH_QUEUE_DEPTH`` reads in memory and makes
    ``update`` wait when the hash falls behind.
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=HASH_QUEUE_DEPTH)
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            self._hash.update(data)

    def update(self, data: bytes) -> None:
        self._queue.put(data)

    def hexdigest(self) -> str:
        self.close()
        return self._hash.hexdigest()

    def close(self) -> None:
        """Finish hashing what was queued and end the thread (idempotent)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


class _File:
    """The destination, written unbuffered so other readers (upload threads) see every
    byte as soon as ``write`` returns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> _File:
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def truncate(self) -> None:
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)


def _discard(response: BaseHTTPResponse) -> None:
    """Close without draining: an error or redirect body may be endless."""
    response.close()
    response.release_conn()


def download(
    url: str,
    destination: Path,
    http: PoolManager,
    limits: DownloadLimits,
    sink: Sink | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Downloaded:
    """Download ``url`` into ``destination``; raises ``JobError`` with the reason."""
    return _Download(
        url, destination, http=http, limits=limits, sink=sink, clock=clock, sleep=sleep
    ).run()
