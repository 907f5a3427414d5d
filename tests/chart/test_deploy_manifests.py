"""deploy/: the chart rendered into plain manifests, current, and installable with -k."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from mediaimport_dev.binaries import binary
from mediaimport_dev.controlplane import ControlPlane
from support.chart import ROOT

DEPLOY = ROOT / "deploy"
RENDERED = ["crds/mediaimports.mediaimport.dev.yaml", "mediaimport.yaml"]


def _kubectl(*args: str, plane: ControlPlane | None = None,
             check: bool = True) -> subprocess.CompletedProcess[str]:
    config = ["--kubeconfig", str(plane.kubeconfig)] if plane else []
    return subprocess.run([str(binary("kubectl")), *config, *args], capture_output=True,
                          text=True, check=check, timeout=120)


def test_deploy_is_the_rendered_chart(tmp_path: Path) -> None:
    subprocess.run([str(ROOT / "scripts/render-deploy.sh"), str(tmp_path)], check=True,
                   env={**os.environ, "HELM": str(binary("helm"))}, timeout=120,
                   capture_output=True)
    for name in RENDERED:
        assert (DEPLOY / name).read_text() == (tmp_path / name).read_text(), (
            f"deploy/{name} is stale: run scripts/render-deploy.sh")


def test_crd_is_a_real_file_not_a_link() -> None:
    crd = DEPLOY / "crds/mediaimports.mediaimport.dev.yaml"
    assert not crd.is_symlink()  # kustomize refuses files outside its folder
    doc = yaml.safe_load(crd.read_text())
    assert doc["kind"] == "CustomResourceDefinition"
    assert "annotations" not in doc["metadata"]  # helm's keep policy means nothing here


def test_kustomize_builds_everything_including_the_crd() -> None:
    docs = [d for d in yaml.safe_load_all(_kubectl("kustomize", str(DEPLOY)).stdout) if d]
    by_kind: dict[str, list[str]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc["metadata"]["name"])
    assert by_kind["CustomResourceDefinition"] == ["mediaimports.mediaimport.dev"]
    assert by_kind["Namespace"] == ["mediaimport-system"]
    assert sorted(by_kind["Deployment"]) == ["mediaimport-api", "mediaimport-operator"]
    assert "Pod" not in by_kind  # no helm test hook in plain manifests
    for doc in docs:
        if doc["kind"] not in ("CustomResourceDefinition", "Namespace", "ClusterRole",
                               "ClusterRoleBinding"):
            assert doc["metadata"]["namespace"] == "mediaimport-system", doc["metadata"]


@pytest.mark.e2e
def test_kubectl_apply_k_is_accepted_by_a_real_api_server(control_plane: ControlPlane) -> None:
    """Server-side dry run: the API server validates every object (the CRD included)
    without starting pods on the shared test cluster."""
    _kubectl("create", "namespace", "mediaimport-system", plane=control_plane, check=False)
    result = _kubectl("apply", "-k", str(DEPLOY), "--dry-run=server", plane=control_plane,
                      check=False)
    assert result.returncode == 0, result.stderr
    crd = "customresourcedefinition.apiextensions.k8s.io/mediaimports.mediaimport.dev"
    assert crd in result.stdout
    assert "deployment.apps/mediaimport-operator" in result.stdout
    assert "deployment.apps/mediaimport-api" in result.stdout
