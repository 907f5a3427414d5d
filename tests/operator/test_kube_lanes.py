"""The operator's API client lanes: the scheduling itself (``Lanes``), and the client
using it against a real HTTP server on loopback.

While a Job creation is waiting, in flight or just started, ordinary requests go a trickle
at a time, never none; the leader Lease is never held back.
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
from mediaimport_operator.kube import Kube
from mediaimport_operator.lanes import Lane, Lanes


class SlowServer:
    """Answers every request; POSTs to .../jobs take ``create_s`` seconds, other requests
    ``other_s``; counts how many status requests were in flight at once."""

    def __init__(self, create_s: float, other_s: float = 0.0) -> None:
        self.create_s, self.other_s = create_s, other_s
        self.arrivals: list[str] = []  # request paths, in order
        self.others_in_flight = self.most_others_in_flight = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.arrivals.append(request.path)
        if request.method == "POST" and request.path.endswith("/jobs"):
            await asyncio.sleep(self.create_s)
        else:
            counted = "status" in request.path
            self.others_in_flight += counted
            self.most_others_in_flight = max(self.most_others_in_flight, self.others_in_flight)
            await asyncio.sleep(self.other_s)
            self.others_in_flight -= counted
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


class Tracker:
    """Runs ordinary requests through ``lanes`` and records the most in flight at once."""

    def __init__(self, lanes: Lanes) -> None:
        self.lanes = lanes
        self.in_flight = self.most = 0

    async def work(self, hold_s: float) -> None:
        async with self.lanes.slot(Lane.WORK):
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            await asyncio.sleep(hold_s)
            self.in_flight -= 1


async def occupy(lanes: Lanes, lane: Lane, until: asyncio.Event) -> None:
    """Hold a slot of ``lane`` until ``until`` is set."""
    async with lanes.slot(lane):
        await until.wait()


def test_pending_creations_hold_ordinary_work_to_a_trickle_that_keeps_moving() -> None:
    async def scenario() -> tuple[int, float, int]:
        lanes = Lanes(8, trickle=2, quiet_s=0.05)
        tracker = Tracker(lanes)
        creation_done = asyncio.Event()
        creator = asyncio.create_task(occupy(lanes, Lane.CREATE, creation_done))
        await asyncio.sleep(0)
        started = time.monotonic()
        # A creation that never ends cannot starve them: all six get through, two at a time.
        await asyncio.gather(*(tracker.work(0.05) for _ in range(6)))
        elapsed = time.monotonic() - started
        during = tracker.most
        creation_done.set()
        await creator
        await asyncio.sleep(0.06)  # the quiet moment after the last creation
        tracker.most = 0
        await asyncio.gather(*(tracker.work(0.05) for _ in range(8)))
        return during, elapsed, tracker.most

    during, elapsed, after = asyncio.run(scenario())
    assert during == 2
    assert elapsed >= 0.15  # three rounds of two
    assert after == 8  # full width once the creations are over


def test_work_stays_a_trickle_for_a_quiet_moment_after_a_creation() -> None:
    # New imports arrive as a stream with short gaps: full width right after one creation
    # answered would flood the API server just as the next one is sent.
    async def scenario() -> tuple[int, int, int, int]:
        lanes = Lanes(8, trickle=1, quiet_s=0.3)
        before = lanes.work_allowed()
        async with lanes.slot(Lane.CREATE):
            pass
        right_after = lanes.work_allowed()
        tracker = Tracker(lanes)
        await asyncio.gather(*(tracker.work(0.01) for _ in range(3)))
        await asyncio.sleep(0.3)
        return before, right_after, tracker.most, lanes.work_allowed()

    assert asyncio.run(scenario()) == (8, 1, 1, 8)


def test_waiting_work_goes_as_soon_as_the_last_creation_is_over() -> None:
    async def scenario() -> float:
        lanes = Lanes(4, trickle=1, quiet_s=0.0)
        tracker = Tracker(lanes)
        release = asyncio.Event()
        creator = asyncio.create_task(occupy(lanes, Lane.CREATE, release))
        await asyncio.sleep(0)
        blocker = asyncio.create_task(tracker.work(10))  # takes the one trickle slot
        await asyncio.sleep(0)
        waiting = asyncio.create_task(tracker.work(0))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        started = time.monotonic()
        release.set()
        await creator
        await waiting
        blocker.cancel()
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 0.05


def test_the_lease_never_waits_behind_creations_or_work() -> None:
    async def scenario() -> float:
        lanes = Lanes(1, trickle=1)
        hold = asyncio.Event()
        lanes_taken = (Lane.CREATE, Lane.CREATE, Lane.WORK, Lane.WORK)
        tasks = [asyncio.create_task(occupy(lanes, lane, hold)) for lane in lanes_taken]
        await asyncio.sleep(0.01)
        started = time.monotonic()
        async with lanes.slot(Lane.LEASE):
            waited = time.monotonic() - started
        hold.set()
        await asyncio.gather(*tasks)
        return waited

    assert asyncio.run(scenario()) < 0.01


def test_the_client_sends_ordinary_requests_a_trickle_at_a_time_during_a_creation(
    kubeconfig: Path,
) -> None:
    server = SlowServer(create_s=0.6, other_s=0.1)

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

            await asyncio.gather(
                timed("lease", Lane.LEASE), *(timed(f"status-{i}", Lane.WORK) for i in range(4))
            )
            await create
            return done

    done = asyncio.run(scenario())
    assert done["lease"] < 0.3, done
    assert server.most_others_in_flight == 2
    # Four writes, two at a time, 0.1 s each, all while the creation was still in flight.
    assert 0.2 <= max(v for k, v in done.items() if k.startswith("status")) < 0.6, done
