"""Response bodies, as the OpenAPI document describes them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

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
    progress: float | dict[str, Any] | None = Field(
        description="null until the import reports progress."
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
