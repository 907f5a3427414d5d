"""The operator image as a pod on the node, installed from the chart (its ServiceAccount, RBAC
and Deployment), importing a video through a Job of the job image."""

from __future__ import annotations

import uuid

import psycopg
import pytest
import yaml
from conftest import Env, eventually, kubectl
from mediaimport_dev.images import OPERATOR_IMAGE
from mediaimport_dev.kube import Json
from mediaimport_dev.postgres import PostgresServer
from mediaimport_dev.release import pod_database_url
from psycopg.rows import dict_row
from support.chart import only, render

pytestmark = [pytest.mark.e2e, pytest.mark.slow]




def operator_pods(env: Env, release: str) -> list[Json]:
    pods: list[Json] = env.kube.get(
        f"/api/v1/namespaces/{env.namespace}/pods",
        labelSelector=f"app.kubernetes.io/instance={release},app.kubernetes.io/component=operator",
    )["items"]
    return pods


def test_the_operator_image_runs_in_the_cluster_from_the_chart(
    env: Env, pod_postgres: PostgresServer, origin_host: str
) -> None:
    operator_repository, _, operator_tag = OPERATOR_IMAGE.rpartition(":")
    job_repository, _, job_tag = env.job_image.rpartition(":")
    database_url = pod_database_url(pod_postgres.url, origin_host)
    env.kube.create(f"/api/v1/namespaces/{env.namespace}/secrets", {
        "metadata": {"name": "mediaimport-db"}, "stringData": {"url": database_url},
    })
    release = "incluster"
    docs = [d for d in render(sets=[
        f"watchNamespaces={{{env.namespace}}}", "crds.enabled=false", "api.enabled=false",
        "rbac.aggregateClusterRoles=false", "operator.replicaCount=1",
        f"operator.image.repository={operator_repository}", f"operator.image.tag={operator_tag}",
        "operator.image.pullPolicy=Never",
        f"job.image.repository={job_repository}", f"job.image.tag={job_tag}",
        "job.image.pullPolicy=Never",
        f"allowedNetworks={{{origin_host}/32}}", f"s3.bucket={env.bucket}",
        "s3.existingSecret=mediaimport-s3", "database.existingSecret=mediaimport-db",
    ], release=release, namespace=env.namespace) if d["kind"] != "Pod"]  # no helm test pod
    manifest = env.tmp / "chart.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    kubectl(env.plane, "apply", "-n", env.namespace, "-f", str(manifest))
    deployment = only(docs, "Deployment")
    name = deployment["metadata"]["name"]
    rollout = kubectl(env.plane, "rollout", "status", "-n", env.namespace,
                      f"deployment/{name}", "--timeout=120s", check=False)
    assert rollout.returncode == 0, rollout.stdout + rollout.stderr + kubectl(
        env.plane, "logs", "-n", env.namespace, f"deployment/{name}", check=False).stdout

    clip = env.origin.add(env.media.path("h264.mp4"), "in-cluster.mp4")
    mi = f"incluster-{uuid.uuid4().hex[:6]}"
    env.create(mi, url=env.url(f"/files/{clip}"), type="video")
    body = env.wait_phase(mi, "Ready", "Failed", timeout=120)
    assert body["status"]["phase"] == "Ready", body["status"]
    result = body["status"]["result"]
    head = env.s3.client().head_object(Bucket=env.bucket, Key=result["key"])
    assert head["ContentLength"] == env.media.path("h264.mp4").stat().st_size
    assert head["ContentType"] == "video/mp4"
    env.reasons(mi, "Imported")

    def row() -> dict[str, object] | None:
        with psycopg.connect(pod_postgres.url, row_factory=dict_row) as conn:
            try:
                return conn.execute("SELECT status, s3_key FROM media_assets WHERE id = %s",
                                    (body["status"]["assetId"],)).fetchone()
            except psycopg.errors.UndefinedTable:
                return None

    recorded = eventually(row, timeout=30, what="the media_assets row")
    assert recorded == {"status": "ready", "s3_key": result["key"]}

    (pod,) = operator_pods(env, release)
    assert pod["spec"]["serviceAccountName"] == only(docs, "ServiceAccount")["metadata"]["name"]
    assert pod["status"]["containerStatuses"][0]["image"].endswith(OPERATOR_IMAGE)
    log = kubectl(env.plane, "logs", "-n", env.namespace, pod["metadata"]["name"]).stdout
    assert "Forbidden" not in log, log
