"""The operator's API client inside a pod: the service account token as the client's
in-cluster loader hands it over ("bearer <token>"), against the real API server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes.config.incluster_config as incluster
import pytest
from mediaimport_dev.controlplane import ControlPlane
from mediaimport_dev.kube import Kube as AdminKube
from mediaimport_operator import kube as operator_kube
from mediaimport_operator.kube import Kube, bearer_token


@pytest.mark.parametrize(
    "value", ["bearer abc.def", "Bearer abc.def", "BEARER  abc.def ", "abc.def"]
)
def test_bearer_token_whatever_the_case(value: str) -> None:
    assert bearer_token(value) == "abc.def"


@pytest.fixture
def in_cluster(
    control_plane: ControlPlane, kube: AdminKube, namespace: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """This process as a pod of ``namespace``'s service account ``operator``: the token
    and CA files where the in-cluster loader reads them, KUBERNETES_SERVICE_* set."""
    kube.create(f"/api/v1/namespaces/{namespace}/serviceaccounts",
                {"metadata": {"name": "operator"}})
    issued = kube.create(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/operator/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
         "spec": {"expirationSeconds": 600}},
    )
    token_file = tmp_path / "token"
    token_file.write_text(issued["status"]["token"])
    server = urlsplit(control_plane.server)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", str(server.hostname))
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(server.port))
    monkeypatch.setattr(incluster, "SERVICE_TOKEN_FILENAME", str(token_file))
    monkeypatch.setattr(incluster, "SERVICE_CERT_FILENAME", str(control_plane.pki / "ca.crt"))
    return f"system:serviceaccount:{namespace}:operator"


@pytest.mark.e2e
def test_in_cluster_token_is_sent_right_from_the_first_request(
    in_cluster: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a node up for less than a minute the monotonic clock is below the re-read
    interval, so the token from the loader itself is what the first requests carry."""
    monkeypatch.setattr(operator_kube.time, "monotonic", lambda: 5.0)

    async def who_am_i() -> str:
        client = Kube()
        try:
            review = await client.request(
                "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
            )
        finally:
            await client.close()
        return str(review["status"]["userInfo"]["username"])

    assert asyncio.run(who_am_i()) == in_cluster
