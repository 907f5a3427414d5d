"""What the API answers, computed from a MediaImport or a media_assets row (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mediaimport_operator.model import SUCCEEDED, MediaImport, Phase
from mediaimport_operator.records import CANCELLED_MESSAGE, CANCELLED_REASON, IMPORT_KEY

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
    progress = (body.get("status") or {}).get("progress")
    return {
        "status": JOB_STATUS[phase],
        "result": result,
        "error": error,
        "progress": progress if isinstance(progress, int | float | dict) else None,
        "phase": phase.value,
        "conditions": mi.status.wire()["conditions"],
    }


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


def import_name_of(row: dict[str, Any]) -> str | None:
    ref = (row.get("file_metadata") or {}).get(IMPORT_KEY)
    name = ref.get("name") if isinstance(ref, dict) else None
    return name if isinstance(name, str) else None


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


def asset_view(row: dict[str, Any], url: str | None, thumbnail_url: str | None) -> dict[str, Any]:
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
