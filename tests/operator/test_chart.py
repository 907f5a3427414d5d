"""The Helm chart and deploy/: lint, render, strict values, and the same manifests as deploy/."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from mediaimport_dev.binaries import binary

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts/mediaimport"


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary("helm")), *args], capture_output=True, text=True,
                          check=check, timeout=120)


def render(*args: str) -> list[dict]:
    out = helm("template", "mediaimport", str(CHART), "--namespace", "mediaimport-system",
               "--kube-version", "1.35.4", *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.mark.parametrize("values", [None, CHART / "ci/namespaced-values.yaml"])
def test_helm_lint_strict(values: Path | None) -> None:
    extra = ["-f", str(values)] if values else []
    result = helm("lint", str(CHART), "--strict", "--kube-version", "1.35.4", *extra,
                  check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_default_render_is_secure_and_cluster_wide() -> None:
    docs = render()
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ClusterRole", "ClusterRole", "ClusterRoleBinding", "ClusterRoleBinding",
                     "Deployment", "Role", "RoleBinding", "ServiceAccount"]
    (deploy,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = deploy["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MEDIAIMPORT_NAMESPACES"] == ""
    assert deploy["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "mediaimport", "app.kubernetes.io/instance": "mediaimport"}
    rules = next(d for d in docs if d["kind"] == "ClusterRole"
                 and d["metadata"]["name"].endswith("imports"))["rules"]
    verbs = {(r["apiGroups"][0], r["resources"][0]): r["verbs"] for r in rules}
    assert verbs[("batch", "jobs")] == ["get", "list", "watch", "create"]
    assert "delete" not in str(rules)  # the GC deletes Jobs, not the operator


def test_namespaced_render_binds_only_those_namespaces() -> None:
    docs = render("-f", str(CHART / "ci/namespaced-values.yaml"))
    bindings = [d for d in docs if d["kind"] == "RoleBinding"
                and d["metadata"]["name"].endswith("imports")]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["media", "media-staging"]
    assert not [d for d in docs if d["kind"] == "ClusterRoleBinding"
                and d["metadata"]["name"].endswith("imports")]


def test_misspelled_value_is_refused() -> None:
    result = helm("template", "x", str(CHART), "--kube-version", "1.35.4",
                  "--set", "replicaCunt=2", check=False)
    assert result.returncode != 0
    assert "replicaCunt" in result.stderr


def test_deploy_is_the_rendered_chart() -> None:
    rendered = helm("template", "mediaimport", str(CHART), "--namespace", "mediaimport-system",
                    "--kube-version", "1.35.4", "--skip-crds").stdout
    committed = (ROOT / "deploy/operator.yaml").read_text()
    body = "\n".join(line for line in committed.splitlines() if not line.startswith("# Gen")
                     and not line.startswith("#   --"))
    assert body.strip() == rendered.strip(), "deploy/operator.yaml is stale: regenerate it"
    kustomized = subprocess.run([str(binary("kubectl")), "kustomize", str(ROOT / "deploy")],
                                capture_output=True, text=True, check=True).stdout
    assert "kind: Deployment" in kustomized
