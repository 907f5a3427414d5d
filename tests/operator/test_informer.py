"""The operator's own MediaImport watch against the real API server: the listing comes in
pages, nothing of a finished import stays, and a listing again reports what was deleted
while no watch ran."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from conftest import GROUP_PATH
from mediaimport_dev.controlplane import ControlPlane
from mediaimport_dev.kube import Json
from mediaimport_dev.kube import Kube as AdminKube
from mediaimport_operator.informer import Informer
from mediaimport_operator.kube import Kube
from mediaimport_operator.reconcile import Reconciler
from mediaimport_operator.settings import Settings
from operator_support import create_finished

pytestmark = pytest.mark.e2e

Handed = list[tuple[str | None, str, str]]  # (type, name, uid)


def _live(kube: AdminKube, namespace: str, name: str) -> Json:
    return kube.create(f"{GROUP_PATH}/namespaces/{namespace}/mediaimports", {
        "apiVersion": "mediaimport.dev/v1alpha1", "kind": "MediaImport",
        "metadata": {"name": name},
        "spec": {"url": "https://example.com/clip.mp4", "userId": "user-1"},
    })


class World:
    """An informer over one namespace, handing everything to a reconciler's memory."""

    def __init__(self, namespace: str, page_size: int) -> None:
        # Observing bodies makes no API or database call: the reconciler needs no client.
        self.rec = Reconciler(settings=Settings(), kube=cast(Any, None), db=None,
                              post_event=lambda body, event: None)
        self.handed: Handed = []
        self.changed = asyncio.Event()
        self.kube = Kube()
        self.informer = Informer(self.kube, namespace, handle=self.handle, known=self.rec.live,
                                 page_size=page_size)

    async def handle(self, kind: str | None, body: Json) -> None:
        self.rec.observe(kind, body)
        meta = body["metadata"]
        self.handed.append((kind, meta["name"], meta["uid"]))
        self.changed.set()

    async def wait_for(self, kind: str, name: str) -> None:
        async with asyncio.timeout(30):
            while (kind, name) not in {(k, n) for k, n, _ in self.handed}:
                self.changed.clear()
                await self.changed.wait()

    def live(self) -> set[str]:
        return {body["metadata"]["name"] for body in self.rec.live()}


@pytest.fixture
def kubeconfig(control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's client (its loaders read KUBECONFIG when first imported) is pointed
    at the test's control plane."""
    import kubernetes.config.kube_config  # noqa: PLC0415 - the loaders, slow to import

    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION",
                        str(control_plane.kubeconfig))


@pytest.mark.usefixtures("crd", "kubeconfig")
def test_the_listing_comes_in_pages_and_nothing_of_finished_imports_stays(
    kube: AdminKube, namespace: str,
) -> None:
    create_finished(kube, namespace, [f"done-{i:03d}" for i in range(110)])
    for name in ("live-a", "live-b", "live-c"):
        _live(kube, namespace, name)

    async def main() -> World:
        world = World(namespace, page_size=50)
        task = asyncio.create_task(world.informer.run())
        try:
            await asyncio.wait_for(world.informer.listed.wait(), 60)
            assert world.informer.pages == 3  # 113 objects, 50 a page
            assert len(world.handed) == 113
            assert {kind for kind, _, _ in world.handed} == {None}
            assert world.live() == {"live-a", "live-b", "live-c"}
            # Then the watch, from the listing's version: a new import arrives as ADDED.
            await asyncio.to_thread(_live, kube, namespace, "live-d")
            await world.wait_for("ADDED", "live-d")
            assert world.live() == {"live-a", "live-b", "live-c", "live-d"}
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await world.kube.close()
        return world

    asyncio.run(main())


@pytest.mark.usefixtures("crd", "kubeconfig")
def test_a_listing_again_reports_what_was_deleted_meanwhile(
    kube: AdminKube, namespace: str,
) -> None:
    path = f"{GROUP_PATH}/namespaces/{namespace}/mediaimports"
    old = {name: _live(kube, namespace, name)["metadata"]["uid"]
           for name in ("gone", "again", "stays")}

    async def main() -> None:
        world = World(namespace, page_size=2)
        await world.informer.relist()
        assert world.live() == {"gone", "again", "stays"}
        # No watch runs (as after a 410): one is deleted, one deleted and created again.
        kube.delete(f"{path}/gone")
        kube.delete(f"{path}/again")
        again = _live(kube, namespace, "again")["metadata"]["uid"]
        world.handed.clear()
        await world.informer.relist()
        await world.kube.close()
        assert ("DELETED", "gone", old["gone"]) in world.handed
        deleted = world.handed.index(("DELETED", "again", old["again"]))
        assert world.handed.index((None, "again", again)) == deleted + 1
        assert world.live() == {"again", "stays"}
        kept = world.rec.latest(namespace, "again")
        assert kept is not None and kept["metadata"]["uid"] == again

    asyncio.run(main())
