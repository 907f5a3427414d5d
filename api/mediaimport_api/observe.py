"""Request metrics and one access-log line per request (without query strings: a
stream's ``access_token`` and a webhook's ``context`` must not reach the logs)."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import LATENCY, REQUESTS

log = logging.getLogger("mediaimport_api.access")


class ObserveMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                route = _route(scope)
                LATENCY.labels(scope["method"], route).observe(time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            route = _route(scope)
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            if log.isEnabledFor(logging.DEBUG) or status >= 500:
                log.log(
                    logging.WARNING if status >= 500 else logging.DEBUG,
                    "request",
                    extra={"method": scope["method"], "path": scope["path"], "status": status,
                           "user": (scope.get("state") or {}).get("user"),
                           "duration_s": round(time.perf_counter() - started, 4)},
                )


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
