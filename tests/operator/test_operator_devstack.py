"""The operator as a `mediaimport-dev` component: CRD, S3 Secret, process, readiness, log."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import eventually
from mediaimport_dev.controlplane import ControlPlane
from mediaimport_dev.operator_runner import OperatorComponent
from mediaimport_dev.postgres import PostgresServer
from mediaimport_dev.s3server import S3Server
from mediaimport_dev.stack import StackContext

pytestmark = pytest.mark.e2e


def test_component_installs_the_crd_and_runs_the_operator(
    control_plane: ControlPlane, postgres_server: PostgresServer, cluster_s3: S3Server,
    cluster_bucket: str, origin: Any, media: Any, tmp_path: Path,
    images: dict[str, Path],
) -> None:
    networks = [f"{origin.host}/32"]
    ctx = StackContext(tmp_path, networks, cluster_bucket, images=images)
    ctx.env = {
        "KUBECONFIG": str(control_plane.kubeconfig),
        "DATABASE_URL": postgres_server.url,
        "MEDIAIMPORT_BUCKET": cluster_bucket,
        "MEDIAIMPORT_ALLOWED_NETWORKS": ",".join(networks),
        **cluster_s3.env(),
    }
    component = OperatorComponent()
    state = component.up(ctx)
    try:
        assert component.healthy(state)
        assert "pid" in component.describe(state)
        metrics = requests.get(f"http://127.0.0.1:{state['port']}/metrics", timeout=5).text
        assert "mediaimport_operator_leader 1.0" in metrics
        kube = control_plane.kube()
        origin.add(media.path("image.png"), "devstack.png")
        name = f"dev-{uuid.uuid4().hex[:6]}"
        kube.create("/apis/mediaimport.dev/v1alpha1/namespaces/default/mediaimports", {
            "apiVersion": "mediaimport.dev/v1alpha1", "kind": "MediaImport",
            "metadata": {"name": name},
            "spec": {"url": origin.url("/files/devstack.png"), "userId": "dev"},
        })
        path = f"/apis/mediaimport.dev/v1alpha1/namespaces/default/mediaimports/{name}"
        try:
            body = eventually(
                lambda: (b := kube.get(path)).get("status", {}).get("phase") in ("Ready", "Failed")
                and b, timeout=180, what="the import")  # a loaded machine: pods start slowly
        except AssertionError:
            pods = kube.get("/api/v1/namespaces/default/pods")["items"]
            print([(p["metadata"]["name"], p["status"]) for p in pods], kube.get(path))
            raise
        assert body["status"]["phase"] == "Ready", body["status"]
        kube.delete(path)
        log = component.log_path(state)
        assert log is not None and "became the leader" in log.read_text()
    finally:
        component.down(state)
    assert not component.healthy(state)
