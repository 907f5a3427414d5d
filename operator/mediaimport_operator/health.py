"""One small HTTP server per replica: /healthz (liveness), /readyz and /metrics.

It runs for the whole life of the process, standby included: a replica that
waits for the Lease is alive, and must not be restarted by its liveness probe.
(kopf's own ``--liveness`` endpoint exists only while kopf runs, i.e. on the leader.)
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .metrics import REGISTRY


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        alive: Callable[[], bool],
        ready: Callable[[], bool],
        role: Callable[[], str],
        loops: Callable[[], dict[str, str]] = dict,
    ) -> None:
        self.host = host
        self.port = port
        self._alive = alive
        self._ready = ready
        self._role = role
        self._loops = loops
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0 and site._server is not None:  # an ephemeral port (tests)
            sockets = getattr(site._server, "sockets", None) or []
            if sockets:
                self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _: web.Request) -> web.Response:
        ok = self._alive()
        return web.json_response(
            {"status": "ok" if ok else "unhealthy", "role": self._role(), "loops": self._loops()},
            status=200 if ok else 503,
        )

    async def _readyz(self, _: web.Request) -> web.Response:
        ok = self._ready()
        return web.json_response(
            {"status": "ready" if ok else "not ready", "role": self._role()},
            status=200 if ok else 503,
        )

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
