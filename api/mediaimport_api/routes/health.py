"""/healthz (alive), /readyz (Kubernetes API and Postgres reachable), /metrics.

With an admin port (MEDIAIMPORT_API_ADMIN_PORT) /readyz and /metrics are served there
only (ports.AdminPortMiddleware), so an Ingress to the API's port does not expose them;
they are left out of the OpenAPI document, which describes the API's port.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..deps import ServicesDep
from ..metrics import REGISTRY, WATCH_CONNECTED
from ..readiness import OK

router = APIRouter(tags=["health"])


# HEAD as well (load balancers and uptime monitors check with it); uvicorn sends no body.
@router.head("/healthz", include_in_schema=False)
@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.head("/readyz", include_in_schema=False)
@router.get("/readyz", include_in_schema=False)
async def readyz(services: ServicesDep) -> Any:
    """200 when the Kubernetes API and Postgres answer within 2 s; 503 naming which did
    not (why is in the log, not in an answer anyone who reaches the port may read)."""
    checks = await services.readiness.checks()
    ready = all(value == OK for value in checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response, include_in_schema=False)
async def metrics(services: ServicesDep) -> Response:
    WATCH_CONNECTED.set(1 if services.watch.connected.is_set() else 0)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
