"""The chart installed with the real helm, as users install it: the operator (two replicas,
one leader) and the API as pods of the project's images on the real node; Postgres and S3
are services of this machine the pods reach. Imports through the API (SSE to Ready),
through kubectl and through a signed webhook; helm upgrade seen by the next Job; the
leader killed; helm test; helm uninstall leaves only the CRD and the MediaImports."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import subprocess
import time
import uuid
from typing import Any

import psycopg
import pytest
import requests
from conftest import Env, eventually, kubectl
from mediaimport_api.auth import hash_token, new_token
from mediaimport_dev.binaries import binary
from mediaimport_dev.images import OPERATOR_IMAGE
from mediaimport_dev.kube import Json
from mediaimport_dev.postgres import PostgresServer
from mediaimport_dev.release import pod_database_url
from psycopg.rows import dict_row
from support.chart import CHART

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

USER = "user-7"




def _helm(env: Env, *args: str, check: bool = True,
          timeout: float = 400) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(binary("helm")), "--kubeconfig", str(env.plane.kubeconfig),
                             "-n", env.namespace, *args],
                            capture_output=True, text=True, check=False, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)}: {result.stdout}{result.stderr}")
    return result


def _image_sets(prefix: str, name: str) -> list[str]:
    repository, _, tag = name.rpartition(":")
    return [f"{prefix}.repository={repository}", f"{prefix}.tag={tag}",
            f"{prefix}.pullPolicy=Never"]


def _signed(secret: str, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers, as Replicate sends them."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id, stamp = f"msg_{uuid.uuid4().hex}", str(int(time.time()))
    digest = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {"webhook-id": msg_id, "webhook-timestamp": stamp,
            "webhook-signature": f"v1,{base64.b64encode(digest).decode()}",
            "content-type": "application/json"}


def _sse_until_done(url: str, token: str, timeout: float = 180) -> list[Json]:
    messages: list[Json] = []
    with requests.get(url, headers={"Authorization": f"Bearer {token}"}, stream=True,
                      timeout=timeout) as response:
        assert response.status_code == 200, response.text
        for line in response.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                messages.append(json.loads(line[5:]))
                if messages[-1]["status"] in ("finished", "failed"):
                    break
    return messages


def _answers(url: str) -> bool:
    """Until kube-proxy has programmed a new Service, the node answers its cluster IP with
    'network unreachable' (its namespace has no default route): retried like a refusal."""
    try:
        return requests.get(url, timeout=3).ok
    except requests.ConnectionError:
        return False


def _pods(env: Env, release: str, component: str) -> list[Json]:
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component={component}"
    return env.kube.get(f"/api/v1/namespaces/{env.namespace}/pods",
                        labelSelector=selector)["items"]


def _holder(env: Env, lease: str) -> str | None:
    body = env.kube.get(f"/apis/coordination.k8s.io/v1/namespaces/{env.namespace}/leases/{lease}")
    return (body.get("spec") or {}).get("holderIdentity")


def _row(postgres: PostgresServer, asset_id: str) -> dict[str, Any] | None:
    with psycopg.connect(postgres.url, row_factory=dict_row, connect_timeout=3) as conn:
        try:
            return conn.execute("SELECT * FROM media_assets WHERE id = %s",
                                (asset_id,)).fetchone()
        except psycopg.errors.UndefinedTable:
            return None


def test_the_chart_installed_with_helm_runs_imports_end_to_end(
    env: Env, pod_postgres: PostgresServer, origin_host: str
) -> None:
    release = f"rel-{uuid.uuid4().hex[:5]}"
    ns = env.namespace
    token = new_token()
    webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    secrets_path = f"/api/v1/namespaces/{ns}/secrets"
    env.kube.create(secrets_path, {"metadata": {"name": "mediaimport-db"}, "stringData": {
        "url": pod_database_url(pod_postgres.url, origin_host)}})
    env.kube.create(secrets_path, {"metadata": {"name": "mediaimport-api"}, "stringData": {
        "tokens": f"{hash_token(token)} {USER}\n", "webhook-secret": webhook_secret,
        "context-signing-key": secrets.token_hex(32)}})
    s3 = env.s3.env()
    sets = [
        "crds.enabled=false",  # the shared CRD of the end-to-end session
        f"watchNamespaces={{{ns}}}", "operator.replicaCount=2", "api.replicaCount=1",
        *_image_sets("operator.image", OPERATOR_IMAGE), *_image_sets("api.image", OPERATOR_IMAGE),
        *_image_sets("job.image", env.job_image),
        "operator.lease.durationSeconds=6", "operator.lease.renewDeadlineSeconds=4",
        "operator.lease.retryPeriodSeconds=1",
        f"allowedNetworks={{{origin_host}/32}}", f"s3.bucket={env.bucket}",
        f"s3.endpoint={s3['AWS_ENDPOINT_URL_S3']}",
        f"s3.region={s3.get('AWS_REGION', 'us-east-1')}",
        "database.existingSecret=mediaimport-db",
        "api.tokens.existingSecret=mediaimport-api",
        "api.webhookSecret.existingSecret=mediaimport-api",
        "api.contextSigningKey.existingSecret=mediaimport-api",
        # A 2-core machine shared by many: requests that always fit.
        "operator.resources.requests.cpu=10m", "api.resources.requests.cpu=10m",
        "job.resources.requests.cpu=50m",
        # A quantity as a number (--set makes 2 an integer): the operator reads it as "2".
        "job.resources.limits.cpu=2",
    ]
    args = [arg for item in sets for arg in ("--set", item)]
    installed = _helm(env, "install", release, str(CHART), "--wait", "--timeout", "300s", *args)
    assert "STATUS: deployed" in installed.stdout
    name_prefix = f"{release}-mediaimport"

    # Two operator replicas, exactly one holding the Lease.
    operators = _pods(env, release, "operator")
    assert len(operators) == 2
    lease = f"{name_prefix}-operator"
    leader = eventually(lambda: _holder(env, lease), timeout=60, what="a leader")
    lease_labels = env.kube.get(
        f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{lease}")["metadata"]["labels"]
    assert lease_labels["app.kubernetes.io/instance"] == release  # uninstall removes it
    assert leader in {p["metadata"]["name"] for p in operators}
    for pod in operators:
        assert pod["status"]["containerStatuses"][0]["image"].endswith(OPERATOR_IMAGE)

    # The API from this machine, through its Service: its port (the one an Ingress
    # reaches) and the admin port of the probes and metrics (issue 24 item 4).
    service = env.kube.get(f"/api/v1/namespaces/{ns}/services/{name_prefix}-api")
    ports = {port["name"]: port["port"] for port in service["spec"]["ports"]}
    api = f"http://{service['spec']['clusterIP']}:{ports['http']}"
    admin = f"http://{service['spec']['clusterIP']}:{ports['http-admin']}"
    auth = {"Authorization": f"Bearer {token}"}
    eventually(lambda: _answers(f"{admin}/readyz"), timeout=120, what="API ready")
    assert "mediaimport_api_requests_total" in requests.get(f"{admin}/metrics", timeout=10).text
    for path in ("/readyz", "/metrics"):
        public = requests.get(f"{api}{path}", timeout=10)
        assert public.status_code == 404, (path, public.text)
    assert requests.get(f"{api}/healthz", timeout=10).status_code == 200

    # 1. An import through the API, followed by SSE to the end.
    clip = env.origin.add(env.media.path("h264.mp4"), "release-api.mp4")
    answer = requests.post(f"{api}/api/v1/media/import-from-url", headers=auth, timeout=30,
                           json={"url": env.url(f"/files/{clip}"), "type": "video"})
    assert answer.status_code == 202, answer.text
    asset_id, mi_name = answer.json()["id"], answer.json()["metadata"]["import_job_id"]
    messages = _sse_until_done(f"{api}/api/v1/imports/{mi_name}/events", token)
    assert messages[-1]["status"] == "finished", messages
    assert messages[-1]["phase"] == "Ready"
    body = env.get(mi_name)
    assert body is not None and body["status"]["phase"] == "Ready"
    result = body["status"]["result"]
    size = env.media.path("h264.mp4").stat().st_size
    head = env.s3.client().head_object(Bucket=env.bucket, Key=result["key"])
    assert (head["ContentLength"], head["ContentType"]) == (size, "video/mp4")
    thumb = env.s3.client().head_object(Bucket=env.bucket, Key=result["thumbnailKey"])
    assert thumb["ContentType"] == "image/jpeg"
    row = eventually(lambda: (r := _row(pod_postgres, asset_id)) and r["status"] == "ready" and r,
                     timeout=30, what="the ready row")
    assert (row["user_id"], row["s3_key"], row["file_size"]) == (USER, result["key"], size)
    media = requests.get(f"{api}/api/v1/media/{asset_id}", headers=auth, timeout=10).json()
    assert media["status"] == "ready"
    assert requests.get(media["url"], timeout=10).content == env.media.path("h264.mp4").read_bytes()

    # 2. An import through kubectl apply; `kubectl get mi -o wide`, column by column.
    kubectl_clip = env.origin.add(env.media.path("image.png"), "release-kubectl.png")
    manifest = env.tmp / "mi.yaml"
    manifest.write_text(json.dumps({
        "apiVersion": "mediaimport.dev/v1alpha1", "kind": "MediaImport",
        "metadata": {"name": "by-kubectl", "namespace": ns},
        "spec": {"url": env.url(f"/files/{kubectl_clip}"), "userId": USER}}))
    kubectl(env.plane, "apply", "-f", str(manifest))
    applied = env.wait_phase("by-kubectl", "Ready", "Failed", timeout=180)
    assert applied["status"]["phase"] == "Ready", applied["status"]
    table = kubectl(env.plane, "get", "mi", "by-kubectl", "-n", ns, "-o", "wide").stdout
    header, line = table.splitlines()
    assert header.split() == ["NAME", "TYPE", "PHASE", "PROGRESS", "SIZE", "DURATION", "AGE",
                              "REASON", "ASSET", "JOB"]
    cells = line.split()
    status = applied["status"]
    assert cells[:5] == ["by-kubectl", "image", "Ready", "100%",
                         str(env.media.path("image.png").stat().st_size)]
    assert cells[-3:] == ["Imported", status["assetId"], status["jobName"]]

    # 3. A signed webhook delivery (Replicate's prediction) to Ready.
    issued = requests.post(f"{api}/api/v1/webhooks/replicate/urls", headers=auth, timeout=10,
                           json={"metadata": {"project": "release"}})
    assert issued.status_code == 200, issued.text
    hook_clip = env.origin.add(env.media.path("h264.mp4"), "release-hook.mp4")
    prediction = json.dumps({
        "id": f"p{uuid.uuid4().hex[:10]}", "status": "succeeded", "version": "v1",
        "input": {"prompt": "a release"}, "output": env.url(f"/files/{hook_clip}"),
    }).encode()
    delivered = requests.post(issued.json()["url"], data=prediction, timeout=10,
                              headers=_signed(webhook_secret, prediction))
    assert delivered.status_code == 200, delivered.text
    (hooked,) = delivered.json()["imports"]
    done = env.wait_phase(hooked["import_job_id"], "Ready", "Failed", timeout=180)
    assert done["status"]["phase"] == "Ready", done["status"]
    assert done["spec"]["metadata"]["aiGenerated"] is True

    # 4. helm upgrade with a changed value and a new channel key: once the new replicas lead
    # (the old leader acts until it has stopped and released the Lease), the next import's
    # Job has it, and an import that ran through the upgrade, with a credential of the old
    # key, finishes through the new replicas' channel.
    keys_path = f"/api/v1/namespaces/{ns}/secrets/{name_prefix}-operator-channel"
    old_keys = env.kube.get(keys_path)["data"]
    assert list(old_keys) == ["1"]
    slow = env.origin.add(env.media.path("h264.mp4"), "release-slow.mp4")
    rate = max(1000, size // 40)  # some 40 s: it outlives the replicas it started with
    env.create("through-upgrade", url=env.url(f"/paced/{slow}?rate={rate}"), userId=USER)
    eventually(lambda: ((env.get("through-upgrade") or {}).get("status") or {}).get("progress"),
               timeout=120, what="the slow import's first progress")
    before = {p["metadata"]["name"] for p in _pods(env, release, "operator")}
    _helm(env, "upgrade", release, str(CHART), "--reuse-values", "--wait", "--timeout",
          "300s", "--set", "job.backoffLimit=5", "--set", "operator.channel.keyGeneration=2")
    new_keys = env.kube.get(keys_path)["data"]
    assert sorted(new_keys) == ["1", "2"] and new_keys["1"] == old_keys["1"]

    def new_leader() -> str | None:
        current = {p["metadata"]["name"] for p in _pods(env, release, "operator")}
        holder = _holder(env, lease)
        return holder if holder in current and not current & before else None

    eventually(new_leader, timeout=120, what="a leader among the upgraded replicas")
    after = env.origin.add(env.media.path("image.png"), "release-upgrade.png")
    env.create("after-upgrade", url=env.url(f"/files/{after}"), userId=USER)
    upgraded = env.wait_phase("after-upgrade", "Ready", "Failed", timeout=180)
    job = env.kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs/{upgraded['status']['jobName']}")
    assert job["spec"]["backoffLimit"] == 5
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["cpu"] == "2"
    through = env.wait_phase("through-upgrade", "Ready", "Failed", timeout=240)
    assert through["status"]["phase"] == "Ready", through["status"]
    assert through["status"]["attempts"] == 1

    # 5. The leader killed: the standby takes over and imports go on.
    first = _holder(env, lease)
    kubectl(env.plane, "delete", "pod", "-n", ns, str(first), "--grace-period=0", "--force")
    second = eventually(lambda: (h := _holder(env, lease)) not in (None, first) and h,
                        timeout=60, what="a new leader")
    assert second in {p["metadata"]["name"] for p in _pods(env, release, "operator")}
    late = env.origin.add(env.media.path("image.png"), "release-late.png")
    env.create("after-failover", url=env.url(f"/files/{late}"), userId=USER)
    assert env.wait_phase("after-failover", "Ready", "Failed", timeout=180)["status"][
        "phase"] == "Ready"

    # 6. helm test.
    tested = _helm(env, "test", release, "--timeout", "180s")
    assert "Phase:          Succeeded" in tested.stdout, tested.stdout

    # 7. helm uninstall leaves the MediaImports (and the CRD) and nothing else.
    _helm(env, "uninstall", release, "--wait", "--timeout", "120s")
    instance = f"app.kubernetes.io/instance={release}"
    for path in (f"/apis/apps/v1/namespaces/{ns}/deployments", f"/api/v1/namespaces/{ns}/services",
                 f"/api/v1/namespaces/{ns}/serviceaccounts",
                 f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
                 f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
                 f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
                 f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
                 f"/api/v1/namespaces/{ns}/configmaps", f"/api/v1/namespaces/{ns}/secrets",
                 f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
                 "/apis/rbac.authorization.k8s.io/v1/clusterroles",
                 "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"):
        assert env.kube.get(path, labelSelector=instance)["items"] == [], path
    eventually(lambda: not _pods(env, release, "operator") and not _pods(env, release, "api"),
               timeout=60, what="the release's pods to go")
    for name in (mi_name, "by-kubectl", hooked["import_job_id"], "after-upgrade",
                 "through-upgrade"):
        kept = env.get(name)
        assert kept is not None and kept["status"]["phase"] == "Ready"
