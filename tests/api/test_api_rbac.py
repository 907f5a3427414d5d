"""The API's RBAC is the minimum it uses: run it as a ServiceAccount bound to a Role with
exactly the rules docs/api.md lists, and import, read, stream and cancel through it."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from api_world import ROOT, ApiServer, World
from mediaimport_dev.binaries import binary
from mediaimport_dev.controlplane import ControlPlane

pytestmark = pytest.mark.e2e

DOC = ROOT / "docs" / "api.md"
MARKER = "<!-- api-rbac-rules:"


def documented_rules() -> list[dict[str, Any]]:
    text = DOC.read_text()
    block = text[text.index(MARKER):]
    yaml_text = re.search(r"```yaml\n(.*?)```", block, re.DOTALL)
    assert yaml_text is not None, "docs/api.md lost its RBAC block"
    rules: list[dict[str, Any]] = yaml.safe_load(yaml_text.group(1))["rules"]
    return rules


def test_the_documented_rules_are_only_mediaimports() -> None:
    rules = documented_rules()
    assert rules == [{"apiGroups": ["mediaimport.dev"], "resources": ["mediaimports"],
                      "verbs": ["create", "get", "list", "watch", "delete"]}]


def _service_account_kubeconfig(plane: ControlPlane, namespace: str, tmp: Path) -> Path:
    name = "mediaimport-api"
    manifests = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": name}, "rules": documented_rules()},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]},
    ]
    kubectl = [str(binary("kubectl")), "--kubeconfig", str(plane.kubeconfig), "-n", namespace]
    subprocess.run([*kubectl, "apply", "-f", "-"], input=yaml.safe_dump_all(manifests),
                   text=True, check=True, capture_output=True, timeout=60)
    token = subprocess.run([*kubectl, "create", "token", name, "--duration=1h"], text=True,
                           check=True, capture_output=True, timeout=60).stdout.strip()
    admin = yaml.safe_load(plane.kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    if "certificate-authority" in cluster:
        ca = Path(cluster["certificate-authority"]).read_bytes()
        cluster = {"server": cluster["server"],
                   "certificate-authority-data": base64.b64encode(ca).decode()}
    path = tmp / "api-sa.kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "sa"}}],
        "current-context": "c",
    }))
    return path


def test_the_api_works_with_exactly_the_documented_rights(
    control_plane: ControlPlane, crd: str, kube: Any, s3_server: Any, postgres_server: Any,
    tmp_path: Path,
) -> None:
    world = World(control_plane, kube, s3_server, postgres_server, tmp_path)
    api: ApiServer | None = None
    try:
        kubeconfig = _service_account_kubeconfig(control_plane, world.namespace, tmp_path)
        api = world.start_api(KUBECONFIG=str(kubeconfig))  # /readyz lists: it is ready
        user = api.new_user()
        accepted = api.post_import(user, {"url": "https://cdn.example.test/a.mp4"})  # create
        assert accepted.status_code == 202, accepted.text
        name = accepted.json()["metadata"]["import_job_id"]
        assert api.request("GET", f"/api/v1/imports/{name}", user).status_code == 200  # get

        answer = api.request("GET", f"/api/v1/imports/{name}/events", user, stream=True)
        assert answer.status_code == 200, answer.text
        data = (line for line in answer.iter_lines(decode_unicode=True)
                if line.startswith("data:"))
        assert json.loads(next(data)[5:])["status"] == "queued"
        cancelled = api.request("DELETE", f"/api/v1/imports/{name}", user)  # delete
        assert cancelled.status_code == 202, cancelled.text
        # The end of the stream came through the shared watch (list + watch).
        last = json.loads(list(data)[-1][5:])
        assert last["error"]["reason"] == "Cancelled"
        log = api.log()
        refused = re.search(r"Forbidden|HTTP 403|code\W+403\b", log)
        assert refused is None, log[max(0, refused.start() - 300):refused.end() + 300]
    finally:
        if api is not None:
            api.stop()
        world.remove()
