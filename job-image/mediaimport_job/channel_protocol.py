"""The per-import channel: what an import pod and the operator say to each other (contract 6).

The import pod parses hostile input, so it holds no storage keys and its word is not
trusted. It talks to one HTTP endpoint of the operator, with a credential good only for
its own import (namespace, name, uid) until the import's deadline:

- ``POST {import}/progress`` — a ``ProgressReport`` (at most one a second);
- ``POST {import}/uploads/put`` — a presigned PutObject for one small object;
- ``POST {import}/uploads/multipart`` — create a multipart upload (the operator creates it);
- ``POST {import}/uploads/parts`` — presigned UploadPart URLs, up to ``MAX_PARTS_PER_REQUEST``
  at a time;
- ``POST {import}/uploads/complete`` / ``uploads/abort`` — the operator completes or aborts;
- ``POST {import}/result`` — the result document, checked before anything of it is kept.

``{import}`` is ``{channel}/v1/imports/{namespace}/{name}``: the Job gets the whole URL
(``CHANNEL_URL_ENV``) and the credential (``CHANNEL_TOKEN_ENV``), sent as ``Authorization:
Bearer``. Every key must lie under the import's own prefix, in the configured bucket; the
operator signs write operations only, each URL for ``PRESIGN_EXPIRES_S`` seconds.

Errors are ``ChannelError`` bodies with a 4xx/5xx status: 401 (no or malformed credential),
403 (a credential for another import, expired, or refused for this key), 404 (no such
import), 409 (the import has finished or is being deleted), 422 (a request or result that
fails its checks; ``reason`` ``InvalidResult`` for results), 503 (storage or the API server
unavailable: retry).

Plain data with pydantic models, like ``result``: the job imports this module after its
start-up (the reporter's first report comes a second in), the operator validates with it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .result import FailedResult, ReadyResult

# The Job's environment (set by the operator; never given to ffmpeg or ffprobe).
CHANNEL_URL_ENV = "MEDIAIMPORT_CHANNEL_URL"
CHANNEL_TOKEN_ENV = "MEDIAIMPORT_CHANNEL_TOKEN"  # noqa: S105 - a variable name
# "brokered": uploads through presigned URLs from the channel (no S3 credential in the pod);
# "credentials": the pod's own S3 credentials (AWS_* variables), progress and result still
# through the channel when it is configured.
STORAGE_ENV = "MEDIAIMPORT_STORAGE"
StorageAccess = Literal["brokered", "credentials"]
# The pod's own name and uid (downward API), sent with the result: the operator accepts a
# result only from a pod its Job owns.
POD_NAME_ENV = "MEDIAIMPORT_POD_NAME"
POD_UID_ENV = "MEDIAIMPORT_ATTEMPT"

API_PREFIX = "/v1/imports"
PROGRESS = "progress"
PUT = "uploads/put"
MULTIPART = "uploads/multipart"
PARTS = "uploads/parts"
COMPLETE = "uploads/complete"
ABORT = "uploads/abort"
RESULT = "result"

MAX_PARTS_PER_REQUEST = 100
# Short-lived: a URL handed out stays good for this long whatever happens to its import
# after (the job asks again for the parts it has not sent yet).
PRESIGN_EXPIRES_S = 300
# The job reports at most this often; the operator writes status.progress at most every
# STATUS_INTERVAL_S per import (at once when the phase changes).
REPORT_INTERVAL_S = 1.0
STATUS_INTERVAL_S = 2.0

ProgressPhase = Literal["downloading", "probing", "rendering", "uploading", "finishing"]
REASON_CHANNEL_UNAVAILABLE = "ChannelUnavailable"
REASON_INVALID_RESULT = "InvalidResult"


def import_path(namespace: str, name: str) -> str:
    """The path of one import's endpoints (the channel URL the Job gets ends with it)."""
    return f"{API_PREFIX}/{namespace}/{name}"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProgressReport(_Message):
    """What the job says about its progress; the operator copies it to ``status.progress``."""

    phase: ProgressPhase
    bytesDownloaded: int = Field(default=0, ge=0)  # noqa: N815 - wire names
    bytesTotal: int | None = Field(default=None, ge=0)  # noqa: N815 - null: no Content-Length
    bytesUploaded: int = Field(default=0, ge=0)  # noqa: N815
    percent: float | None = Field(default=None, ge=0, le=100)  # null while unknowable
    speed: float | None = Field(default=None, ge=0)  # bytes/s
    eta: float | None = Field(default=None, ge=0)  # seconds
    attempt: int = Field(default=1, ge=1, le=1000)
    updatedAt: str  # noqa: N815 - RFC 3339


class PutRequest(_Message):
    key: str = Field(min_length=1, max_length=1024)
    contentType: str = Field(min_length=1, max_length=255)  # noqa: N815
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    contentLength: int = Field(ge=0)  # noqa: N815


class PresignedRequest(_Message):
    """One presigned request: send exactly these headers (they are part of the signature)."""

    method: Literal["PUT"] = "PUT"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    expiresIn: int  # noqa: N815 - seconds


class MultipartRequest(_Message):
    key: str = Field(min_length=1, max_length=1024)


class MultipartCreated(_Message):
    uploadId: str  # noqa: N815


class PartsRequest(_Message):
    key: str = Field(min_length=1, max_length=1024)
    uploadId: str = Field(min_length=1, max_length=1024)  # noqa: N815
    first: int = Field(ge=1, le=10_000)  # the first part number
    count: int = Field(ge=1, le=MAX_PARTS_PER_REQUEST)


class PresignedPart(_Message):
    partNumber: int  # noqa: N815
    url: str


class PartsSigned(_Message):
    parts: list[PresignedPart]
    expiresIn: int  # noqa: N815


class CompletedPart(_Message):
    partNumber: int = Field(ge=1, le=10_000)  # noqa: N815
    etag: str = Field(min_length=1, max_length=256)


class CompleteRequest(_Message):
    """Complete the upload; the operator then sets the final Content-Type and the sha256
    metadata (known only after the probe) by copying the object onto itself."""

    key: str = Field(min_length=1, max_length=1024)
    uploadId: str = Field(min_length=1, max_length=1024)  # noqa: N815
    parts: list[CompletedPart] = Field(min_length=1, max_length=10_000)
    contentType: str = Field(min_length=1, max_length=255)  # noqa: N815
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class AbortRequest(_Message):
    key: str = Field(min_length=1, max_length=1024)
    uploadId: str = Field(min_length=1, max_length=1024)  # noqa: N815


class PodIdentity(_Message):
    name: str = Field(min_length=1, max_length=253)
    uid: str = Field(min_length=1, max_length=64)


class ResultSubmission(_Message):
    """The job's result document and the pod that sends it."""

    pod: PodIdentity
    result: ReadyResult | FailedResult = Field(discriminator="status")


class ChannelError(_Message):
    """The body of every refusal."""

    reason: str
    message: str
