"""The plain parts of the result contract: exit codes, failure reasons, media types.

Kept apart from ``result`` (the pydantic documents) so the modules on the way
to the first request (cli, config, errors, netguard, download) import nothing
heavier than ``enum``; ``result`` re-exports these names, and the operator
imports them from there.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Literal

MediaType = Literal["video", "image", "audio"]


class ExitCode(IntEnum):
    """Process exit codes; the Job's podFailurePolicy fails the Job at once on PERMANENT."""

    READY = 0
    RETRYABLE = 1
    PERMANENT = 2


class FailureReason(StrEnum):
    """Why an import failed; CamelCase, so it doubles as a condition reason."""

    INVALID_ARGUMENT = "InvalidArgument"
    INVALID_URL = "InvalidURL"
    BLOCKED_ADDRESS = "BlockedAddress"
    SOURCE_FORBIDDEN = "SourceForbidden"  # 401/403: typically an expired signed URL
    SOURCE_NOT_FOUND = "SourceNotFound"  # 404/410
    SOURCE_REJECTED = "SourceRejected"  # any other 4xx
    SOURCE_UNAVAILABLE = "SourceUnavailable"  # 5xx, 429 or connection errors after retries
    TOO_MANY_REDIRECTS = "TooManyRedirects"
    DOWNLOAD_TIMEOUT = "DownloadTimeout"
    INCOMPLETE_BODY = "IncompleteBody"
    TOO_LARGE = "TooLarge"
    CHECKSUM_MISMATCH = "ChecksumMismatch"
    NOT_MEDIA = "NotMedia"
    TYPE_MISMATCH = "TypeMismatch"
    PROCESSING_FAILED = "ProcessingFailed"  # ffprobe/ffmpeg crashed or timed out
    UPLOAD_FAILED = "UploadFailed"
    TERMINATED = "Terminated"  # SIGTERM, e.g. the Job's deadline
    # The operator's channel did not answer (connection errors, 5xx, 429) within the retry
    # budget: retryable, another pod may reach a healthy replica.
    CHANNEL_UNAVAILABLE = "ChannelUnavailable"
    # The channel refused the job's credential or request for good (401/403/404/409: another
    # import's or an expired credential, an import that finished or is being deleted).
    CHANNEL_REFUSED = "ChannelRefused"
    INVALID_RESULT = "InvalidResult"  # the operator's checks refused the result document
    INTERNAL_ERROR = "InternalError"
