"""The chart rendered by the real helm for each scenario under charts/mediaimport/ci/."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
import yaml
from support.chart import (
    CHART,
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    SCENARIOS,
    Obj,
    container,
    env,
    helm,
    kinds,
    notes,
    only,
    refused,
    render,
)

CI = CHART / "ci"
APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
RECOMMENDED = ("app.kubernetes.io/name", "app.kubernetes.io/instance",
               "app.kubernetes.io/component", "app.kubernetes.io/version",
               "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by")
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
}


def _pod_templates(doc: Obj) -> list[Obj]:
    if doc["kind"] == "Deployment":
        return [doc["spec"]["template"]]
    if doc["kind"] == "Pod":
        return [doc]
    return []


@pytest.mark.parametrize("values", [None, *SCENARIOS], ids=lambda v: v.name if v else "defaults")
def test_lint_strict(values: Path | None) -> None:
    extra = ["-f", str(values)] if values else []
    result = helm("lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION, *extra,
                  check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", [None, *SCENARIOS], ids=lambda v: v.name if v else "defaults")
def test_every_object_and_pod_template_has_the_recommended_labels(values: Path | None) -> None:
    docs = render([values] if values else [])
    assert docs
    for doc in docs:
        for labels in [doc["metadata"]["labels"],
                       *(t["metadata"]["labels"] for t in _pod_templates(doc))]:
            missing = [key for key in RECOMMENDED if key not in labels]
            assert not missing, f"{doc['kind']}/{doc['metadata']['name']} lacks {missing}"
            assert labels["app.kubernetes.io/instance"] == RELEASE
            assert labels["app.kubernetes.io/version"] == APP_VERSION


def test_default_kinds() -> None:
    assert kinds(render()) == sorted([
        "CustomResourceDefinition",
        "ServiceAccount", "ServiceAccount",
        # discovery, imports, view, edit
        "ClusterRole", "ClusterRole", "ClusterRole", "ClusterRole",
        "ClusterRoleBinding", "ClusterRoleBinding",
        "Role", "Role", "RoleBinding", "RoleBinding",  # the Lease; the API's imports
        # operator metrics and channel, API
        "Deployment", "Deployment", "Service", "Service", "Service",
        "Secret",  # the channel's keys
        "PodDisruptionBudget", "PodDisruptionBudget",
        "Pod",  # the helm test hook
        "Lease",  # the operator's: the chart's object, so that uninstall removes it
    ])


def test_the_lease_is_the_one_the_operator_takes() -> None:
    docs = render()
    lease = only(docs, "Lease")
    operator = env(only(docs, "Deployment", "mediaimport-operator"))
    assert lease["metadata"]["name"] == operator["MEDIAIMPORT_LEASE_NAME"]
    assert lease["metadata"]["namespace"] == NAMESPACE
    assert lease["spec"] == {}  # no holder: the first replica takes it
    role = only(docs, "Role", "mediaimport-operator-leader")
    named = [r for r in role["rules"] if r.get("resourceNames")]
    assert named == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                      "resourceNames": [lease["metadata"]["name"]], "verbs": ["get", "update"]},
                     {"apiGroups": [""], "resources": ["services"],
                      "resourceNames": ["mediaimport-operator-channel"], "verbs": ["get"]}]


def test_the_api_needs_the_database() -> None:
    error = refused(sets=["database.existingSecret="])
    assert "database.existingSecret is empty, but the API" in error
    assert "api.enabled=false" in error
    alone = render(sets=["database.existingSecret=", "api.enabled=false"])
    assert "MEDIAIMPORT_DATABASE_URL" not in env(only(alone, "Deployment",
                                                      "mediaimport-operator"))
    api = env(only(render(), "Deployment", "mediaimport-api"))
    assert "MEDIAIMPORT_API_DATABASE_URL" in api


def test_default_pods_are_restricted_and_from_the_one_image() -> None:
    docs = render()
    for component, command in (("operator", "mediaimport-operator"), ("api", "mediaimport-api")):
        deployment = only(docs, "Deployment", f"mediaimport-{component}")
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10001,
                                          "runAsGroup": 10001,
                                          "seccompProfile": {"type": "RuntimeDefault"}}
        assert pod["enableServiceLinks"] is False
        c = container(deployment)
        assert c["securityContext"] == RESTRICTED_CONTAINER
        assert c["image"] == f"ghcr.io/mediaimport/mediaimport-operator:{APP_VERSION}"
        assert c["command"] == [command]
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert deployment["spec"]["replicas"] == 2
        assert deployment["spec"]["selector"]["matchLabels"] == {
            "app.kubernetes.io/name": "mediaimport", "app.kubernetes.io/instance": RELEASE,
            "app.kubernetes.io/component": component}
        (spread,) = pod["topologySpreadConstraints"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert spread["labelSelector"] == {"matchLabels": selector}
        assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
        pdb = only(docs, "PodDisruptionBudget", f"mediaimport-{component}")
        assert pdb["spec"]["maxUnavailable"] == 1
        assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    operator_env = env(only(docs, "Deployment", "mediaimport-operator"))
    job_image = f"ghcr.io/mediaimport/mediaimport-job:{APP_VERSION}"
    assert operator_env["MEDIAIMPORT_JOB_IMAGE"] == job_image
    assert operator_env["MEDIAIMPORT_NAMESPACES"] == ""
    assert operator_env["MEDIAIMPORT_S3_SECRET_NAME"] == "mediaimport-s3"
    assert operator_env["MEDIAIMPORT_LEASE_NAME"] == "mediaimport-operator"


def test_operator_settings_of_the_import_jobs() -> None:
    docs = render([CI / "production-values.yaml"])
    e = env(only(docs, "Deployment", "mediaimport-operator"))
    assert e["MEDIAIMPORT_JOB_IMAGE"] == (
        "registry.acme.example/mediaimport/mediaimport-job:" + APP_VERSION
        + "@sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210")
    assert e["MEDIAIMPORT_JOB_IMAGE_PULL_POLICY"] == "Always"
    assert e["MEDIAIMPORT_JOB_SERVICE_ACCOUNT"] == "mediaimport-job"
    assert json.loads(e["MEDIAIMPORT_JOB_NODE_SELECTOR"]) == {"workload": "media"}
    assert json.loads(e["MEDIAIMPORT_JOB_TOLERATIONS"]) == [
        {"key": "media", "operator": "Exists", "effect": "NoSchedule"}]
    affinity = json.loads(e["MEDIAIMPORT_JOB_AFFINITY"])
    (preferred,) = affinity["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred["weight"] == 50
    assert e["MEDIAIMPORT_JOB_PRIORITY_CLASS_NAME"] == "batch-low"
    assert e["MEDIAIMPORT_JOB_IMAGE_PULL_SECRETS"] == "regcred,regcred-2"
    assert json.loads(e["MEDIAIMPORT_JOB_POD_LABELS"]) == {"cost-center": "media-imports"}
    assert json.loads(e["MEDIAIMPORT_JOB_POD_ANNOTATIONS"]) == {
        "karpenter.sh/do-not-disrupt": "true"}
    # limits.cpu: null in the values file arrives as an explicit null: no CPU limit.
    assert json.loads(e["MEDIAIMPORT_JOB_RESOURCES"]) == {
        "requests": {"cpu": "500m", "memory": "512Mi", "ephemeral-storage": "30Gi"},
        "limits": {"cpu": None, "memory": "2Gi", "ephemeral-storage": "40Gi"},
    }
    assert json.loads(e["MEDIAIMPORT_JOB_EXTRA_ENV"]) == {
        "MEDIAIMPORT_DOWNLOAD_PROXY": "http://proxy.acme.example:3128", "AWS_REGION": "eu-west-1"}
    assert e["MEDIAIMPORT_JOB_TERMINATION_GRACE_PERIOD_SECONDS"] == "60"
    assert e["MEDIAIMPORT_BACKOFF_LIMIT"] == "5"
    assert e["MEDIAIMPORT_TMP_SIZE_LIMIT"] == "40Gi"
    assert e["MEDIAIMPORT_MAX_BYTES"] == "10737418240"
    assert e["MEDIAIMPORT_ALLOWED_NETWORKS"] == "10.20.0.0/16,fd00:20::/64"


def test_null_cpu_limit_from_the_command_line() -> None:
    e = env(only(render(sets=["job.resources.limits.cpu=null"]), "Deployment",
                 "mediaimport-operator"))
    resources = json.loads(e["MEDIAIMPORT_JOB_RESOURCES"])
    assert resources["limits"] == {"cpu": None, "memory": "1Gi"}
    # No ephemeral-storage entry: the operator requests the /tmp size itself.
    assert resources["requests"] == {"cpu": "250m", "memory": "256Mi"}
    assert "MEDIAIMPORT_TMP_SIZE_LIMIT" not in e  # the operator sizes /tmp from maxBytes


def test_extras_of_the_operator_and_api_pods() -> None:
    docs = render([CI / "production-values.yaml"])
    operator = only(docs, "Deployment", "mediaimport-operator")
    pod = operator["spec"]["template"]
    assert pod["metadata"]["labels"]["cost-center"] == "media"
    assert pod["metadata"]["labels"]["team"] == "media"  # commonLabels
    assert pod["metadata"]["annotations"]["example.com/owner"] == "media"
    assert pod["spec"]["priorityClassName"] == "platform-critical"
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}, {"name": "global-regcred"}]
    c = container(operator)
    digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    assert c["image"] == f"ghcr.io/mediaimport/mediaimport-operator:{APP_VERSION}@{digest}"
    assert c["args"] == ["--log-level=DEBUG"]
    assert env(operator)["HTTPS_PROXY"] == "http://proxy.acme.example:3128"
    assert env(operator)["EXTRA_FROM_SECRET"] == {"secretKeyRef": {"name": "extra", "key": "value"}}
    assert {"name": "ca", "mountPath": "/etc/ssl/acme", "readOnly": True} in c["volumeMounts"]
    assert {"name": "ca", "configMap": {"name": "acme-ca"}} in pod["spec"]["volumes"]
    (spread,) = pod["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    assert spread["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    assert only(docs, "PodDisruptionBudget", "mediaimport-operator")["spec"] == {
        "selector": operator["spec"]["selector"], "minAvailable": 1,
        "unhealthyPodEvictionPolicy": "AlwaysAllow"}
    api = only(docs, "Deployment", "mediaimport-api")
    assert container(api)["image"] == "ghcr.io/mediaimport/mediaimport-operator:0.1.0-rc1"
    assert api["spec"]["replicas"] == 3
    assert container(api)["args"] == ["--database-pool-size=16"]


def test_api_settings_secrets_and_rbac() -> None:
    docs = render([CI / "s3-compatible-values.yaml"])
    api = only(docs, "Deployment", "mediaimport-api")
    e = env(api)
    assert e["MEDIAIMPORT_API_NAMESPACE"] == "mediaimport-system"
    assert e["MEDIAIMPORT_API_PORT"] == "8000"
    assert e["MEDIAIMPORT_API_BUCKET"] == "media"
    assert e["MEDIAIMPORT_API_S3_PUBLIC_ENDPOINT"] == "https://s3.acme.example"
    assert e["AWS_ENDPOINT_URL_S3"] == "http://minio.storage.svc:9000"
    assert e["AWS_REGION"] == "us-east-1"
    assert e["MEDIAIMPORT_API_DATABASE_URL"] == {"secretKeyRef": {"name": "mediaimport-db",
                                                                  "key": "dsn"}}
    assert e["MEDIAIMPORT_API_WEBHOOK_SECRET"] == {
        "secretKeyRef": {"name": "mediaimport-api", "key": "webhook-secret"}}
    assert e["MEDIAIMPORT_API_CONTEXT_SIGNING_KEY"] == {
        "secretKeyRef": {"name": "mediaimport-api", "key": "context-signing-key"}}
    # The tokens file: a directory mount (updated in place by the kubelet), not subPath.
    assert e["MEDIAIMPORT_API_TOKENS_FILE"] == "/etc/mediaimport/tokens/tokens"
    c = container(api)
    mount = next(m for m in c["volumeMounts"] if m["name"] == "tokens")
    assert mount == {"name": "tokens", "mountPath": "/etc/mediaimport/tokens", "readOnly": True}
    volume = next(v for v in api["spec"]["template"]["spec"]["volumes"] if v["name"] == "tokens")
    assert volume["secret"] == {"secretName": "mediaimport-api",
                                "items": [{"key": "tokens.txt", "path": "tokens"}]}
    assert c["envFrom"] == [{"secretRef": {"name": "minio-credentials"}}]
    role = only(docs, "Role", "mediaimport-api")
    assert role["metadata"]["namespace"] == "mediaimport-system"
    assert role["rules"] == [{"apiGroups": ["mediaimport.dev"], "resources": ["mediaimports"],
                              "verbs": ["create", "get", "list", "watch", "delete"]}]
    binding = only(docs, "RoleBinding", "mediaimport-api")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mediaimport-api",
                                    "namespace": "mediaimport-system"}]
    service = only(docs, "Service", "mediaimport-api")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
        {"name": "http-admin", "port": 8001, "targetPort": "http-admin", "protocol": "TCP"}]
    assert e["MEDIAIMPORT_API_ADMIN_PORT"] == "8001"
    operator_env = env(only(docs, "Deployment", "mediaimport-operator"))
    jobs = json.loads(operator_env["MEDIAIMPORT_JOB_EXTRA_ENV"])
    assert jobs == {"AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": "http://minio.storage.svc:9000"}


def test_unset_api_secrets_are_left_out() -> None:
    api = only(render(), "Deployment", "mediaimport-api")
    e = env(api)
    for name in ("MEDIAIMPORT_API_TOKENS_FILE", "MEDIAIMPORT_API_WEBHOOK_SECRET",
                 "MEDIAIMPORT_API_CONTEXT_SIGNING_KEY"):
        assert name not in e
    assert [m["name"] for m in container(api)["volumeMounts"]] == ["tmp"]


def test_irsa_needs_no_static_credentials_anywhere() -> None:
    docs = render([CI / "irsa-values.yaml"])
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        assert "envFrom" not in container(deployment), deployment["metadata"]["name"]
    e = env(only(docs, "Deployment", "mediaimport-operator"))
    assert e["MEDIAIMPORT_S3_SECRET_NAME"] == ""
    assert e["MEDIAIMPORT_JOB_SERVICE_ACCOUNT"] == "mediaimport-job"
    assert e["AWS_REGION"] == "eu-west-1"  # deleteObjectsOnDelete: the operator talks to S3
    annotations = only(docs, "ServiceAccount", "mediaimport-operator")["metadata"]["annotations"]
    assert annotations == {"eks.amazonaws.com/role-arn":
                           "arn:aws:iam::111122223333:role/mediaimport-operator"}
    assert only(docs, "ServiceAccount", "mediaimport-api")["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/mediaimport-api"}


def test_ingress() -> None:
    docs = render([CI / "production-values.yaml"])
    ingress = only(docs, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"secretName": "media-tls", "hosts": ["media.acme.example"]}]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "media.acme.example"
    assert rule["http"]["paths"][0]["backend"] == {
        "service": {"name": "mediaimport-api", "port": {"name": "http"}}}
    assert not [d for d in render() if d["kind"] == "Ingress"]


def test_monitors_and_network_policies() -> None:
    docs = render([CI / "production-values.yaml"])
    monitors = {(d["kind"], d["metadata"]["name"]): d for d in docs
                if d["kind"] in ("ServiceMonitor", "PodMonitor")}
    assert sorted(monitors) == [("PodMonitor", "mediaimport-api"),
                                ("PodMonitor", "mediaimport-operator"),
                                ("ServiceMonitor", "mediaimport-api"),
                                ("ServiceMonitor", "mediaimport-operator")]
    sm = monitors[("ServiceMonitor", "mediaimport-operator")]
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["endpoints"] == [{"port": "http-metrics", "path": "/metrics",
                                        "interval": "15s", "scrapeTimeout": "10s",
                                        "honorLabels": False}]
    metrics_service = only(docs, "Service", "mediaimport-operator-metrics")
    assert metrics_service["spec"]["ports"][0]["name"] == "http-metrics"
    service_labels = metrics_service["metadata"]["labels"]
    assert sm["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    pm = monitors[("PodMonitor", "mediaimport-api")]
    assert pm["metadata"]["namespace"] == "monitoring"
    assert pm["spec"]["namespaceSelector"] == {"matchNames": ["mediaimport-system"]}
    # The API's metrics are on its admin port, never on the port the Ingress reaches.
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] == "http-admin"
    assert monitors[("ServiceMonitor", "mediaimport-api")]["spec"]["endpoints"][0]["port"] == (
        "http-admin")
    assert monitors[("PodMonitor", "mediaimport-operator")]["spec"]["podMetricsEndpoints"][0][
        "port"] == "http"
    api_service = only(docs, "Service", "mediaimport-api")
    assert [port["name"] for port in api_service["spec"]["ports"]] == ["http", "http-admin"]
    policies = {d["metadata"]["name"]: d for d in docs if d["kind"] == "NetworkPolicy"}
    api = policies["mediaimport-api"]["spec"]
    assert api["policyTypes"] == ["Ingress"]
    # The API's port to its clients (the Ingress controller), the admin port to Prometheus.
    users, scrapers = api["ingress"]
    assert users["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert [p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            for p in users["from"]] == ["ingress-nginx"]
    assert scrapers["ports"] == [{"port": "http-admin", "protocol": "TCP"}]
    assert [p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            for p in scrapers["from"]] == ["monitoring"]
    rule, channel = policies["mediaimport-operator"]["spec"]["ingress"]
    assert [p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            for p in rule["from"]] == ["monitoring"]
    # The channel: import pods of any namespace, and no one else.
    assert channel == {
        "ports": [{"port": "channel", "protocol": "TCP"}],
        "from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {
            "app.kubernetes.io/component": "import-job",
            "app.kubernetes.io/managed-by": "mediaimport-operator"}}}],
    }


def test_aggregated_roles_for_namespace_users() -> None:
    docs = render()
    view = only(docs, "ClusterRole", "mediaimport-view")
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert view["rules"][0] == {"apiGroups": ["mediaimport.dev"], "resources": ["mediaimports"],
                                "verbs": ["get", "list", "watch"]}
    # Creating imports is writing into the API users' media (spec.userId): not something
    # every namespace editor gets. The role exists to be bound where a platform team wants.
    edit = only(docs, "ClusterRole", "mediaimport-edit")
    labels = edit["metadata"]["labels"]
    assert "rbac.authorization.k8s.io/aggregate-to-edit" not in labels
    assert "rbac.authorization.k8s.io/aggregate-to-admin" not in labels
    assert {"create", "delete", "get", "list", "watch"} <= set(edit["rules"][0]["verbs"])
    opted = only(render(sets=["rbac.aggregateToEdit=true"]), "ClusterRole", "mediaimport-edit")
    assert opted["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert opted["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    minimal = render([CI / "minimal-values.yaml"])
    assert not [d for d in minimal if d["metadata"]["name"] in ("mediaimport-view",
                                                                  "mediaimport-edit")]


def test_minimal_scenario_is_the_operator_alone() -> None:
    docs = render([CI / "minimal-values.yaml"])
    assert kinds(docs) == sorted([
        "ServiceAccount", "ClusterRole", "ClusterRole", "ClusterRoleBinding",
        "ClusterRoleBinding", "Role", "RoleBinding", "Deployment", "Service", "Service",
        "Secret", "Pod", "Lease"])
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    assert "topologySpreadConstraints" not in pod
    test_pod = only(docs, "Pod")
    assert [e["name"] for e in container(test_pod)["env"]] == ["OPERATOR_METRICS_URL"]


def test_helm_test_hook_checks_both_components_through_their_services() -> None:
    pod = only(render(), "Pod")
    assert pod["metadata"]["annotations"] == {
        "helm.sh/hook": "test",
        "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded"}
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert container(pod)["securityContext"] == RESTRICTED_CONTAINER
    urls = {e["name"]: e["value"] for e in container(pod)["env"]}
    assert urls == {
        "OPERATOR_METRICS_URL": "http://$(MEDIAIMPORT_OPERATOR_METRICS_SERVICE_HOST):8080/metrics",
        "API_READY_URL": "http://$(MEDIAIMPORT_API_SERVICE_HOST):8001/readyz",
        # The Service port an Ingress reaches must not answer readiness.
        "API_PUBLIC_READY_URL": "http://$(MEDIAIMPORT_API_SERVICE_HOST):80/readyz",
    }


def test_crd_is_the_source_file_with_labels_and_the_keep_policy() -> None:
    source = yaml.safe_load((CHART / "files/mediaimports.mediaimport.dev.yaml").read_text())
    crd = only(render(), "CustomResourceDefinition")
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert crd["metadata"]["labels"]["app.kubernetes.io/component"] == "crd"
    assert crd["spec"] == source["spec"]
    unkept = only(render(sets=["crds.keep=false"]), "CustomResourceDefinition")
    assert "annotations" not in unkept["metadata"]
    assert not [d for d in render(sets=["crds.enabled=false"])
                if d["kind"] == "CustomResourceDefinition"]
    assert not (CHART / "crds").exists(), "helm never upgrades crds/: the CRD is a template"


def test_namespaced_scenario() -> None:
    docs = render([CI / "namespaced-values.yaml"])
    bindings = [d for d in docs if d["kind"] == "RoleBinding"
                and d["metadata"]["name"] == "mediaimport-operator"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["media", "media-staging"]
    assert not [d for d in docs if d["kind"] == "ClusterRoleBinding"
                and d["metadata"]["name"] == "mediaimport-operator"]
    assert env(only(docs, "Deployment", "mediaimport-operator"))["MEDIAIMPORT_NAMESPACES"] == (
        "media,media-staging")
    assert only(docs, "Role", "mediaimport-api")["metadata"]["namespace"] == "media"
    assert env(only(docs, "Deployment", "mediaimport-api"))["MEDIAIMPORT_API_NAMESPACE"] == "media"


def test_api_namespace_outside_the_watched_ones_is_refused() -> None:
    error = refused(sets=["watchNamespaces={media}", "api.namespace=other"])
    assert 'api.namespace "other" is not among watchNamespaces' in error


@pytest.mark.parametrize(("setting", "field"), [
    ("replicaCunt=2", "replicaCunt"),
    ("operator.replicaCunt=2", "replicaCunt"),
    ("job.resources.limit.cpu=1", "limit"),
    ("allowedNetworks={10.0.0.0/33}", "allowedNetworks"),
    ("allowedNetworks={example.com}", "allowedNetworks"),
    ("job.resources.requests.memory=lots", "memory"),
    ("job.tmpSizeLimit=20GB", "tmpSizeLimit"),
    ("job.terminationGracePeriodSeconds=5", "terminationGracePeriodSeconds"),
    ("operator.image.digest=sha256:abc", "digest"),
    ("api.podDisruptionBudget.minAvailable=1,api.podDisruptionBudget.maxUnavailable=1",
     "podDisruptionBudget"),
    ("s3.endpoint=minio:9000", "endpoint"),
    ("job.backoffLimit=-1", "backoffLimit"),
    ("metrics.serviceMonitor.interval=often", "interval"),
])
def test_schema_refuses(setting: str, field: str) -> None:
    assert field in refused(sets=[setting])


def test_global_is_accepted_and_the_chart_works_as_a_dependency(tmp_path: Path) -> None:
    render(sets=["global.anything.nested=1", "global.imageRegistry=r.example"])
    parent = tmp_path / "platform"
    (parent / "charts").mkdir(parents=True)
    shutil.copytree(CHART, parent / "charts/mediaimport")
    (parent / "Chart.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v2", "name": "platform", "version": "1.0.0",
        "dependencies": [{"name": "mediaimport", "version": "0.1.0"}]}))
    (parent / "values.yaml").write_text(yaml.safe_dump({
        "global": {"imagePullSecrets": [{"name": "platform-regcred"}], "environment": "prod"},
        "mediaimport": {"s3": {"bucket": "platform-media"}}}))
    out = helm("template", "platform", str(parent), "--kube-version", KUBE_VERSION).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    operator = only(docs, "Deployment", "platform-mediaimport-operator")
    pod = operator["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "platform-regcred"}]
    assert env(operator)["MEDIAIMPORT_BUCKET"] == "platform-media"


def test_default_kubernetes_version_of_the_built_helm() -> None:
    """Without --kube-version helm assumes its compiled-in default; it must satisfy the
    chart's kubeVersion (a helm built without the version ldflags says v1.20.0)."""
    result = helm("template", RELEASE, str(CHART), check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("values", "expected", "absent"), [
    (None, ["create secret generic mediaimport-s3", "kubectl -n mediaimport-system port-forward "
            "svc/mediaimport-api 8000:80", "API=http://127.0.0.1:8000",
            "has NO tokens", "/api/v1/media/import-from-url", "kind: MediaImport",
            "create secret generic mediaimport-db \\\n       --from-literal=url=postgresql://"],
     ["eks.amazonaws.com/role-arn=arn"]),
    (CI / "irsa-values.yaml", ["No static credentials", "annotate serviceaccount mediaimport-job",
                               "eks.amazonaws.com/role-arn=arn:aws:iam::<account>",
                               "Secret mediaimport-db", "/api/v1/imports/"],
     ["create secret generic mediaimport-s3", "has NO tokens"]),
    (CI / "production-values.yaml", ["API=https://media.acme.example"], ["port-forward"]),
])
def test_notes(values: Path | None, expected: list[str], absent: list[str]) -> None:
    """Next steps for both credential styles, the API's URL, a first import."""
    text = notes([values] if values else [])
    for part in expected:
        assert part in text, part
    for part in absent:
        assert part not in text, part


def test_the_channel_is_served_keyed_and_reached_by_cluster_ip() -> None:
    docs = render()
    service = only(docs, "Service", "mediaimport-operator-channel")
    assert service["spec"]["ports"] == [
        {"name": "channel", "port": 8081, "targetPort": "channel", "protocol": "TCP"}]
    deployment = only(docs, "Deployment", "mediaimport-operator")
    operator = env(deployment)
    assert operator["MEDIAIMPORT_CHANNEL_SERVICE"] == "mediaimport-operator-channel"
    assert operator["MEDIAIMPORT_STORAGE_ACCESS"] == "brokered"
    assert operator["MEDIAIMPORT_CHANNEL_PORT"] == "8081"
    ports = container(deployment)["ports"]
    assert {"name": "channel", "containerPort": 8081, "protocol": "TCP"} in ports
    keys_dir = operator["MEDIAIMPORT_CHANNEL_KEYS_DIR"]
    mount = next(m for m in container(deployment)["volumeMounts"] if m["mountPath"] == keys_dir)
    assert mount["readOnly"] is True
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == mount["name"])
    secret = only(docs, "Secret", volume["secret"]["secretName"])
    (key_id, value), = secret["data"].items()
    assert key_id == "1" and len(base64.b64decode(value)) == 64
    # Another install renders another key: nobody shares one.
    assert only(render(), "Secret", secret["metadata"]["name"])["data"]["1"] != value


def test_a_new_key_generation_signs_and_your_own_secret_replaces_the_charts() -> None:
    (key_id,) = only(render(sets=["operator.channel.keyGeneration=2"]), "Secret",
                     "mediaimport-operator-channel")["data"]
    assert key_id == "2"
    own = render(sets=["operator.channel.existingSecret=my-keys"])
    assert not [d for d in own if d["kind"] == "Secret"]
    volumes = only(own, "Deployment", "mediaimport-operator")["spec"]["template"]["spec"][
        "volumes"]
    assert {"name": "channel-keys", "secret": {"secretName": "my-keys"}} in volumes


def test_the_operator_reads_the_one_s3_secret_name_and_only_that() -> None:
    def secret_rules(sets: list[str]) -> list[dict[str, object]]:
        role = only(render(sets=sets), "ClusterRole", "mediaimport-operator")
        return [r for r in role["rules"] if "secrets" in r["resources"]]

    assert secret_rules([]) == [{"apiGroups": [""], "resources": ["secrets"],
                                 "resourceNames": ["mediaimport-s3"], "verbs": ["get"]}]
    # It checks every result's objects in credentials mode too.
    assert secret_rules(["job.storageAccess=credentials"]) == secret_rules([])
    assert secret_rules(["s3.existingSecret="]) == []  # the operator's own identity
    refused(sets=["job.storageAccess=keys"])
