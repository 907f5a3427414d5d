"""The operator's API client inside a pod: the service account token as the client's
in-cluster loader hands it over ("bearer <token>"), against the real API server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes.config.incluster_config as incluster
import kubernetes.config.kube_config as kube_config
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


def test_a_kubeconfig_token_is_refreshed_once_a_minute_not_per_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kubeconfig user with a token comes with the client's refresh hook (exec plugins and
    OIDC tokens expire; the hook renews them five minutes before). Running it rebuilds the
    client's whole configuration (proxies from the environment included), so requests call
    it once a minute, not each time, and still carry the token."""
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', "
        "insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: the-token}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(config))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    now = [1000.0]
    monkeypatch.setattr(operator_kube.time, "monotonic", lambda: now[0])
    client = Kube()
    assert client._conn.refresh is not None
    renewals: list[float] = []
    set_config = kube_config.KubeConfigLoader._set_config

    def counted(loader: kube_config.KubeConfigLoader, configuration: object) -> None:
        renewals.append(now[0])
        set_config(loader, configuration)

    monkeypatch.setattr(kube_config.KubeConfigLoader, "_set_config", counted)
    for _ in range(250):  # two minutes of requests, two a second
        assert client._headers()["Authorization"] == "Bearer the-token"
        now[0] += 0.5
    assert renewals == [1060.5, 1121.0]
