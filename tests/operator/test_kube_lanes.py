"""The operator's API client lanes, against a real HTTP server on loopback.

A Job creation that is waiting or in flight holds ordinary requests back (bounded);
the leader Lease is never held back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import kubernetes.config.kube_config
import pytest
import yaml
from aiohttp import web
from mediaimport_operator import kube as kube_module
from mediaimport_operator.kube import Kube, Lane


class SlowServer:
    """Answers every request; POSTs to .../jobs take ``create_s`` seconds."""

    def __init__(self, create_s: float) -> None:
        self.create_s = create_s
        self.arrivals: list[str] = []  # request paths, in order

    async def handle(self, request: web.Request) -> web.Response:
        self.arrivals.append(request.path)
        if request.method == "POST" and request.path.endswith("/jobs"):
            await asyncio.sleep(self.create_s)
        return web.json_response({"metadata": {"name": "x"}})


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "kubeconfig"
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    return path


@contextlib.asynccontextmanager
async def _client(server: SlowServer, kubeconfig: Path) -> AsyncIterator[Kube]:
    """An operator client (4 ordinary lanes) talking to ``server`` on loopback."""
    runner = await _serve(server, kubeconfig)
    kube = Kube(concurrency=4)
    try:
        yield kube
    finally:
        await kube.close()
        await runner.cleanup()


async def _serve(server: SlowServer, kubeconfig: Path) -> web.AppRunner:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    config = yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    })
    await asyncio.to_thread(kubeconfig.write_text, config)
    return runner


def test_ordinary_requests_wait_for_pending_creations_and_the_lease_does_not(
    kubeconfig: Path,
) -> None:
    server = SlowServer(create_s=0.5)

    async def scenario() -> dict[str, float]:
        async with _client(server, kubeconfig) as kube:
            started = time.monotonic()
            create = asyncio.create_task(
                kube.create("/apis/batch/v1/namespaces/n/jobs", {"metadata": {"name": "j"}},
                            lane=Lane.CREATE)
            )
            await asyncio.sleep(0.05)  # the creation is in flight
            done: dict[str, float] = {}

            async def timed(label: str, lane: Lane) -> None:
                await kube.get(f"/apis/x/{label}", lane=lane)
                done[label] = time.monotonic() - started

            await asyncio.gather(create, timed("status", Lane.WORK), timed("lease", Lane.LEASE))
            done["create"] = time.monotonic() - started
            return done

    done = asyncio.run(scenario())
    assert done["lease"] < 0.3, done
    assert done["status"] >= 0.5, done  # not sent until the creation answered
    order = [path.rsplit("/", 1)[-1] for path in server.arrivals]
    assert order.index("jobs") < order.index("status")


def test_ordinary_requests_are_held_back_for_a_bounded_time(
    kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kube_module, "_MAX_YIELD_S", 0.2)
    server = SlowServer(create_s=1.5)

    async def scenario() -> float:
        async with _client(server, kubeconfig) as kube:
            create = asyncio.create_task(
                kube.create("/apis/batch/v1/namespaces/n/jobs", {"metadata": {"name": "j"}},
                            lane=Lane.CREATE)
            )
            await asyncio.sleep(0.05)
            started = time.monotonic()
            await kube.get("/apis/x/status")
            waited = time.monotonic() - started
            await create
            return waited

    waited = asyncio.run(scenario())
    assert 0.15 <= waited < 1.0


def test_ordinary_requests_wait_for_a_quiet_moment_after_a_creation(
    kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # New imports arrive as a stream with short gaps: a status write right after one
    # creation answered would delay the next creation.
    monkeypatch.setattr(kube_module, "_QUIET_S", 0.4)
    server = SlowServer(create_s=0.0)

    async def scenario() -> tuple[float, float]:
        async with _client(server, kubeconfig) as kube:
            started = time.monotonic()
            await kube.get("/apis/x/before")  # no creation yet: goes at once
            before = time.monotonic() - started
            await kube.create("/apis/batch/v1/namespaces/n/jobs", {"metadata": {"name": "j"}},
                              lane=Lane.CREATE)
            started = time.monotonic()
            await kube.get("/apis/x/after")
            return before, time.monotonic() - started

    before, after = asyncio.run(scenario())
    assert before < 0.3, before
    assert 0.3 <= after < 1.0, after
