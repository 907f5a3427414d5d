"""The API's admin port in the chart (issue 24 item 4): by default (``api.adminPort``
8001) the probes, the pod's Prometheus annotations, the monitors and a Service port of
its own use it, and the Ingress keeps to the API's port, so /readyz and /metrics are not
exposed through it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from mediaimport_api.ports import AdminPortMiddleware
from mediaimport_api.settings import Settings
from starlette.types import Message, Receive, Scope, Send
from support.chart import container, env, only, refused, render

INGRESS = ["api.ingress.enabled=true"]


def _api(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return only(docs, "Deployment", "mediaimport-api")


def test_by_default_probes_and_metrics_use_the_admin_port_and_the_ingress_does_not() -> None:
    docs = render(sets=INGRESS)
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


def _answers(admin_port: int | None, port: int, path: str) -> int:
    """The status the API's port routing gives ``path`` arriving on ``port`` (200: the
    request reached the application)."""
    sent: list[Message] = []

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
                    "query_string": b"", "headers": [], "server": ("10.0.0.1", port),
                    "scheme": "http", "http_version": "1.1", "root_path": ""}
    asyncio.run(AdminPortMiddleware(application, admin_port)(scope, receive, send))
    status: int = sent[0]["status"]
    return status


@pytest.mark.parametrize("values", [INGRESS, [*INGRESS, "api.port=9000",
                                               "api.adminPort=9100"]],
                         ids=["defaults", "other-ports"])
def test_the_port_the_ingress_reaches_does_not_serve_readiness_or_metrics(
    values: list[str],
) -> None:
    """Follow the Ingress's backend to the container port it lands on, and ask the API's
    own port routing, configured as the chart configures it, what that port answers."""
    docs = render(sets=values)
    ingress = only(docs, "Ingress", "mediaimport-api")
    (path,) = [path for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]]
    backend = path["backend"]["service"]
    service = only(docs, "Service", backend["name"])
    (service_port,) = [port for port in service["spec"]["ports"]
                       if port["name"] == backend["port"].get("name")
                       or port["port"] == backend["port"].get("number")]
    api = _api(docs)
    (target,) = [port for port in container(api)["ports"]
                 if port["name"] == service_port["targetPort"]
                 or port["containerPort"] == service_port["targetPort"]]
    settings = Settings(port=int(env(api)["MEDIAIMPORT_API_PORT"]),
                        admin_port=env(api).get("MEDIAIMPORT_API_ADMIN_PORT"))
    assert target["containerPort"] == settings.port
    assert settings.admin_port is not None
    for probe in ("/readyz", "/metrics"):
        assert _answers(settings.admin_port, settings.port, probe) == 404, probe
        assert _answers(settings.admin_port, settings.admin_port, probe) == 200, probe
    for reached in ("/healthz", "/api/v1/media", "/openapi.json"):
        assert _answers(settings.admin_port, settings.port, reached) == 200, reached
    # The kubelet and Prometheus are pointed at the admin port.
    c = container(api)
    admin = {port["name"]: port["containerPort"] for port in c["ports"]}[
        c["readinessProbe"]["httpGet"]["port"]]
    assert admin == settings.admin_port
    assert api["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(
        settings.admin_port)


def test_without_an_admin_port_everything_stays_on_the_api_port() -> None:
    docs = render(sets=["api.adminPort=null", "metrics.serviceMonitor.enabled=true",
                        "metrics.podMonitor.enabled=true"])
    api = _api(docs)
    c = container(api)
    assert [port["name"] for port in c["ports"]] == ["http"]
    assert "MEDIAIMPORT_API_ADMIN_PORT" not in env(api)
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert api["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "8000"
    assert [port["name"] for port in only(docs, "Service", "mediaimport-api")["spec"][
        "ports"]] == ["http"]
    for kind, endpoints in (("ServiceMonitor", "endpoints"),
                            ("PodMonitor", "podMetricsEndpoints")):
        assert only(docs, kind, "mediaimport-api")["spec"][endpoints][0]["port"] == "http"
    test_pod = {e["name"]: e["value"] for e in container(only(docs, "Pod"))["env"]}
    assert test_pod["API_READY_URL"] == "http://$(MEDIAIMPORT_API_SERVICE_HOST):80/readyz"
    assert "API_PUBLIC_READY_URL" not in test_pod


def test_an_admin_port_equal_to_the_api_port_or_out_of_range_is_refused() -> None:
    assert "must be another port" in refused(sets=["api.adminPort=8000"])
    assert "must be another port" in refused(sets=["api.port=8001"])
    assert "adminPort" in refused(sets=["api.adminPort=70000"])
