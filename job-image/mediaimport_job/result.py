"""The job's result document: the one contract between the job and the operator.

The job writes it to the termination message path and as the last line of
stdout; the operator reads it back from the pod's ``state.terminated.message``.
Kubernetes cuts termination messages at 4096 bytes, so ``render`` guarantees
the document fits.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

# The plain enums live in ``reasons`` (no pydantic on the job's start-up path);
# this module stays the contract the operator imports them from.
from .reasons import ExitCode, FailureReason, MediaType

__all__ = [
    "TERMINATION_MESSAGE_LIMIT",
    "ErrorInfo",
    "ExitCode",
    "FailedResult",
    "FailureReason",
    "MediaInfo",
    "MediaType",
    "ReadyResult",
    "Result",
    "parse",
    "render",
]

TERMINATION_MESSAGE_LIMIT = 4096


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MediaInfo(_Document):
    """What ffprobe says about the file; absent values are null (e.g. an image's duration)."""

    duration: float | None = None
    width: int | None = None
    height: int | None = None
    frameRate: float | None = None  # noqa: N815 - the wire name
    codec: str | None = None
    bitrate: int | None = None
    format: str | None = None


class ReadyResult(_Document):
    status: Literal["ready"] = "ready"
    type: MediaType
    bucket: str
    key: str
    thumbnailKey: str | None  # noqa: N815
    name: str
    size: int
    sha256: str
    contentType: str  # noqa: N815
    media: MediaInfo


class ErrorInfo(_Document):
    reason: FailureReason
    message: str
    retryable: bool


class FailedResult(_Document):
    status: Literal["failed"] = "failed"
    error: ErrorInfo

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.RETRYABLE if self.error.retryable else ExitCode.PERMANENT


Result = Annotated[ReadyResult | FailedResult, Field(discriminator="status")]
_RESULT_ADAPTER: TypeAdapter[ReadyResult | FailedResult] = TypeAdapter(Result)


def parse(text: str) -> ReadyResult | FailedResult:
    """Parse a result document (raises pydantic.ValidationError when it is not one)."""
    return _RESULT_ADAPTER.validate_json(text)


def render(result: ReadyResult | FailedResult) -> str:
    """Compact JSON that always fits the termination message limit.

    Only free text can make a document long: an error message is shortened,
    and a ready document drops its codec string before anything else would go.
    """
    text = result.model_dump_json()
    if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT:
        return text
    if isinstance(result, FailedResult):
        overflow = len(text.encode()) - TERMINATION_MESSAGE_LIMIT
        message = result.error.message.encode()
        keep = max(0, len(message) - overflow - 64)
        short = message[:keep].decode(errors="ignore") + "… (truncated)"
        trimmed = result.model_copy(
            update={"error": result.error.model_copy(update={"message": short})}
        )
        return render(trimmed)
    # Keys, names and codecs are bounded by the job's own validation, so this
    # is a last resort that keeps the document valid rather than cut.
    fallback = FailedResult(
        error=ErrorInfo(
            reason=FailureReason.INTERNAL_ERROR,
            message="the result document exceeded the 4096-byte termination message limit",
            retryable=False,
        )
    )
    return json.dumps(json.loads(fallback.model_dump_json()), separators=(",", ":"))
