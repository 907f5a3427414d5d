"""The job's side of the per-import channel: JSON requests to the operator, retried.

The channel is a cluster-internal address (the operator's Service), so it has a pool
manager of its own, not the download's guarded one, which refuses internal addresses.
Every request carries the import's credential as ``Authorization: Bearer``; the
credential is never logged, never part of a message, never given to a child process.

Retries: connection errors, timeouts, 429 and 5xx are retried with exponential backoff
and full jitter, honouring Retry-After, for at most the request's budget (the channel's
``--channel-budget`` unless the caller gives a shorter one); each retry opens new
connections, so a Service can route it to another operator replica (a leader hand-over).
Then the job fails as ``ChannelUnavailable``, retryable. A refusal (401, 403, 404, 409,
other 4xx) fails at once and for good, with the channel's reason and message.

The message models (``channel_protocol``, i.e. pydantic) are imported on first use,
never at start-up: the first request goes out after the download has started.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from urllib3 import PoolManager
from urllib3.exceptions import HTTPError
from urllib3.util import Timeout

from .download import USER_AGENT, parse_retry_after
from .errors import JobError
from .reasons import FailureReason

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .config import Channel

M = TypeVar("M", bound="BaseModel")

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
BACKOFF_BASE = 0.25
BACKOFF_CAP = 5.0
MAX_ERROR_TEXT = 300
_REFUSALS = {401, 403, 404, 409}


def _retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


def _clean(text: object, limit: int = MAX_ERROR_TEXT) -> str:
    """Text from the channel made safe for a message: printable, one line, bounded."""
    value = "".join(char if char.isprintable() else " " for char in str(text))
    return value[:limit]


class ChannelClient:
    """Requests to one import's endpoints (``{channel}/v1/imports/{namespace}/{name}``)."""

    def __init__(
        self,
        channel: Channel,
        *,
        pool_size: int = 8,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.url = channel.url
        self.budget = channel.budget
        self.pod_name = channel.pod_name
        self.pod_uid = channel.pod_uid
        self._token = channel.token
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._http = PoolManager(num_pools=2, maxsize=pool_size, retries=False)
        self._lock = threading.Lock()
        self.requests = 0  # sent, retries included (tests and logs)

    def __repr__(self) -> str:
        return f"ChannelClient({self.url!r})"

    def close(self) -> None:
        self._http.clear()

    def call(
        self,
        endpoint: str,
        body: BaseModel,
        answer: type[M] | None = None,
        *,
        budget: float | None = None,
        read_timeout: float = READ_TIMEOUT,
    ) -> M | None:
        """POST ``body`` to ``endpoint``; the answer parsed as ``answer`` (None: ignored).

        Raises ``JobError``: ChannelUnavailable (retryable) once ``budget`` seconds of
        retrying are spent, or the refusal's reason (permanent).
        """
        budget = self.budget if budget is None else budget
        payload = body.model_dump_json().encode()
        deadline = self._clock() + budget
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - self._clock()
            retry_after: float | None = None
            try:
                status, data, retry_after = self._send(endpoint, payload, remaining, read_timeout)
            except HTTPError as exc:
                detail = f"{type(exc).__name__}: {_clean(exc)}"
            else:
                if 200 <= status < 300:
                    return self._parse(endpoint, data, answer)
                if not _retryable_status(status):
                    raise self._refusal(endpoint, status, data)
                detail = f"{status} {self._error_text(data)}".strip()
            # New connections for the next attempt: behind a Service, another replica.
            self._http.clear()
            delay = self._rng() * min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** (attempt - 1))
            if retry_after is not None:
                delay = max(delay, retry_after)
            if self._clock() + delay >= deadline:
                raise JobError(
                    FailureReason.CHANNEL_UNAVAILABLE,
                    f"the operator's channel did not answer {endpoint} within {budget:g} s "
                    f"({attempt} attempts; last: {detail})",
                    retryable=True,
                )
            log.warning(
                "channel %s: attempt %d failed (%s); retrying in %.2f s",
                endpoint, attempt, detail, delay,
            )  # fmt: skip
            self._sleep(delay)

    def _send(
        self, endpoint: str, payload: bytes, remaining: float, read_timeout: float
    ) -> tuple[int, bytes, float | None]:
        timeout = Timeout(
            connect=max(0.1, min(CONNECT_TIMEOUT, remaining)),
            read=max(0.1, min(read_timeout, remaining)),
        )
        with self._lock:
            self.requests += 1
        response = self._http.request(
            "POST",
            f"{self.url}/{endpoint}",
            body=payload,
            headers={
                "Authorization": f"Bearer {self._token.reveal()}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
            timeout=timeout,
            redirect=False,
            retries=False,
            preload_content=True,
        )
        retry_after = None
        if _retryable_status(response.status):
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return response.status, response.data, retry_after

    @staticmethod
    def _error_text(data: bytes) -> str:
        try:
            body = json.loads(data)
        except ValueError:
            return _clean(data.decode(errors="replace"), 120)
        if isinstance(body, dict):
            return _clean(f"{body.get('reason', '')}: {body.get('message', '')}", 200)
        return ""

    def _refusal(self, endpoint: str, status: int, data: bytes) -> JobError:
        from .channel_protocol import RESULT  # noqa: PLC0415 - pydantic: not at start-up

        reason_text, message = "", ""
        try:
            body = json.loads(data)
        except ValueError:
            message = _clean(data.decode(errors="replace"))
        else:
            if isinstance(body, dict):
                reason_text = _clean(body.get("reason", ""), 64)
                message = _clean(body.get("message", ""))
        if endpoint == RESULT and status == 422:
            reason = FailureReason.INVALID_RESULT
        elif reason_text in FailureReason.__members__.values():
            reason = FailureReason(reason_text)
        else:
            reason = FailureReason.CHANNEL_REFUSED
        what = f"{status} {reason_text}".strip()
        if status == 409:
            # The import has finished or is being deleted: nothing this pod does counts.
            message = message or "the import has finished or is being deleted"
        return JobError(
            reason,
            f"the operator's channel refused {endpoint} ({what}): {message or 'no reason given'}",
            retryable=False,
        )

    def _parse(self, endpoint: str, data: bytes, answer: type[M] | None) -> M | None:
        if answer is None:
            return None
        from pydantic import ValidationError  # noqa: PLC0415

        try:
            return answer.model_validate_json(data)
        except ValidationError as exc:
            raise JobError(
                FailureReason.CHANNEL_UNAVAILABLE,
                f"the operator's channel answered {endpoint} with something that is not a "
                f"{answer.__name__}: {_clean(exc.errors(include_url=False)[:2])}",
                retryable=True,
            ) from None
