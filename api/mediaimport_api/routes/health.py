"""/healthz (alive), /readyz (Kubernetes API and Postgres reachable), /metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from mediaimport_operator.kube import mediaimport_path
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..deps import ServicesDep
from ..metrics import REGISTRY, WATCH_CONNECTED

router = APIRouter(tags=["health"])
CHECK_TIMEOUT = 2.0


# HEAD as well (load balancers and uptime monitors check with it); uvicorn sends no body.
@router.head("/healthz", include_in_schema=False)
@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _kubernetes(services: ServicesDep) -> str | None:
    try:
        await asyncio.wait_for(services.kube.request(
            "GET", mediaimport_path(services.settings.namespace), params={"limit": "1"}
        ), CHECK_TIMEOUT)
    except Exception as error:
        return str(error) or type(error).__name__
    return None


async def _postgres(services: ServicesDep) -> str | None:
    async def check() -> None:
        async with services.db.connection() as conn:
            await conn.execute("SELECT 1")

    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT)
    except Exception as error:
        return str(error) or type(error).__name__
    return None


@router.head("/readyz", include_in_schema=False)
@router.get("/readyz", summary="Readiness",
            responses={503: {"description": "A dependency is unreachable (which, and why)."}})
async def readyz(services: ServicesDep) -> Any:
    kubernetes, postgres = await asyncio.gather(_kubernetes(services), _postgres(services))
    checks = {"kubernetes": kubernetes or "ok", "postgres": postgres or "ok"}
    ready = kubernetes is None and postgres is None
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response, include_in_schema=False)
async def metrics(services: ServicesDep) -> Response:
    WATCH_CONNECTED.set(1 if services.watch.connected.is_set() else 0)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
