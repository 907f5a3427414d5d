"""RBAC, CRDs and ordinary clients against the real API server."""

from __future__ import annotations

import subprocess

import pytest
from k8s_helpers import eventually
from kubernetes import client, config
from mediaimport_dev.binaries import binary
from mediaimport_dev.controlplane import ControlPlane
from mediaimport_dev.kube import Kube, KubeError

pytestmark = pytest.mark.e2e


def test_kubectl_and_the_kubernetes_client_use_the_kubeconfig(
    control_plane: ControlPlane, kube: Kube
) -> None:
    api = client.CoreV1Api(config.new_client_from_config(str(control_plane.kubeconfig)))
    names = [ns.metadata.name for ns in api.list_namespace().items]
    assert {"default", "kube-system"} <= set(names)
    out = subprocess.run(
        [str(binary("kubectl")), "--kubeconfig", str(control_plane.kubeconfig),
         "auth", "can-i", "create", "jobs"],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "yes"


def test_rbac_denies_without_a_role_and_allows_with_one(kube: Kube, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}"
    kube.create(f"{base}/serviceaccounts", {"metadata": {"name": "reader"}})
    token = kube.create(
        f"{base}/serviceaccounts/reader/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
         "spec": {"expirationSeconds": 600}},
    )["status"]["token"]
    reader = kube.with_token(token)
    with pytest.raises(KubeError) as denied:
        reader.get(f"{base}/pods")
    assert denied.value.status == 403

    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    kube.create(f"{rbac}/roles", {
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
    })
    kube.create(f"{rbac}/rolebindings", {
        "metadata": {"name": "reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "pod-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
    })

    def allowed() -> bool:
        try:
            reader.get(f"{base}/pods")
        except KubeError as error:
            assert error.status == 403
            return False
        return True

    eventually(allowed, timeout=10, what="the RoleBinding to take effect")
    with pytest.raises(KubeError) as still_denied:
        reader.get(f"{base}/secrets")
    assert still_denied.value.status == 403


GADGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.test.mediaimport.dev"},
    "spec": {
        "group": "test.mediaimport.dev",
        "scope": "Namespaced",
        "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
        "versions": [{
            "name": "v1",
            "served": True,
            "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object",
                        "required": ["url"],
                        "x-kubernetes-validations": [
                            {"rule": "self == oldSelf", "message": "spec is immutable"},
                        ],
                        "properties": {
                            "url": {
                                "type": "string",
                                "maxLength": 100,
                                "x-kubernetes-validations": [{
                                    "rule": "self.startsWith('http://') || "
                                            "self.startsWith('https://')",
                                    "message": "url must be http or https",
                                }],
                            },
                            "size": {"type": "integer", "minimum": 1},
                        },
                    },
                    "status": {
                        "type": "object",
                        "properties": {"phase": {"type": "string"}},
                    },
                },
            }},
        }],
    },
}


def test_crd_schema_cel_and_status_subresource(kube: Kube, namespace: str) -> None:
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    try:
        kube.create(crds, GADGET_CRD)
    except KubeError as error:
        if error.status != 409:
            raise

    def established() -> bool:
        # A just-created CRD may have no status, or a null conditions list, yet.
        status = kube.get(f"{crds}/gadgets.test.mediaimport.dev").get("status") or {}
        conditions = status.get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    eventually(established, timeout=10, what="the CRD to be established")
    path = f"/apis/test.mediaimport.dev/v1/namespaces/{namespace}/gadgets"

    def create(name: str, spec: dict[str, object]) -> dict[str, object]:
        body = {"apiVersion": "test.mediaimport.dev/v1", "kind": "Gadget",
                "metadata": {"name": name}, "spec": spec}
        # A fresh CRD's endpoint can answer 404 for a moment after Established.
        return eventually(lambda: _create_unless_404(kube, path, body), timeout=10)

    for spec, message in [
        ({"size": 2}, "spec.url: Required value"),
        ({"url": "ftp://x"}, "url must be http or https"),
        ({"url": "http://x", "size": 0}, "should be greater than or equal to 1"),
    ]:
        with pytest.raises(KubeError) as invalid:
            create("bad", spec)
        assert invalid.value.status == 422
        assert message in str(invalid.value)

    create("good", {"url": "https://example.com/a.mp4", "size": 3})
    with pytest.raises(KubeError) as immutable:
        kube.merge_patch(f"{path}/good", {"spec": {"size": 4}})
    assert "spec is immutable" in str(immutable.value)
    # Status goes through its subresource only.
    kube.merge_patch(f"{path}/good", {"status": {"phase": "Ignored"}})
    assert "status" not in kube.get(f"{path}/good")
    kube.merge_patch(f"{path}/good/status", {"status": {"phase": "Ready"}})
    assert kube.get(f"{path}/good")["status"] == {"phase": "Ready"}


def _create_unless_404(kube: Kube, path: str, body: dict[str, object]) -> dict[str, object]:
    try:
        return kube.create(path, body)
    except KubeError as error:
        if error.status == 404:
            return {}
        raise
