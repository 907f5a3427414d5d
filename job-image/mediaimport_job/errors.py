"""The one exception type that carries a failure to the result document."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .reasons import FailureReason

if TYPE_CHECKING:
    from .result import FailedResult


class JobError(Exception):
    """The import cannot finish; ``reason`` and ``retryable`` go into the result."""

    def __init__(self, reason: FailureReason, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retryable = retryable

    def to_result(self) -> FailedResult:
        from .result import ErrorInfo, FailedResult  # noqa: PLC0415 - pydantic: not at start-up

        return FailedResult(
            error=ErrorInfo(reason=self.reason, message=self.message, retryable=self.retryable)
        )


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException so no ``except Exception`` swallows it."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
