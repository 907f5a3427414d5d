"""Which port serves what, when the API has an admin port (MEDIAIMPORT_API_ADMIN_PORT).

The API's port is the one an Ingress exposes: it serves the API and /healthz. The admin
port serves /healthz, /readyz and /metrics, for the kubelet's probes and Prometheus, and
nothing else. Both are sockets of the one uvicorn server (one app, one lifespan); a
request is told apart by the local port it arrived on.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import error_response

ADMIN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Served on the API's port too: liveness says nothing (load balancers check it).
SHARED_PATHS = frozenset({"/healthz"})


class AdminPortMiddleware:
    def __init__(self, app: ASGIApp, admin_port: int | None) -> None:
        self.app = app
        self.admin_port = admin_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.admin_port is None or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        server = scope.get("server")
        admin = server is not None and server[1] == self.admin_port
        path = scope["path"]
        allowed = path in ADMIN_PATHS if admin else (
            path in SHARED_PATHS or path not in ADMIN_PATHS)
        if allowed:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http":
            await error_response(404, "not_found", "No such resource.")(scope, receive, send)
        else:
            await send({"type": "websocket.close", "code": 1008})
