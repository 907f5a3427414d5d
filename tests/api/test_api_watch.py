"""The shared watch's bookkeeping, driven by a scripted stand-in for the Kubernetes client
(a 410 Gone and a dropped connection cannot be produced on demand from a real API server):
resuming from the last resourceVersion, starting over after 410, re-reading subscribed
imports then, and handing each event to the subscribers of its import only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from mediaimport_api.watch import DELETED, ImportWatch
from mediaimport_operator.kube import ApiError

PATH = "/apis/mediaimport.dev/v1alpha1/namespaces/ns/mediaimports"


def body(name: str, version: str, phase: str = "Importing") -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": version}, "status": {"phase": phase}}


class ScriptedKube:
    """Answers the watch's calls from a script; records what it was asked."""

    def __init__(self, watches: list[list[dict[str, Any]] | Exception],
                 objects: dict[str, dict[str, Any]]) -> None:
        self.watches = watches
        self.objects = objects
        self.lists = 0
        self.watched_from: list[str] = []
        self.gets: list[str] = []
        self.go = asyncio.Event()  # set by the test once it has subscribed

    async def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        assert (method, path) == ("GET", PATH)
        self.lists += 1
        return {"metadata": {"resourceVersion": f"list-{self.lists}"}}

    async def get(self, path: str) -> dict[str, Any] | None:
        name = path.rsplit("/", 1)[1]
        self.gets.append(name)
        return self.objects.get(name)

    async def watch(self, path: str, *, resource_version: str, timeout_seconds: int
                    ) -> AsyncIterator[dict[str, Any]]:
        self.watched_from.append(resource_version)
        await self.go.wait()
        step = self.watches.pop(0) if self.watches else []
        if isinstance(step, Exception):
            raise step
        for event in step:
            yield event
        if not self.watches:
            await asyncio.Event().wait()  # the script is over: a quiet watch


def run(kube: ScriptedKube, scenario: Any) -> Any:
    async def main() -> Any:
        hub = ImportWatch(kube, "ns")  # type: ignore[arg-type]
        task = asyncio.create_task(hub.run())
        await asyncio.wait_for(hub.connected.wait(), 10)  # listed: subscribers come after
        try:
            return await scenario(hub, kube.go.set)
        finally:
            task.cancel()

    return asyncio.run(main())


def test_events_reach_the_subscribers_of_their_import_only() -> None:
    kube = ScriptedKube([[
        {"type": "MODIFIED", "object": body("a", "5")},
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "6"}}},
        {"type": "MODIFIED", "object": body("b", "7")},
    ]], {})

    async def scenario(hub: ImportWatch, go: Any) -> tuple[Any, ...]:
        a, b, other = hub.subscribe("a"), hub.subscribe("b"), hub.subscribe("c")
        go()
        got_a, got_b = await a.next(5), await b.next(5)
        assert await other.next(0.2) is None
        a.close()
        return got_a, got_b, hub.subscriptions

    got_a, got_b, left = run(kube, scenario)
    assert got_a.body["metadata"]["resourceVersion"] == "5"
    assert got_b.body["metadata"]["name"] == "b"
    assert left == 2


def test_a_broken_watch_resumes_from_the_last_version_and_410_starts_over() -> None:
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}
    kube = ScriptedKube(
        [[{"type": "MODIFIED", "object": body("a", "11")}],  # then the server ends it
         OSError("connection reset"),
         [gone],
         [{"type": "MODIFIED", "object": body("a", "40", "Ready")}]],
        {"a": body("a", "30", "Importing"), "gone": None},  # type: ignore[dict-item]
    )

    async def scenario(hub: ImportWatch, go: Any) -> tuple[list[str], Any]:
        a, gone_sub = hub.subscribe("a"), hub.subscribe("gone")
        go()
        versions: list[str] = []
        while not versions or versions[-1] != "40":
            update = await a.next(10)
            assert update is not None, versions
            versions.append(update.body["metadata"]["resourceVersion"])
        return versions, await gone_sub.next(10)

    versions, gone_update = run(kube, scenario)
    # 11 from the first watch; after the 410 the subscribed imports are read again (30,
    # which a reader may find already replaced by the new watch's 40), and one that no
    # longer exists is reported gone.
    assert versions[0] == "11" and versions[-1] == "40"
    assert set(versions) <= {"11", "30", "40"}
    assert gone_update is not None and gone_update.type == DELETED
    assert kube.watched_from == ["list-1", "11", "11", "list-2"]
    assert kube.lists == 2
    assert sorted(kube.gets) == ["a", "gone"]


def test_a_subscriber_keeps_only_the_newest_update() -> None:
    kube = ScriptedKube([[{"type": "MODIFIED", "object": body("a", str(v))}
                          for v in range(1, 50)]], {})

    async def scenario(hub: ImportWatch, go: Any) -> Any:
        subscription = hub.subscribe("a")
        go()
        await asyncio.sleep(0.2)  # all 49 events arrive while nobody reads
        first = await subscription.next(1)
        return first, await subscription.next(0.1)

    newest, nothing = run(kube, scenario)
    assert newest.body["metadata"]["resourceVersion"] == "49"
    assert nothing is None


def test_api_errors_other_than_410_are_retried_from_the_same_version() -> None:
    kube = ScriptedKube([ApiError("GET", PATH, 500, {"message": "etcd"}),
                         [{"type": "ADDED", "object": body("a", "3")}]], {})

    async def scenario(hub: ImportWatch, go: Any) -> Any:
        subscription = hub.subscribe("a")
        go()
        return await subscription.next(10)

    update = run(kube, scenario)
    assert update.body["metadata"]["resourceVersion"] == "3"
    assert kube.watched_from == ["list-1", "list-1"]


class FlakyGets(ScriptedKube):
    """The first re-read of ``flaky`` fails (the API server answering 500 for a moment)."""

    def __init__(self, *args: Any, flaky: str) -> None:
        super().__init__(*args)
        self.flaky = flaky

    async def get(self, path: str) -> dict[str, Any] | None:
        name = path.rsplit("/", 1)[1]
        if name == self.flaky and self.gets.count(name) == 0:
            self.gets.append(name)
            raise ApiError("GET", path, 500, {"message": "etcdserver: request timed out"})
        return await super().get(path)


def test_after_410_a_failed_re_read_is_retried_before_the_watch_resumes() -> None:
    """Issue 24 item 6: the new resourceVersion was taken before the re-reads; when one
    failed, the watch resumed from it and the imports not yet re-read never were, so a
    stream whose import finished (or was deleted) in the gap pinged for ever."""
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}
    kube = FlakyGets([[gone], []],
                     {"a": body("a", "30", "Ready"), "b": body("b", "31", "Failed")},
                     flaky="a")

    async def scenario(hub: ImportWatch, go: Any) -> tuple[Any, Any, Any]:
        a, b, deleted = hub.subscribe("a"), hub.subscribe("b"), hub.subscribe("deleted")
        go()
        return await a.next(10), await b.next(10), await deleted.next(10)

    a, b, deleted = run(kube, scenario)
    assert a is not None and a.body["status"]["phase"] == "Ready"
    assert b is not None and b.body["status"]["phase"] == "Failed"
    assert deleted is not None and deleted.type == DELETED
    # Listed again after the failed round, and the new watch starts from that listing.
    assert kube.lists == 3
    assert kube.watched_from == ["list-1", "list-3"]
