"""What the API answers, computed from a MediaImport or a media_assets row (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mediaimport_operator.model import SUCCEEDED, MediaImport, Phase, ProgressStatus
from mediaimport_operator.records import (
    CANCELLED_MESSAGE,
    CANCELLED_REASON,
    IMPORT_KEY,
    cancelled_error,
)

# The seed's job states, by MediaImport phase.
JOB_STATUS = {
    Phase.PENDING: "queued",
    Phase.IMPORTING: "started",
    Phase.READY: "finished",
    Phase.FAILED: "failed",
}
TERMINAL_JOB_STATUSES = frozenset({"finished", "failed"})


def job_status(body: dict[str, Any]) -> dict[str, Any]:
    """``{status, result, error, progress, phase, conditions}`` of a MediaImport."""
    mi = MediaImport.from_body(body)
    phase = mi.status.phase or Phase.PENDING
    result = None
    if phase is Phase.READY and mi.status.result is not None:
        result = {"id": mi.asset_id, **mi.status.result.wire()}
    error = None
    if phase is Phase.FAILED:
        condition = mi.status.condition(SUCCEEDED)
        error = {
            "reason": condition.reason if condition else "Failed",
            "message": condition.message if condition else "The import failed.",
        }
    return {
        "status": JOB_STATUS[phase],
        "result": result,
        "error": error,
        "progress": progress_view(mi.status.progress),
        "phase": phase.value,
        "conditions": mi.status.wire()["conditions"],
    }


def progress_view(progress: ProgressStatus | None) -> dict[str, Any] | None:
    """``status.progress`` as the API answers it: every field, null when unknown."""
    if progress is None:
        return None
    return progress.model_dump(mode="json", by_alias=True)


def cancelled_status() -> dict[str, Any]:
    """What a stream says last when its import was deleted before it finished."""
    return {
        "status": "failed",
        "result": None,
        "error": {"reason": CANCELLED_REASON, "message": CANCELLED_MESSAGE},
        "progress": None,
        "phase": Phase.FAILED.value,
        "conditions": [],
    }


def is_deleting(body: dict[str, Any]) -> bool:
    """Deletion was asked for: the import will end cancelled unless it already finished."""
    if not (body.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return JOB_STATUS[MediaImport.from_body(body).status.phase or Phase.PENDING] not in (
        TERMINAL_JOB_STATUSES)


def cancelled_row(row: dict[str, Any]) -> dict[str, Any]:
    """The row as the operator will write it for an import deleted before it finished."""
    metadata = {**(row.get("file_metadata") or {}),
                **cancelled_error(datetime.now(UTC))}
    return {**row, "status": "failed", "file_metadata": metadata}


def import_name_of(row: dict[str, Any]) -> str | None:
    ref = (row.get("file_metadata") or {}).get(IMPORT_KEY)
    name = ref.get("name") if isinstance(ref, dict) else None
    return name if isinstance(name, str) else None


def import_uid_of(row: dict[str, Any]) -> str | None:
    ref = (row.get("file_metadata") or {}).get(IMPORT_KEY)
    uid = ref.get("uid") if isinstance(ref, dict) else None
    return uid if isinstance(uid, str) else None


def asset_progress(row: dict[str, Any], body: dict[str, Any] | None) -> dict[str, Any] | None:
    """The progress of an uploading asset's import: only from the MediaImport that wrote
    the row (same uid and user; a later import of the same name is another one)."""
    if body is None or row.get("status") != "uploading":
        return None
    if (body.get("metadata") or {}).get("uid") != import_uid_of(row):
        return None
    if (body.get("spec") or {}).get("userId") != row.get("user_id"):
        return None
    return progress_view(MediaImport.from_body(body).status.progress)


def public_metadata(row: dict[str, Any]) -> dict[str, Any]:
    """file_metadata as clients see it: the MediaImport reference becomes import_job_id."""
    metadata = dict(row.get("file_metadata") or {})
    metadata.pop(IMPORT_KEY, None)
    name = import_name_of(row)
    if name is not None:
        metadata["import_job_id"] = name
    return metadata


def _iso(value: Any) -> str | None:
    """RFC 3339 in UTC with "Z", as pydantic writes the same value in other answers."""
    if not isinstance(value, datetime):
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def asset_view(row: dict[str, Any], url: str | None, thumbnail_url: str | None,
               progress: dict[str, Any] | None = None) -> dict[str, Any]:
    """An asset as GET /api/v1/media/{id} answers it."""
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "type": row.get("file_type"),
        "status": row["status"],
        "url": url or "",
        "thumbnail_url": thumbnail_url,
        "size": row.get("file_size") or 0,
        "checksum": row.get("checksum"),
        "created_at": _iso(row.get("created_at")),
        "updated_at": _iso(row.get("updated_at")),
        "metadata": public_metadata(row),
        "progress": progress,
    }


def accepted_view(row: dict[str, Any], import_name: str, guessed_type: str | None
                  ) -> dict[str, Any]:
    """The 202 answer of import-from-url (the seed's shape)."""
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "type": row.get("file_type") or guessed_type,
        "url": "",
        "thumbnail_url": None,
        "size": 0,
        "created_at": _iso(row.get("created_at")),
        "metadata": {"import_job_id": import_name, "status": "processing"},
    }


def failure_of(row: dict[str, Any]) -> dict[str, str]:
    error = (row.get("file_metadata") or {}).get("error")
    if isinstance(error, dict):
        return {"reason": str(error.get("reason", "Failed")),
                "message": str(error.get("message", "The import failed."))}
    return {"reason": "Failed", "message": "The import failed."}
