"""POST /api/v1/media/import-from-url and GET /api/v1/media[/{id}]."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse

from ..deps import ServicesDep, UserDep
from ..errors import ApiProblem, error_body, responses
from ..schemas import Asset, AssetPage, ImportAccepted
from ..store import CursorError, KeyRecord, get_asset, key_problem, list_assets, parse_uuid
from ..validation import ImportRequest, SourceUrlError, checked
from ..views import accepted_view, asset_view, failure_of

router = APIRouter(prefix="/api/v1/media", tags=["media"])


async def _asset(services: ServicesDep, row: dict[str, Any]) -> dict[str, Any]:
    ready = row["status"] == "ready"
    keys = (row.get("s3_key"), row.get("thumbnail_s3_key")) if ready else (None, None)
    [(url, thumbnail)] = await services.presigner.urls([keys])
    return asset_view(row, url, thumbnail, await services.imports.progress_of(row))


@router.post(
    "/import-from-url",
    status_code=202,
    response_model=ImportAccepted,
    summary="Import a file from a URL",
    responses={
        200: {"model": Asset, "description": "The import finished within the wait: the asset."},
        **responses(401, 409, 413, 415, 422, 503),
    },
)
async def import_from_url(
    body: ImportRequest,
    user: UserDep,
    services: ServicesDep,
    wait: Annotated[float | None, Query(
        ge=0, le=60,
        description="Seconds to wait for the result (0-60); images wait "
        "MEDIAIMPORT_API_IMAGE_WAIT_SECONDS by default, other types 0.",
    )] = None,
    idempotency_key: Annotated[str | None, Header(
        alias="Idempotency-Key",
        description="Repeating a request with the same key (within 24 h) returns the same "
        "import; the same key with a different body is refused (409).",
    )] = None,
) -> Any:
    """Creates the asset's row and its MediaImport, then answers 202 (the seed's shape).

    With ``wait`` (or for images) it waits for the result and answers 200 with the asset
    when it is ready, 422 when it failed, and 202 when it still runs at the bound.
    """
    if idempotency_key is not None and (problem := key_problem(idempotency_key)):
        raise ApiProblem(422, "validation_failed", problem,
                         details=[{"loc": ["header", "Idempotency-Key"], "message": problem,
                                   "type": "value_error"}])
    try:
        source = checked(body, services.policy)
    except SourceUrlError as error:
        raise ApiProblem(422, "validation_failed", f"url: {error}",
                         details=[{"loc": ["body", "url"], "message": str(error),
                                   "type": "value_error"}]) from error
    created = await services.imports.create_from_url(user, source, idempotency_key)
    if created.replay is not None:
        return await _replay(services, user, created.replay)
    timeout = wait if wait is not None else (
        services.settings.image_wait_seconds if source.type == "image" else 0.0
    )
    row = created.row
    if timeout > 0 and row["status"] == "uploading":
        row = await services.imports.wait_for_outcome(
            user, str(row["id"]), created.import_name, timeout
        ) or row
    if row["status"] == "uploading":
        return JSONResponse(accepted_view(row, created.import_name, source.guessed_type),
                            status_code=202)
    if row["status"] == "ready":
        answer = JSONResponse(await _asset(services, row), status_code=200)
        # Replays render the asset again: its presigned URLs would have expired.
        stored: dict[str, Any] | None = None
    else:
        failure = failure_of(row)
        stored = error_body(
            "import_failed", f"The import failed: {failure['message']}",
            details={"id": str(row["id"]), "import_job_id": created.import_name, **failure})
        answer = JSONResponse(stored, status_code=422)
    if idempotency_key is not None:  # a replay answers as this request did
        await services.imports.record_answer(user, idempotency_key, str(row["id"]),
                                             answer.status_code, stored)
    return answer


async def _replay(services: ServicesDep, user: str, record: KeyRecord) -> JSONResponse:
    """The first request's answer again: its status and body (an asset is rendered anew,
    with fresh presigned URLs; it may have changed since)."""
    headers = {"Idempotent-Replayed": "true"}
    if record.response_code != 200 and record.response_body is not None:
        return JSONResponse(record.response_body, status_code=record.response_code or 202,
                            headers=headers)
    row = await get_asset(services.db, user, record.asset_id, services.settings.served)
    if row is None:
        raise ApiProblem(409, "idempotency_conflict",
                         "The import of this Idempotency-Key no longer exists.")
    if record.response_code == 200:
        return JSONResponse(await _asset(services, row), status_code=200, headers=headers)
    # A key recorded before answers were kept: it was a 202.
    return JSONResponse(accepted_view(row, record.import_name, row.get("file_type")),
                        status_code=202, headers=headers)


@router.get("/{asset_id}", response_model=Asset, summary="One of your assets",
            responses=responses(401, 404, 503))
async def get_media(asset_id: str, user: UserDep, services: ServicesDep) -> Any:
    """The asset's row; ``url`` and ``thumbnail_url`` are presigned GETs (1 hour) once ready."""
    parsed = parse_uuid(asset_id)
    row = (await get_asset(services.db, user, parsed, services.settings.served)
           if parsed else None)
    if row is None:
        raise ApiProblem(404, "not_found", f"No asset {asset_id!r}.")
    return await _asset(services, row)


@router.get("", response_model=AssetPage, summary="Your assets, newest first",
            responses=responses(401, 422, 503))
async def list_media(
    *,
    user: UserDep,
    services: ServicesDep,
    status: Literal["uploading", "ready", "failed"] | None = None,
    type: Literal["video", "image", "audio"] | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Any:
    try:
        rows, next_cursor = await list_assets(
            services.db, user, namespaces=services.settings.served, status=status,
            media_type=type, limit=limit, cursor=cursor,
        )
    except CursorError as error:
        raise ApiProblem(422, "validation_failed", f"cursor: {error}") from error
    ready = [(r.get("s3_key"), r.get("thumbnail_s3_key")) if r["status"] == "ready"
             else (None, None) for r in rows]
    urls = await services.presigner.urls(ready)
    return {"items": [asset_view(row, url, thumb) for row, (url, thumb) in zip(rows, urls,
                                                                                  strict=True)],
            "next_cursor": next_cursor}
