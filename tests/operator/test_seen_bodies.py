"""What the reconciler keeps of the MediaImports it sees: only live ones, only what it reads."""

from __future__ import annotations

from typing import Any, cast

from mediaimport_operator.reconcile import Reconciler
from mediaimport_operator.settings import Settings
from operator_factories import mi_body


def _reconciler() -> Reconciler:
    # Observing bodies makes no API or database call: no client is needed.
    return Reconciler(settings=Settings(), kube=cast(Any, None), db=None,
                      post_event=lambda body, event: None)


def _bulky(status: dict | None = None) -> dict:
    body = mi_body(status=status)
    body["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
    body["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": "x" * 100_000}
    body["metadata"]["labels"] = {"team": "media"}
    return body


def test_a_live_import_is_kept_without_bookkeeping() -> None:
    rec = _reconciler()
    rec.observe("ADDED", _bulky())
    kept = rec.latest("media", "sunset")
    assert kept is not None
    assert set(kept) == {"metadata", "spec"}
    assert set(kept["metadata"]) == {"name", "namespace", "uid", "resourceVersion", "generation"}
    assert kept["spec"] == mi_body()["spec"]
    assert rec.live() == [kept]


def test_a_finished_or_deleted_import_is_forgotten() -> None:
    rec = _reconciler()
    rec.observe(None, _bulky({"phase": "Importing"}))
    assert rec.latest("media", "sunset") is not None
    rec.observe("MODIFIED", _bulky({"phase": "Ready"}))
    assert rec.latest("media", "sunset") is None
    rec.observe("MODIFIED", _bulky({"phase": "Importing"}))
    rec.observe("DELETED", _bulky({"phase": "Importing"}))
    assert rec.latest("media", "sunset") is None and rec.live() == []
    for index in range(1000):
        rec.observe(None, mi_body(f"done-{index}", status={"phase": "Failed"}))
    assert rec.live() == []


def test_a_predecessors_deletion_leaves_its_successor() -> None:
    # A listing after a watch gap: the import was deleted and created again under the
    # same name; the successor is seen first, the predecessor reported deleted after.
    rec = _reconciler()
    rec.observe(None, mi_body(uid="uid-old"))
    rec.observe(None, mi_body(uid="uid-new"))
    rec.observe("DELETED", mi_body(uid="uid-old"))
    kept = rec.latest("media", "sunset")
    assert kept is not None and kept["metadata"]["uid"] == "uid-new"
