"""The CRD's upgrade path, with the real helm against a real API server.

Helm installs a chart's crds/ folder once and never upgrades it; this chart renders the
CRD as a template instead, so `helm upgrade` upgrades it, and its keep policy leaves it
(and every MediaImport) in place on `helm uninstall`. The test runs a copy of the chart
whose CRD has a group of its own, so it never touches the MediaImport CRD the other
end-to-end tests share; no replicas run, so nothing acts on the shared cluster.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from mediaimport_dev.binaries import binary
from mediaimport_dev.controlplane import ControlPlane
from mediaimport_dev.kube import Json, Kube, KubeError
from support.chart import CHART

pytestmark = pytest.mark.e2e

QUIET = ["--set", "operator.replicaCount=0", "--set", "api.replicaCount=0"]


def _helm(plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary("helm")), "--kubeconfig", str(plane.kubeconfig), *args],
                          capture_output=True, text=True, check=True, timeout=180)


def _chart_copy(tmp: Path, group: str) -> Path:
    copy = tmp / "mediaimport"
    shutil.copytree(CHART, copy)
    crd_file = copy / "files/mediaimports.mediaimport.dev.yaml"
    crd_file.write_text(crd_file.read_text().replace("mediaimport.dev", group))
    return copy


def _get(kube: Kube, path: str) -> Json | None:
    try:
        return kube.get(path)
    except KubeError as error:
        if error.status == 404:
            return None
        raise


def _crd(kube: Kube, name: str) -> Json | None:
    return _get(kube, f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")


def test_upgrade_updates_the_crd_and_uninstall_keeps_it(
    control_plane: ControlPlane, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    group = f"t{uuid.uuid4().hex[:8]}.mediaimport.dev"
    crd_name = f"mediaimports.{group}"
    release = f"crd-{uuid.uuid4().hex[:6]}"
    chart = _chart_copy(tmp_path, group)
    try:
        _helm(control_plane, "install", release, str(chart), "-n", namespace, *QUIET)
        installed = _crd(kube, crd_name)
        assert installed is not None
        assert installed["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert installed["metadata"]["annotations"]["meta.helm.sh/release-name"] == release
        assert installed["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"

        # A new chart version changes the CRD (here: a new printer column): helm upgrade
        # applies it, which a crds/ folder would never do.
        crd_file = chart / "files/mediaimports.mediaimport.dev.yaml"
        crd = yaml.safe_load(crd_file.read_text())
        crd["spec"]["versions"][0]["additionalPrinterColumns"].append(
            {"name": "Upgraded", "type": "string", "jsonPath": ".spec.userId", "priority": 1})
        crd_file.write_text(yaml.safe_dump(crd, sort_keys=False))
        _helm(control_plane, "upgrade", release, str(chart), "-n", namespace, *QUIET)
        upgraded = _crd(kube, crd_name)
        assert upgraded is not None
        columns = upgraded["spec"]["versions"][0]["additionalPrinterColumns"]
        assert "Upgraded" in [c["name"] for c in columns]

        # An import exists when the release goes.
        version = crd["spec"]["versions"][0]["name"]
        plural = f"/apis/{group}/{version}/namespaces/{namespace}/mediaimports"
        kube.create(plural, {"apiVersion": f"{group}/{version}", "kind": "MediaImport",
                             "metadata": {"name": "kept"},
                             "spec": {"url": "https://example.com/a.mp4", "userId": "u1"}})
        uninstall = _helm(control_plane, "uninstall", release, "-n", namespace)
        assert "kept due to the resource policy" in uninstall.stdout + uninstall.stderr
        assert _crd(kube, crd_name) is not None
        assert _get(kube, f"{plural}/kept") is not None
        # Nothing else of the release is left: its cluster-wide roles are gone too.
        roles = kube.get("/apis/rbac.authorization.k8s.io/v1/clusterroles")["items"]
        assert not [r["metadata"]["name"] for r in roles
                    if (r["metadata"].get("labels") or {}).get("app.kubernetes.io/instance")
                    == release]
        deployments = kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments")["items"]
        assert deployments == []
    finally:
        subprocess.run([str(binary("kubectl")), "--kubeconfig", str(control_plane.kubeconfig),
                        "delete", "crd", crd_name, "--ignore-not-found", "--wait=false"],
                       capture_output=True, check=False, timeout=60)


def test_crds_keep_false_removes_the_crd_with_the_release(
    control_plane: ControlPlane, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    group = f"t{uuid.uuid4().hex[:8]}.mediaimport.dev"
    release = f"crd-{uuid.uuid4().hex[:6]}"
    chart = _chart_copy(tmp_path, group)
    _helm(control_plane, "install", release, str(chart), "-n", namespace, *QUIET,
          "--set", "crds.keep=false")
    assert _crd(kube, f"mediaimports.{group}") is not None
    _helm(control_plane, "uninstall", release, "-n", namespace, "--wait")
    crd = _crd(kube, f"mediaimports.{group}")
    assert crd is None or crd["metadata"].get("deletionTimestamp")
