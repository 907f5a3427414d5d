"""Response bodies, as the OpenAPI document describes them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .validation import MAX_METADATA_KEYS


class ImportAccepted(BaseModel):
    """202: the import was created and runs (the seed's response)."""

    id: str = Field(description="The asset id (GET /api/v1/media/{id}).")
    name: str
    type: Literal["video", "image", "audio"] | None
    url: str = Field(description='"" until the import is ready.')
    thumbnail_url: str | None
    size: int
    created_at: datetime
    metadata: dict[str, Any] = Field(
        description='{"import_job_id": <MediaImport name>, "status": "processing"}'
    )


class ImportProgress(BaseModel):
    """How far a running import is (the MediaImport's ``status.progress``, as its pod
    reported it; a finished import keeps its last report). The fields of
    ``mediaimport_operator.model.ProgressStatus``, by the same names."""

    model_config = ConfigDict(populate_by_name=True)

    summary: str = Field(description="For display: '42%', or the phase while the percent "
                         "is unknown.")
    phase: str = Field(description="downloading, probing, rendering, uploading or finishing.")
    bytes_downloaded: int = Field(
        alias="bytesDownloaded", description="Bytes of the source read so far.")
    bytes_total: int | None = Field(
        alias="bytesTotal",
        description="The source's size; null when the origin sends no length.")
    bytes_uploaded: int = Field(
        alias="bytesUploaded", description="Bytes stored in S3 so far.")
    percent: float | None = Field(
        description="Overall, 0-100; never goes backwards; null while unknowable.")
    speed: float | None = Field(description="Bytes per second.")
    eta: float | None = Field(description="Seconds left, when known.")
    attempt: int = Field(description="Which attempt of the import's Job (1 for the first).")
    updated_at: str | None = Field(
        alias="updatedAt", description="When the pod reported it (RFC 3339).")


class Asset(BaseModel):
    id: str
    name: str
    type: Literal["video", "image", "audio"] | None
    status: Literal["uploading", "ready", "failed"]
    url: str = Field(description='Presigned GET (1 hour) once ready, else "".')
    thumbnail_url: str | None = Field(description="Presigned GET (1 hour) once ready.")
    size: int
    checksum: str | None = Field(description="SHA-256 of the file, once ready.")
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, Any]
    progress: ImportProgress | None = Field(
        default=None,
        description="GET /api/v1/media/{id} of an uploading asset: its import's progress "
        "(null before the first report); null once ready or failed, and in listings.")


class AssetPage(BaseModel):
    items: list[Asset]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page.")


class ImportError_(BaseModel):  # noqa: N801 - not an exception; "ImportError" is a builtin
    reason: str
    message: str


class JobStatus(BaseModel):
    """An import's state (the seed's job status), as polled and streamed."""

    status: Literal["queued", "started", "finished", "failed"]
    result: dict[str, Any] | None = Field(description="The stored file once finished.")
    error: ImportError_ | None
    progress: ImportProgress | None = Field(
        description="null until the import's pod reports progress; a finished import "
        "keeps its last report."
    )
    phase: Literal["Pending", "Importing", "Ready", "Failed"]
    conditions: list[dict[str, Any]]


class WebhookUrlRequest(BaseModel):
    metadata: dict[str, Any] | None = Field(
        default=None,
        description=f"Metadata stored with every asset the URL imports (at most "
        f"{MAX_METADATA_KEYS} keys, 4 KiB as JSON: it travels inside the URL).",
    )
    expires_in: int = Field(
        default=24 * 3600, ge=60, le=30 * 24 * 3600, strict=True,  # JSON true is not 1 s
        description="Seconds the URL stays valid (default one day, at most 30 days).",
    )


class WebhookUrl(BaseModel):
    url: str = Field(description="Give this to Replicate as the prediction's webhook.")
    expires_at: datetime


class WebhookImport(BaseModel):
    id: str = Field(description="The asset id.")
    import_job_id: str = Field(description="The MediaImport's name.")


class RejectedOutput(BaseModel):
    index: int
    url: str
    message: str


class WebhookAnswer(BaseModel):
    imports: list[WebhookImport]
    rejected: list[RejectedOutput] = Field(
        default_factory=list, description="Output URLs that were not imported, and why."
    )
