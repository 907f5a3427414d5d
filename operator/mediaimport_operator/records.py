"""MediaImport status → values of its media_assets row (pure) — contract 3 of DESIGN.md.

file_metadata keeps the seed's snake_case key names, so existing consumers keep
working: duration, width, height, frame_rate, codec, bitrate, format, the user's
metadata, source_url, imported_at and (for failures) error. The operator's own
keys win over user keys of the same name: a user cannot forge source_url.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from mediaimport_job.urls import redact

from .metadata import storable
from .model import SUCCEEDED, MediaImport, MediaImportStatus, Phase, rfc3339

RowStatus = Literal["uploading", "ready", "failed"]

CANCELLED_REASON = "Cancelled"
CANCELLED_MESSAGE = "The MediaImport was deleted before the import finished (cancelled)."
# Key under which a row remembers which MediaImport wrote it.
IMPORT_KEY = "mediaimport"


@dataclass(frozen=True)
class AssetRow:
    id: str
    user_id: str
    name: str
    status: RowStatus
    file_type: str | None = None
    file_size: int | None = None
    s3_key: str | None = None
    thumbnail_s3_key: str | None = None
    checksum: str | None = None
    file_metadata: dict[str, Any] | None = None
    namespace: str | None = None  # the MediaImport's (None: a row the seed app made)

    @property
    def import_uid(self) -> str | None:
        ref = (self.file_metadata or {}).get(IMPORT_KEY) or {}
        uid = ref.get("uid") if isinstance(ref, dict) else None
        return uid if isinstance(uid, str) else None


def row_status(phase: Phase | None) -> RowStatus:
    if phase == Phase.READY:
        return "ready"
    if phase == Phase.FAILED:
        return "failed"
    return "uploading"


def default_name(url: str) -> str:
    """The URL's last path segment, as a placeholder until the job reports the stored name."""
    try:
        segment = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    except ValueError:
        segment = ""
    segment = "".join(ch for ch in segment if ch.isprintable() and ch not in "/\\")
    return segment[:255] or "media"


def import_ref(mi: MediaImport) -> dict[str, str]:
    return {"namespace": mi.ref.namespace, "name": mi.ref.name, "uid": mi.ref.uid}


def row_for(mi: MediaImport, status: MediaImportStatus | None = None) -> AssetRow:
    """The row that matches ``status`` (default: the MediaImport's current status)."""
    status = status if status is not None else mi.status
    spec = mi.spec
    # Made storable: a MediaImport created with kubectl may hold what Postgres refuses.
    metadata: dict[str, Any] = storable(spec.metadata)
    # Signed URLs carry their secret in the query: the row keeps what the job's logs show.
    metadata["source_url"] = redact(spec.url)
    metadata[IMPORT_KEY] = import_ref(mi)
    row_state = row_status(status.phase)
    result = status.result
    name = (result.name if result is not None else None) or spec.name or default_name(spec.url)
    values: dict[str, Any] = {}
    if row_state == "ready" and result is not None:
        media = result.media
        metadata.update(
            {
                "duration": media.duration,
                "width": media.width,
                "height": media.height,
                "frame_rate": media.frame_rate,
                "codec": media.codec,
                "bitrate": media.bitrate,
                "format": media.format,
                "content_type": result.content_type,
                "imported_at": rfc3339(status.completion_time) if status.completion_time else None,
            }
        )
        metadata.pop("error", None)
        values = {
            "file_size": result.size,
            "s3_key": result.key,
            "thumbnail_s3_key": result.thumbnail_key,
            "checksum": result.sha256,
        }
    elif row_state == "failed":
        condition = status.condition(SUCCEEDED)
        metadata["error"] = {
            "reason": condition.reason if condition else "Failed",
            "message": condition.message if condition else "The import failed.",
        }
        if status.completion_time:
            metadata["failed_at"] = rfc3339(status.completion_time)
    return AssetRow(
        id=mi.asset_id,
        user_id=spec.user_id,
        name=name,
        status=row_state,
        file_type=status.type or spec.type,
        file_metadata=metadata,
        namespace=mi.ref.namespace,
        **values,
    )


def cancelled_error(now: datetime) -> dict[str, Any]:
    return {
        "error": {"reason": CANCELLED_REASON, "message": CANCELLED_MESSAGE},
        "failed_at": rfc3339(now),
    }
