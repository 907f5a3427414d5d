"""The API's admin port in the chart (issue 24 item 4): with ``api.adminPort`` set, the
probes, the pod's Prometheus annotations and a Service port of its own use it, and the
Ingress keeps to the API's port, so /readyz and /metrics are not exposed through it."""

from __future__ import annotations

from typing import Any

from support.chart import container, env, only, refused, render

ADMIN = ["api.adminPort=8001", "api.ingress.enabled=true"]


def _api(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return only(docs, "Deployment", "mediaimport-api")


def test_with_an_admin_port_probes_and_metrics_use_it_and_the_ingress_does_not() -> None:
    docs = render(sets=ADMIN)
    api = _api(docs)
    c = container(api)
    assert c["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"},
                          {"name": "http-admin", "containerPort": 8001, "protocol": "TCP"}]
    assert env(api)["MEDIAIMPORT_API_PORT"] == "8000"
    assert env(api)["MEDIAIMPORT_API_ADMIN_PORT"] == "8001"
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-admin"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-admin"}
    annotations = api["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "8001"
    service = only(docs, "Service", "mediaimport-api")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
        {"name": "http-admin", "port": 8001, "targetPort": "http-admin", "protocol": "TCP"}]
    ingress = only(docs, "Ingress", "mediaimport-api")
    backends = [path["backend"]["service"]["port"] for rule in ingress["spec"]["rules"]
                for path in rule["http"]["paths"]]
    assert backends == [{"name": "http"}]


def test_without_an_admin_port_everything_stays_on_the_api_port() -> None:
    api = _api(render())
    c = container(api)
    assert [port["name"] for port in c["ports"]] == ["http"]
    assert "MEDIAIMPORT_API_ADMIN_PORT" not in env(api)
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert api["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "8000"


def test_an_admin_port_equal_to_the_api_port_or_out_of_range_is_refused() -> None:
    assert "must be another port" in refused(sets=["api.adminPort=8000"])
    assert "adminPort" in refused(sets=["api.adminPort=70000"])
