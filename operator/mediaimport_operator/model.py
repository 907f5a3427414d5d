"""Typed views of a MediaImport (spec, status, conditions) — contract 1 of DESIGN.md.

The CRD's OpenAPI schema validates objects at the API server; these models parse
what the operator reads and render what it writes (wire names are camelCase).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

GROUP = "mediaimport.dev"
VERSION = "v1alpha1"
PLURAL = "mediaimports"
KIND = "MediaImport"
API_VERSION = f"{GROUP}/{VERSION}"

MediaType = Literal["video", "image", "audio"]


class Phase(StrEnum):
    PENDING = "Pending"
    IMPORTING = "Importing"
    READY = "Ready"
    FAILED = "Failed"

    @property
    def terminal(self) -> bool:
        return self in (Phase.READY, Phase.FAILED)


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


SUCCEEDED = "Succeeded"
RECORDED = "Recorded"


class _Wire(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    def wire(self) -> dict[str, Any]:
        """The JSON shape written to the API (camelCase, None fields left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Thumbnail(_Wire):
    width: int = 320
    at: float = 0.0


class MediaImportSpec(_Wire):
    url: str
    user_id: str = Field(alias="userId")
    type: MediaType | None = None
    name: str | None = None
    asset_id: str | None = Field(default=None, alias="assetId")
    metadata: dict[str, Any] = Field(default_factory=dict)
    sha256: str | None = None
    thumbnail: Thumbnail = Field(default_factory=Thumbnail)

    @field_validator("sha256")
    @classmethod
    def _lowercase(cls, value: str | None) -> str | None:
        # The CRD accepts either case; the job and the row use lowercase.
        return value.lower() if value else value


class Condition(_Wire):
    type: str
    status: ConditionStatus
    reason: str
    message: str
    last_transition_time: datetime = Field(alias="lastTransitionTime")
    observed_generation: int | None = Field(default=None, alias="observedGeneration")


class MediaInfoStatus(_Wire):
    duration: float | None = None
    width: int | None = None
    height: int | None = None
    frame_rate: float | None = Field(default=None, alias="frameRate")
    codec: str | None = None
    bitrate: int | None = None
    format: str | None = None


class ResultStatus(_Wire):
    bucket: str
    key: str
    thumbnail_key: str | None = Field(default=None, alias="thumbnailKey")
    name: str | None = None
    size: int
    sha256: str
    content_type: str = Field(alias="contentType")
    media: MediaInfoStatus = Field(default_factory=lambda: MediaInfoStatus.model_validate({}))


class ProgressStatus(_Wire):
    """``status.progress``: the pod's last report (``channel_protocol.ProgressReport``) and
    the PROGRESS column's text."""

    summary: str
    phase: str
    bytes_downloaded: int = Field(default=0, alias="bytesDownloaded")
    bytes_total: int | None = Field(default=None, alias="bytesTotal")
    bytes_uploaded: int = Field(default=0, alias="bytesUploaded")
    percent: float | None = None
    speed: float | None = None
    eta: float | None = None
    attempt: int = 1
    updated_at: str | None = Field(default=None, alias="updatedAt")


class MediaImportStatus(_Wire):
    observed_generation: int | None = Field(default=None, alias="observedGeneration")
    phase: Phase | None = None
    type: MediaType | None = None
    asset_id: str | None = Field(default=None, alias="assetId")
    job_name: str | None = Field(default=None, alias="jobName")
    attempts: int | None = None
    start_time: datetime | None = Field(default=None, alias="startTime")
    completion_time: datetime | None = Field(default=None, alias="completionTime")
    conditions: tuple[Condition, ...] = ()
    progress: ProgressStatus | None = None
    result: ResultStatus | None = None

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def wire(self) -> dict[str, Any]:
        data = super().wire()
        # Timestamps as Kubernetes writes them: RFC 3339, seconds, "Z".
        for key in ("startTime", "completionTime"):
            value = getattr(self, "start_time" if key == "startTime" else "completion_time")
            if value is not None:
                data[key] = rfc3339(value)
        data["conditions"] = [
            {**c.wire(), "lastTransitionTime": rfc3339(c.last_transition_time)}
            for c in self.conditions
        ]
        return data


class ObjectRef(_Wire):
    """Who a MediaImport is: enough to find it, own children and post Events."""

    namespace: str
    name: str
    uid: str
    generation: int = 1

    @property
    def body(self) -> dict[str, Any]:
        """A minimal object body (for owner references and Events)."""
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"namespace": self.namespace, "name": self.name, "uid": self.uid},
        }


class MediaImport(_Wire):
    """A MediaImport as read from the API server."""

    ref: ObjectRef
    spec: MediaImportSpec
    status: MediaImportStatus = Field(default_factory=lambda: MediaImportStatus.model_validate({}))
    resource_version: str | None = None
    deleting: bool = False

    @property
    def asset_id(self) -> str:
        return self.spec.asset_id or self.ref.uid

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> MediaImport:
        meta = body.get("metadata", {})
        return cls(
            ref=ObjectRef(
                namespace=meta.get("namespace", ""),
                name=meta["name"],
                uid=meta["uid"],
                generation=meta.get("generation", 1),
            ),
            spec=MediaImportSpec.model_validate(body.get("spec") or {}),
            status=MediaImportStatus.model_validate(body.get("status") or {}),
            resource_version=meta.get("resourceVersion"),
            deleting=bool(meta.get("deletionTimestamp")),
        )


def rfc3339(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")
