"""What the chart renders is what the operator reads: every MEDIAIMPORT_* variable of the
operator's Deployment is one of its settings and parses, and the import Job the operator
builds from those settings carries the chart's values."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from mediaimport_api.settings import Settings as ApiSettings
from mediaimport_operator.jobs import build_job
from mediaimport_operator.model import MediaImport
from mediaimport_operator.settings import Settings
from support.chart import CHART, ROOT, SCENARIOS, env, only, refused, render

PREFIX = "MEDIAIMPORT_"
CI = CHART / "ci"


def _mi() -> MediaImport:
    return MediaImport.from_body({
        "apiVersion": "mediaimport.dev/v1alpha1", "kind": "MediaImport",
        "metadata": {"name": "clip", "namespace": "media", "generation": 1,
                     "uid": "6f1c2a52-3b7e-4f0e-9d1a-2b8f5c7e9a01", "resourceVersion": "1"},
        "spec": {"url": "https://example.com/clip.mp4", "userId": "user-1"},
    })


ReadSettings = Callable[..., Settings]


@pytest.fixture
def chart_settings(monkeypatch: pytest.MonkeyPatch) -> ReadSettings:
    """A function: values files -> the operator's Settings read from the rendered env."""

    def read(values: list[Path], sets: list[str] | None = None) -> Settings:
        rendered = env(only(render(values, sets or []), "Deployment", "mediaimport-operator"))
        for name in [n for n in os.environ if n.startswith(PREFIX)]:
            monkeypatch.delenv(name)
        for name, value in rendered.items():
            if isinstance(value, str):
                monkeypatch.setenv(name, value)
            elif name == f"{PREFIX}DATABASE_URL":  # a secretKeyRef: any URL will do here
                monkeypatch.setenv(name, "postgresql://user@db/media")
        return Settings()

    return read


@pytest.mark.parametrize("values", [None, *SCENARIOS], ids=lambda v: v.name if v else "defaults")
def test_every_variable_the_chart_sets_is_a_setting(values: Path | None) -> None:
    rendered = env(only(render([values] if values else []), "Deployment",
                        "mediaimport-operator"))
    known = {f"{PREFIX}{name.upper()}" for name in Settings.model_fields}
    unknown = sorted(n for n in rendered if n.startswith(PREFIX) and n not in known)
    assert unknown == [], "the chart sets variables the operator does not read"


def test_the_import_job_carries_the_charts_values(chart_settings: ReadSettings) -> None:
    settings = chart_settings([CI / "production-values.yaml"])
    job = build_job(_mi(), settings)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert job["spec"]["backoffLimit"] == 5
    assert container["image"].startswith("registry.acme.example/mediaimport/mediaimport-job:")
    assert container["imagePullPolicy"] == "Always"
    assert pod["serviceAccountName"] == "mediaimport-job"
    assert pod["automountServiceAccountToken"] is False
    assert pod["nodeSelector"] == {"workload": "media"}
    assert pod["tolerations"] == [{"key": "media", "operator": "Exists", "effect": "NoSchedule"}]
    assert "nodeAffinity" in pod["affinity"]
    assert pod["priorityClassName"] == "batch-low"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "regcred-2"}]
    assert pod["terminationGracePeriodSeconds"] == 60
    assert job["spec"]["template"]["metadata"]["labels"]["cost-center"] == "media-imports"
    assert job["spec"]["template"]["metadata"]["annotations"] == {
        "karpenter.sh/do-not-disrupt": "true"}
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "512Mi", "ephemeral-storage": "30Gi"},
        "limits": {"memory": "2Gi", "ephemeral-storage": "40Gi"},  # limits.cpu: null
    }
    extra = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert extra["MEDIAIMPORT_DOWNLOAD_PROXY"] == "http://proxy.acme.example:3128"
    assert extra["AWS_REGION"] == "eu-west-1"
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert tmp["emptyDir"]["sizeLimit"] == "40Gi"


def test_irsa_jobs_get_no_secret(chart_settings: ReadSettings) -> None:
    settings = chart_settings([CI / "irsa-values.yaml"])
    (container,) = build_job(_mi(), settings)["spec"]["template"]["spec"]["containers"]
    assert "envFrom" not in container
    assert settings.job_service_account == "mediaimport-job"


def test_defaults_leave_the_operators_sizing_alone(chart_settings: ReadSettings) -> None:
    settings = chart_settings([])
    job = build_job(_mi(), settings)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    # Brokered by default: the operator signs with the Secret, the pod never holds it.
    assert "envFrom" not in container
    assert settings.storage_access == "brokered"
    assert settings.channel_keys_dir == "/etc/mediaimport/channel-keys"
    assert settings.channel_service == "mediaimport-operator-channel"
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "1Gi"}
    # The ephemeral-storage request is the /tmp size the operator derives from maxBytes.
    tmp = next(v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == "tmp")
    assert container["resources"]["requests"]["ephemeral-storage"] == tmp["emptyDir"]["sizeLimit"]


API_PREFIX = "MEDIAIMPORT_API_"


WITH_API = [s for s in SCENARIOS
            if (yaml.safe_load(s.read_text()).get("api") or {}).get("enabled", True)]


@pytest.mark.parametrize("values", [None, *WITH_API], ids=lambda v: v.name if v else "defaults")
def test_every_api_variable_the_chart_sets_is_an_api_setting(values: Path | None) -> None:
    rendered = env(only(render([values] if values else []), "Deployment", "mediaimport-api"))
    known = {f"{API_PREFIX}{name.upper()}" for name in ApiSettings.model_fields}
    unknown = sorted(n for n in rendered if n.startswith(API_PREFIX) and n not in known)
    assert unknown == [], "the chart sets variables the API does not read"


def test_the_api_reads_the_charts_values(monkeypatch: pytest.MonkeyPatch) -> None:
    rendered = env(only(render([CI / "s3-compatible-values.yaml"]), "Deployment",
                        "mediaimport-api"))
    for name in [n for n in os.environ if n.startswith(PREFIX)]:
        monkeypatch.delenv(name)
    secrets = {  # what the referenced Secrets would hold
        f"{API_PREFIX}WEBHOOK_SECRET": "whsec_" + "A" * 32,
        f"{API_PREFIX}CONTEXT_SIGNING_KEY": "k" * 32,
        f"{API_PREFIX}DATABASE_URL": "postgresql://user@db/media",
    }
    for name, value in rendered.items():
        monkeypatch.setenv(name, value if isinstance(value, str) else secrets.get(name, ""))
    settings = ApiSettings()
    assert settings.namespace == "mediaimport-system"
    assert settings.bucket == "media"
    assert settings.s3_public_endpoint == "https://s3.acme.example"
    assert str(settings.tokens_file) == "/etc/mediaimport/tokens/tokens"
    assert settings.port == 8000
    assert settings.admin_port == 8001  # /readyz and /metrics, never the Ingress's port
    assert settings.served == ("mediaimport-system",)
    assert settings.webhook_secret is not None
    assert settings.database_url == "postgresql://user@db/media"


def test_the_api_role_is_the_one_docs_api_md_lists() -> None:
    """docs/api.md states the API's rules (and its e2e test runs the API with exactly
    those); the chart grants the same."""
    text = (ROOT / "docs/api.md").read_text()
    block = text.split("<!-- api-rbac-rules", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    documented = yaml.safe_load(block)["rules"]
    assert only(render(), "Role", "mediaimport-api")["rules"] == documented


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["job.resources.limits.cpu=2"], "2"),  # --set makes an integer
        (["job.resources.limits.cpu=1.5"], "1.5"),  # and a float
        (["job.resources.limits.cpu=1500m"], "1500m"),
        (["job.resources.limits.cpu=3", "job.resources.requests.cpu=0.5"], "3"),
    ],
)
def test_quantities_as_numbers_or_strings_reach_the_job(
    chart_settings: ReadSettings, sets: list[str], expected: str
) -> None:
    settings = chart_settings([], sets)
    (container,) = build_job(_mi(), settings)["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["cpu"] == expected


def test_a_tmp_size_limit_the_operator_refuses_is_refused_by_helm() -> None:
    error = refused(sets=["job.tmpSizeLimit=64Mi"])
    assert "tmpSizeLimit" in error and "65Mi" in error
    render(sets=["job.tmpSizeLimit=65Mi"])  # the smallest the operator takes


def test_lease_renew_deadline_must_be_shorter_than_the_lease() -> None:
    error = refused(sets=["operator.lease.renewDeadlineSeconds=15",
                          "operator.lease.durationSeconds=15"])
    assert "renewDeadlineSeconds" in error and "durationSeconds" in error
    with pytest.raises(ValueError, match="lease_renew_deadline"):
        Settings(lease_duration=10, lease_renew_deadline=10)


def test_the_apis_namespace_keeps_the_key_layout_and_others_do_not(
    chart_settings: ReadSettings,
) -> None:
    settings = chart_settings([], ["api.namespace=media"])
    assert settings.served_namespaces == ["media"]
    alone = chart_settings([], ["api.enabled=false", "database.existingSecret="])
    assert alone.served_namespaces is None


def test_the_api_and_the_operator_agree_on_the_served_namespaces(
    chart_settings: ReadSettings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The namespaces whose imports the API answers are the ones the operator keeps in the
    plain key layout: one list, the API's namespace first."""
    sets = ["api.namespace=media", "api.servedNamespaces={batch,media}"]
    assert chart_settings([], sets).served_namespaces == ["media", "batch"]
    rendered = env(only(render([], sets), "Deployment", "mediaimport-api"))
    for name in [n for n in os.environ if n.startswith(PREFIX)]:
        monkeypatch.delenv(name)
    monkeypatch.setenv(f"{API_PREFIX}NAMESPACE", rendered[f"{API_PREFIX}NAMESPACE"])
    monkeypatch.setenv(f"{API_PREFIX}SERVED_NAMESPACES",
                       rendered[f"{API_PREFIX}SERVED_NAMESPACES"])
    assert ApiSettings().served == ("media", "batch")
    assert "servedNamespaces" in refused(sets=["api.servedNamespaces={Not_A_Namespace}"])
    with pytest.raises(ValueError, match="not a namespace name"):
        ApiSettings(served_namespaces="media,Not_A_Namespace")
