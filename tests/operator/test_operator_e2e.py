"""The operator end to end: real API server and controllers, a real node running the job
image, Postgres, S3."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import Env, eventually, kubectl, new_name
from operator_support import stop_postgres_fast
from support.chart import render

pytestmark = pytest.mark.e2e


def _probe(path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        check=True, capture_output=True, timeout=60,
    ).stdout
    return json.loads(out)


def _sample(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def _condition(body: dict, type_: str = "Succeeded") -> dict:
    return next(c for c in body["status"]["conditions"] if c["type"] == type_)


def test_video_import_becomes_ready_and_everything_agrees(env: Env) -> None:
    operator = env.start_operator()
    sample = env.media.path("h264.mp4")
    env.origin.add(sample, "clip.mp4")
    name = new_name("video")
    created = env.create(name, url=env.url("/files/clip.mp4"), type="video",
                         metadata={"prompt": "a test pattern", "aiGenerated": True})
    body = env.wait_phase(name, "Ready", "Failed")
    status = body["status"]
    assert status["phase"] == "Ready", status
    uid = created["metadata"]["uid"]
    assert status["assetId"] == uid
    assert status["attempts"] == 1
    assert status["startTime"] and status["completionTime"]
    assert status["observedGeneration"] == 1
    cond = _condition(body)
    assert (cond["status"], cond["reason"]) == ("True", "Imported")
    assert _condition(body, "Recorded")["status"] == "True"
    result = status["result"]
    data = sample.read_bytes()
    assert result["size"] == len(data)
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    assert result["bucket"] == env.bucket
    assert result["key"] == f"media/user-1/{uid}/clip.mp4"
    assert result["thumbnailKey"] == f"media/user-1/{uid}/thumbnail.jpg"
    probe = _probe(sample)
    video = next(s for s in probe["streams"] if s["codec_type"] == "video")
    media = result["media"]
    assert media["width"] == int(video["width"]) and media["height"] == int(video["height"])
    assert media["codec"] == video["codec_name"]
    assert media["duration"] == pytest.approx(float(probe["format"]["duration"]), abs=0.05)
    assert media["format"] == "mp4"

    # S3: both objects, the file byte for byte.
    s3 = env.s3.client()
    stored = s3.get_object(Bucket=env.bucket, Key=result["key"])
    assert stored["Body"].read() == data
    assert stored["ContentType"] == "video/mp4"
    thumb = s3.head_object(Bucket=env.bucket, Key=result["thumbnailKey"])
    assert thumb["ContentType"] == "image/jpeg"

    # Postgres: the row agrees.
    row = eventually(lambda: (r := env.row(uid)) and r["status"] == "ready" and r,
                     timeout=20, what="the ready row")
    assert row["user_id"] == "user-1"
    assert row["file_type"] == "video"
    assert row["s3_key"] == result["key"]
    assert row["thumbnail_s3_key"] == result["thumbnailKey"]
    assert row["file_size"] == len(data)
    assert row["checksum"] == result["sha256"]
    meta = row["file_metadata"]
    assert meta["duration"] == pytest.approx(media["duration"])
    assert (meta["width"], meta["height"]) == (media["width"], media["height"])
    assert meta["codec"] == media["codec"] and meta["format"] == "mp4"
    assert meta["frame_rate"] == pytest.approx(media["frameRate"])
    assert meta["prompt"] == "a test pattern" and meta["aiGenerated"] is True
    assert meta["source_url"] == env.url("/files/clip.mp4")
    assert meta["imported_at"] == status["completionTime"]

    # Events on the transitions.
    env.reasons(name, "JobCreated", "Imported")

    # One Job, ours, as specified.
    (job,) = env.jobs(**{"mediaimport.dev/import-name": name})
    assert job["metadata"]["name"] == status["jobName"]
    assert job["metadata"]["ownerReferences"][0]["uid"] == uid

    # kubectl shows the columns.
    table = kubectl(env.plane, "get", "mi", "-n", env.namespace, name).stdout
    header, line = table.splitlines()
    assert header.split() == ["NAME", "TYPE", "PHASE", "PROGRESS", "SIZE", "DURATION", "AGE"]
    assert line.split()[:5] == [name, "video", "Ready", "100%", str(len(data))]
    # Brokered: the pod held no S3 credential, only its import's channel.
    (pod,) = [p for p in env.pods() if p["metadata"]["labels"].get(
        "mediaimport.dev/import-uid") == uid]
    (container,) = pod["spec"]["containers"]
    assert "envFrom" not in container
    names = {item["name"] for item in container["env"]}
    assert not {n for n in names if n.startswith("AWS_")}
    assert {"MEDIAIMPORT_CHANNEL_URL", "MEDIAIMPORT_CHANNEL_TOKEN"} <= names
    assert status["progress"]["percent"] == 100
    wide = kubectl(env.plane, "get", "media", "-n", env.namespace, name, "-o", "wide").stdout
    header, line = wide.splitlines()
    assert header.split()[-3:] == ["REASON", "ASSET", "JOB"]
    assert line.split()[-3:] == ["Imported", uid, status["jobName"]]

    # Metrics: one ready import, timed, none left in flight.
    metrics = operator.metrics()
    assert metrics[_sample("mediaimport_imports_total", outcome="ready", reason="Imported")] == 1
    assert metrics[_sample("mediaimport_import_duration_seconds_count", outcome="ready")] == 1
    assert metrics[_sample("mediaimport_import_duration_seconds_count", outcome="failed")] == 0
    assert metrics[_sample("mediaimport_imports_in_flight")] == 0
    assert metrics[_sample("mediaimport_jobs_created_total")] == 1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"userId": "u"}, "spec.url: Required value"),
        ({"userId": "u", "url": "ftp://example.com/a.mp4"}, "spec.url"),
        ({"userId": "u", "url": "https://user:pw@x.example/a.mp4"},
         "url must not carry credentials"),
        ({"userId": "u", "url": "https://x.example/a.mp4", "sha256": "abc"}, "spec.sha256"),
        ({"url": "https://x.example/a.mp4"}, "spec.userId: Required value"),
        ({"userId": "../etc", "url": "https://x.example/a.mp4"}, "spec.userId"),
        ({"userId": "u", "url": "https://x.example/a.mp4", "type": "text"}, "spec.type"),
        ({"userId": "u", "url": "https://x.example/a.mp4", "thumbnail": {"width": 99999}},
         "spec.thumbnail.width"),
        ({"userId": "u", "url": "https://x.example/a.mp4", "thumbnail": {"at": -1}},
         "spec.thumbnail.at"),
        ({"userId": "u", "url": "https://x.example/a.mp4", "assetId": "../x"}, "spec.assetId"),
        ({"userId": "u", "url": "https://x.example/a.mp4", "name": "a/b"}, "spec.name"),
        ({"userId": "u", "url": "https://x.example/a.mp4", "extra": 1}, "unknown field"),
    ],
)
def test_invalid_mediaimports_are_refused(env: Env, spec: dict, message: str) -> None:
    manifest = {
        "apiVersion": "mediaimport.dev/v1alpha1", "kind": "MediaImport",
        "metadata": {"name": new_name("bad"), "namespace": env.namespace}, "spec": spec,
    }
    path = env.tmp / "bad.json"
    path.write_text(json.dumps(manifest))
    result = kubectl(env.plane, "apply", "--validate=strict", "-f", str(path), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_spec_is_immutable(env: Env) -> None:
    name = new_name("immutable")
    env.create(name, url="https://x.example/a.mp4")
    result = kubectl(env.plane, "patch", "mi", name, "-n", env.namespace, "--type=merge",
                     "-p", '{"spec": {"url": "https://x.example/b.mp4"}}', check=False)
    assert result.returncode != 0
    assert "spec is immutable" in result.stderr
    missing = kubectl(env.plane, "explain", "mediaimport.spec.url").stdout
    assert "http or https URL" in missing


def _ready(env: Env, mi_name: str, /, **spec) -> dict:
    env.create(mi_name, **spec)
    body = env.wait_phase(mi_name, "Ready", "Failed")
    assert body["status"]["phase"] == "Ready", json.dumps(body["status"], indent=1)
    return body


def test_image_audio_redirect_and_checksum(env: Env) -> None:
    env.start_operator()
    png = env.origin.add(env.media.path("image.png"))
    mp3 = env.origin.add(env.media.path("audio.mp3"))
    clip = env.origin.add(env.media.path("h264_faststart.mp4"), "redirected.mp4")
    image = _ready(env, new_name("image"), url=env.url(f"/files/{png}"))
    assert image["status"]["type"] == "image"
    assert image["status"]["result"]["media"]["width"] == 200
    audio = _ready(env, new_name("audio"), url=env.url(f"/files/{mp3}"), type="audio")
    assert audio["status"]["type"] == "audio"
    assert audio["status"]["result"]["media"]["duration"] == pytest.approx(1.0, abs=0.2)
    target = env.url(f"/files/{clip}")
    redirected = _ready(env, new_name("redirect"), url=env.url(f"/redirect?to={target}"),
                        name="kept-name.mp4")
    assert redirected["status"]["result"]["key"].endswith("/kept-name.mp4")
    digest = hashlib.sha256(env.media.path("image.png").read_bytes()).hexdigest()
    checked = _ready(env, new_name("checksum"), url=env.url(f"/files/{png}"),
                     sha256=digest.upper())
    assert checked["status"]["result"]["sha256"] == digest
    wrong = new_name("wrongsum")
    env.create(wrong, url=env.url(f"/files/{png}"), sha256="0" * 64)
    body = env.wait_phase(wrong, "Failed", "Ready")
    assert _condition(body)["reason"] == "ChecksumMismatch"
    assert body["status"]["attempts"] == 1
    row = eventually(lambda: (r := env.row(body["status"]["assetId"])) and
                     r["status"] == "failed" and r, timeout=20, what="failed row")
    assert row["file_metadata"]["error"]["reason"] == "ChecksumMismatch"


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/status/404", "SourceNotFound"),
        ("/files/page.html", "NotMedia"),
        ("/files/big.mp4", "TooLarge"),
    ],
)
def test_permanent_failures_fail_after_one_attempt(env: Env, path: str, reason: str) -> None:
    operator = env.start_operator(MEDIAIMPORT_MAX_BYTES="20000")
    env.origin.add(env.media.path("page.html"))
    env.origin.add(env.media.path("h264.mp4"), "big.mp4")
    name = new_name("perm")
    env.create(name, url=env.url(path))
    body = env.wait_phase(name, "Failed", "Ready")
    cond = _condition(body)
    assert (cond["status"], cond["reason"]) == ("False", reason)
    assert cond["message"].endswith("The import failed after 1 attempt.")
    assert body["status"]["attempts"] == 1
    (job,) = env.jobs(**{"mediaimport.dev/import-name": name})
    assert job["status"].get("failed") == 1
    env.reasons(name, reason)
    assert any(e["reason"] == reason and e["type"] == "Warning" for e in env.events(name))
    row = eventually(lambda: (r := env.row(body["status"]["assetId"])) and
                     r["status"] == "failed" and r, timeout=20, what="failed row")
    assert row["file_metadata"]["error"]["reason"] == reason
    assert env.s3.client().list_objects_v2(Bucket=env.bucket).get("KeyCount", 0) == 0
    metrics = operator.metrics()
    assert metrics[_sample("mediaimport_imports_total", outcome="failed", reason=reason)] == 1
    assert metrics[_sample("mediaimport_imports_total", outcome="ready", reason="Imported")] == 0
    assert metrics[_sample("mediaimport_import_duration_seconds_count", outcome="failed")] == 1


def test_transient_failures_are_retried_by_the_job(env: Env) -> None:
    # The job's own download retries are off, so each 500 costs one pod.
    env.start_operator(MEDIAIMPORT_JOB_EXTRA_ENV='{"MEDIAIMPORT_RETRIES": "0"}')
    clip = env.origin.add(env.media.path("h264.mp4"), f"flaky-{new_name()}.mp4")
    name = new_name("flaky")
    env.create(name, url=env.url(f"/flaky/{clip}?code=500&fail=2"))
    body = env.wait_phase(name, "Ready", "Failed", timeout=150)
    assert body["status"]["phase"] == "Ready"
    assert body["status"]["attempts"] == 3
    reasons = env.reasons(name, "AttemptFailed", "Imported")
    assert reasons.count("AttemptFailed") == 2


def test_deadline_exceeded_stops_the_process(env: Env) -> None:
    env.start_operator(MEDIAIMPORT_DEADLINE_VIDEO="4",
                       MEDIAIMPORT_JOB_EXTRA_ENV='{"MEDIAIMPORT_RETRIES": "0"}')
    name = new_name("slow")
    marker = f"drip-{name}"
    env.create(name, url=env.url(f"/drip?delay=1&size=100000&m={marker}"), type="video")
    body = env.wait_phase(name, "Failed", "Ready", timeout=90)
    cond = _condition(body)
    assert cond["reason"] == "DeadlineExceeded"
    assert "deadline of 4 s" in cond["message"]
    assert not _processes_with(marker)


def _processes_with(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_operator_killed_mid_import_converges_with_one_job(env: Env) -> None:
    first = env.start_operator()
    clip = env.origin.add(env.media.path("h264.mp4"), "kill.mp4")
    names = [new_name("kill") for _ in range(3)]
    for name in names:
        env.create(name, url=env.url(f"/files/{clip}"))
    # Die at whatever line it is on: as soon as the first Job exists.
    eventually(lambda: env.jobs(**{"app.kubernetes.io/managed-by": "mediaimport-operator"}),
               timeout=30, what="a Job")
    first.kill()
    env.start_operator()
    for name in names:
        body = env.wait_phase(name, "Ready", "Failed", timeout=120)
        assert body["status"]["phase"] == "Ready", json.dumps(
            [body["status"]["conditions"], [op.log()[-3000:] for op in env.operators]])
        jobs = env.jobs(**{"mediaimport.dev/import-name": name})
        assert len(jobs) == 1
        assert eventually(lambda b=body: (r := env.row(b["status"]["assetId"])) and
                          r["status"] == "ready", timeout=20)


def test_postgres_down_during_an_import_catches_up(env: Env) -> None:
    env.start_operator(MEDIAIMPORT_DATABASE_TIMEOUT="1")
    clip = env.origin.add(env.media.path("h264.mp4"), "pgdown.mp4")
    name = new_name("pgdown")
    created = env.create(name, url=env.url(f"/files/{clip}?wait=1"))
    uid = created["metadata"]["uid"]
    eventually(lambda: (r := env.row(uid)) and r["status"] == "uploading", timeout=30,
               what="the uploading row")
    stop_postgres_fast(env.postgres)
    try:
        body = env.wait_phase(name, "Ready", "Failed")
        assert body["status"]["phase"] == "Ready"
        recorded = eventually(
            lambda: (b := env.get(name)) and _condition(b, "Recorded")["status"] == "False" and b,
            timeout=30, what="Recorded=False",
        )
        assert _condition(recorded, "Recorded")["reason"] == "DatabaseUnavailable"
    finally:
        env.postgres.start()
    row = eventually(lambda: (r := env.row(uid)) and r["status"] == "ready" and r, timeout=60,
                     what="the row to catch up")
    assert row["s3_key"] == body["status"]["result"]["key"]
    eventually(lambda: _condition(env.get(name), "Recorded")["status"] == "True", timeout=30)


def test_a_finished_import_deleted_while_postgres_is_down_keeps_its_row_through_a_restart(
    env: Env,
) -> None:
    operator = env.start_operator(MEDIAIMPORT_DATABASE_TIMEOUT="1")
    clip = env.origin.add(env.media.path("h264.mp4"), "pgdown-deleted.mp4")
    name = new_name("pgdel")
    uid = env.create(name, url=env.url(f"/files/{clip}?wait=1"))["metadata"]["uid"]
    eventually(lambda: (r := env.row(uid)) and r["status"] == "uploading", timeout=30,
               what="the uploading row")
    stop_postgres_fast(env.postgres)
    try:
        body = env.wait_phase(name, "Ready", "Failed")
        assert body["status"]["phase"] == "Ready"
        eventually(lambda: (b := env.get(name)) and _condition(b, "Recorded")["status"]
                   == "False" and "mediaimport.dev/record" in b["metadata"].get("finalizers", []),
                   timeout=30, what="Recorded=False and the import held for its row")
        env.kube.delete(env.mi_path(name))
        time.sleep(2)
        operator.kill()  # whatever it meant to write later is gone with it
        assert env.get(name) is not None  # held until its row is written
    finally:
        env.postgres.start()
    env.start_operator(MEDIAIMPORT_ORPHAN_SWEEP_INTERVAL="2")
    row = eventually(lambda: (r := env.row(uid)) and r["status"] != "uploading" and r,
                     timeout=60, what="the row written after the restart")
    assert row["status"] == "ready", row["file_metadata"].get("error")
    assert row["s3_key"] == body["status"]["result"]["key"]
    eventually(lambda: env.get(name) is None, timeout=30, what="the import to go")
    time.sleep(5)  # a sweep or two later, still ready
    after = env.row(uid)
    assert after is not None and after["status"] == "ready"


def test_an_import_from_a_namespace_no_api_serves_writes_nothing_among_its_users_media(
    env: Env,
) -> None:
    env.start_operator(MEDIAIMPORT_SERVED_NAMESPACES="the-apis-namespace")
    clip = env.origin.add(env.media.path("h264.mp4"), "elsewhere.mp4")
    name = new_name("elsewhere")
    uid = env.create(name, url=env.url(f"/files/{clip}"), userId="alice")["metadata"]["uid"]
    body = env.wait_phase(name, "Ready", "Failed")
    assert body["status"]["phase"] == "Ready", body["status"]
    prefix = f"namespaces/{env.namespace}/media/alice/{uid}/"
    assert body["status"]["result"]["key"].startswith(prefix)
    s3 = env.s3.client()
    assert s3.list_objects_v2(Bucket=env.bucket, Prefix="media/alice/").get("KeyCount", 0) == 0
    assert s3.list_objects_v2(Bucket=env.bucket, Prefix=prefix)["KeyCount"] == 2
    row = eventually(lambda: (r := env.row(uid)) and r["status"] == "ready" and r, timeout=20,
                     what="the ready row")
    assert row["namespace"] == env.namespace
    assert row["s3_key"].startswith(prefix)


def test_a_job_deleted_under_a_quota_that_refuses_it_comes_back_once_the_quota_goes(
    env: Env,
) -> None:
    env.start_operator(MEDIAIMPORT_RETRY_MAX_INTERVAL="4")
    sample = env.media.path("h264.mp4")
    clip = env.origin.add(sample, "quota.mp4")
    rate = max(1000, sample.stat().st_size // 20)  # some 20 s: the Job is deleted mid-import
    name = new_name("quota")
    env.create(name, url=env.url(f"/paced/{clip}?rate={rate}"))
    (job,) = eventually(lambda: env.jobs(**{"mediaimport.dev/import-name": name}) or None,
                        timeout=60, what="the Job")
    quota = f"/api/v1/namespaces/{env.namespace}/resourcequotas"
    env.kube.create(quota, {"metadata": {"name": "no-more-jobs"},
                            "spec": {"hard": {"count/jobs.batch": "0"}}})
    eventually(lambda: (env.kube.get(f"{quota}/no-more-jobs").get("status") or {}).get("used"),
               timeout=60, what="the quota counted")
    # As `kubectl delete job` does it: its pod goes with it.
    env.kube.delete(f"/apis/batch/v1/namespaces/{env.namespace}/jobs/{job['metadata']['name']}",
                    {"propagationPolicy": "Background"})
    env.reasons(name, "JobCreateFailed", timeout=60)
    held = env.get(name)
    assert held is not None and held["status"]["phase"] == "Importing"  # never back to Pending
    assert _condition(held)["reason"] in ("JobMissing", "JobCreated")
    assert not env.jobs(**{"mediaimport.dev/import-name": name})
    env.kube.delete(f"{quota}/no-more-jobs")
    body = env.wait_phase(name, "Ready", "Failed", timeout=180)
    assert body["status"]["phase"] == "Ready", body["status"]
    assert len(env.jobs(**{"mediaimport.dev/import-name": name})) == 1


def test_deleting_an_import_in_flight_cancels_it(env: Env) -> None:
    env.start_operator(MEDIAIMPORT_JOB_EXTRA_ENV='{"MEDIAIMPORT_RETRIES": "0"}')
    clip = env.origin.add(env.media.path("h264.mp4"), "stall.mp4")
    name = new_name("cancel")
    marker = f"stall-{name}"
    created = env.create(name, url=env.url(f"/stall/{clip}?after=1000&m={marker}"))
    uid = created["metadata"]["uid"]
    env.wait_phase(name, "Importing")
    eventually(lambda: _processes_with(marker), timeout=30, what="the job process")
    env.kube.delete(env.mi_path(name))
    eventually(lambda: not env.jobs(**{"mediaimport.dev/import-uid": uid}), timeout=60,
               what="the Job to be collected")
    eventually(lambda: not [p for p in env.pods()
                            if p["metadata"]["labels"].get("mediaimport.dev/import-uid") == uid],
               timeout=60, what="the pod to be gone")
    eventually(lambda: not _processes_with(marker), timeout=30, what="the process to be gone")
    row = eventually(lambda: (r := env.row(uid)) and r["status"] == "failed" and r, timeout=30,
                     what="the cancelled row")
    assert row["file_metadata"]["error"]["reason"] == "Cancelled"
    listing = env.s3.client().list_objects_v2(Bucket=env.bucket, Prefix=f"media/user-1/{uid}/")
    assert listing.get("KeyCount", 0) == 0


def test_two_replicas_only_one_acts_and_the_other_takes_over(env: Env) -> None:
    first = env.start_operator()
    eventually(lambda: "became the leader" in first.log(), timeout=30, what="a leader")
    second = env.start_operator()
    eventually(lambda: "standing by" in second.log(), timeout=30, what="a standby")
    clip = env.origin.add(env.media.path("h264.mp4"), "ha.mp4")
    names = [new_name("ha") for _ in range(3)]
    for name in names:
        env.create(name, url=env.url(f"/files/{clip}"))
    for name in names:
        assert env.wait_phase(name, "Ready", "Failed")["status"]["phase"] == "Ready"
        assert len(env.jobs(**{"mediaimport.dev/import-name": name})) == 1
    assert "job created" in first.log()
    assert "job created" not in second.log()
    assert "phase changed" not in second.log()
    first.kill()  # no goodbye: the standby waits for the lease to expire
    late = new_name("ha-late")
    env.create(late, url=env.url(f"/files/{clip}"))
    assert env.wait_phase(late, "Ready", "Failed", timeout=90)["status"]["phase"] == "Ready"
    assert "became the leader" in second.log()
    assert "job created" in second.log()


def chart_kubeconfig(env: Env, release: str) -> tuple[Path, str]:
    """A kubeconfig of the chart's ServiceAccount, bound by exactly the chart's RBAC (the
    real helm renders it) for the test's namespace; and the Lease name the chart's Role
    grants."""
    rbac_kinds = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    docs = [d for d in render(sets=[f"watchNamespaces={{{env.namespace}}}", "crds.enabled=false",
                                    "api.enabled=false", "rbac.aggregateClusterRoles=false"],
                              release=release, namespace=env.namespace)
            if d["kind"] in rbac_kinds]
    manifest = env.tmp / f"rbac-{release}.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    kubectl(env.plane, "apply", "-n", env.namespace, "-f", str(manifest))
    # The Lease the chart's Role names (its rights are limited to that one name).
    (lease,) = next(r["resourceNames"] for d in docs if d["kind"] == "Role"
                    for r in d["rules"] if r.get("resourceNames"))
    sa = next(d for d in docs if d["kind"] == "ServiceAccount")["metadata"]["name"]
    token = kubectl(env.plane, "create", "token", sa, "-n", env.namespace,
                    "--duration=1h").stdout.strip()
    admin = yaml.safe_load(env.plane.kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    if "certificate-authority" in cluster:
        ca = Path(cluster["certificate-authority"]).read_bytes()
        cluster = {"server": cluster["server"],
                   "certificate-authority-data": base64.b64encode(ca).decode()}
    kubeconfig = env.tmp / f"sa-{release}.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "sa"}}],
        "current-context": "c",
    }))
    return kubeconfig, lease


def _refusal(log: str) -> str | None:
    """A refusal of the API server in the log, as the API server, kopf and our client word
    them (kopf words a refused CRD or namespace watch its own way); a bare "403" would also
    match inside names and uids."""
    refused = re.search(r"Forbidden|HTTP 403|code\W+403\b|Not enough permissions", log)
    return None if refused is None else log[max(0, refused.start() - 300):refused.end() + 300]


def test_the_charts_rbac_is_enough(env: Env) -> None:
    """Run the operator as the chart's ServiceAccount with exactly the chart's RBAC."""
    kubeconfig, lease = chart_kubeconfig(env, new_name("rbac"))
    op = env.start_operator(KUBECONFIG=str(kubeconfig), MEDIAIMPORT_LEASE_NAME=lease)
    clip = env.origin.add(env.media.path("image.png"), "rbac.png")
    name = new_name("rbac")
    env.create(name, url=env.url(f"/files/{clip}"))
    body = env.wait_phase(name, "Ready", "Failed")
    assert body["status"]["phase"] == "Ready"
    env.reasons(name, "Imported")
    refused = _refusal(op.log_without_timestamps())
    assert refused is None, refused


def test_an_asset_id_taken_by_another_import_runs_no_job_under_the_charts_rbac(
    env: Env,
) -> None:
    """A second import of the same user naming the first one's asset id: refused before any
    Job exists, so nothing runs under (or deletes from) the first import's prefix."""
    kubeconfig, lease = chart_kubeconfig(env, new_name("claim"))
    op = env.start_operator(KUBECONFIG=str(kubeconfig), MEDIAIMPORT_LEASE_NAME=lease)
    asset = "7e1d2c3b-4a5f-4e6d-9c8b-1a2b3c4d5e6f"
    first = env.origin.add(env.media.path("image.png"), "first.png")
    owner = _ready(env, new_name("owner"), url=env.url(f"/files/{first}"), assetId=asset)
    prefix = f"media/user-1/{asset}/"
    s3 = env.s3.client()
    before = {o["Key"]: o["ETag"] for o in s3.list_objects_v2(
        Bucket=env.bucket, Prefix=prefix)["Contents"]}
    assert len(before) == 2
    other = env.origin.add(env.media.path("h264.mp4"), "second.mp4")
    second = new_name("second")
    env.create(second, url=env.url(f"/files/{other}"), assetId=asset)
    body = env.wait_phase(second, "Failed", "Ready")
    assert _condition(body)["reason"] == "AssetIdConflict"
    assert body["status"]["attempts"] == 0
    assert "jobName" not in body["status"]
    assert env.jobs(**{"mediaimport.dev/import-name": second}) == []
    assert env.origin.hits(f"/files/{other}") == 0
    after = {o["Key"]: o["ETag"] for o in s3.list_objects_v2(
        Bucket=env.bucket, Prefix=prefix)["Contents"]}
    assert after == before
    row = env.row(asset)
    assert row is not None and row["status"] == "ready"
    assert row["file_metadata"]["mediaimport"]["uid"] == owner["metadata"]["uid"]
    assert op.metrics()[_sample("mediaimport_jobs_created_total")] == 1
    refused = _refusal(op.log_without_timestamps())
    assert refused is None, refused


def test_objects_deleted_with_the_import_when_asked(env: Env) -> None:
    env.start_operator(MEDIAIMPORT_DELETE_OBJECTS_ON_DELETE="true", **env.s3.env())
    clip = env.origin.add(env.media.path("image.png"), "gone.png")
    name = new_name("gone")
    body = _ready(env, name, url=env.url(f"/files/{clip}"))
    assert "mediaimport.dev/finalizer" in env.get(name)["metadata"]["finalizers"]
    result, uid = body["status"]["result"], body["metadata"]["uid"]
    s3 = env.s3.client()
    assert s3.list_objects_v2(Bucket=env.bucket, Prefix=f"media/user-1/{uid}/")["KeyCount"] == 2
    env.kube.delete(env.mi_path(name))
    eventually(lambda: env.get(name) is None, timeout=60, what="the MediaImport to go")
    listing = s3.list_objects_v2(Bucket=env.bucket, Prefix=f"media/user-1/{uid}/")
    assert listing.get("KeyCount", 0) == 0, result
    row = eventually(lambda: (r := env.row(uid)) and r["is_deleted"] and r, timeout=20)
    assert row["status"] == "ready"


def test_objects_are_kept_by_default(env: Env) -> None:
    env.start_operator()
    clip = env.origin.add(env.media.path("image.png"), "kept.png")
    name = new_name("kept")
    body = _ready(env, name, url=env.url(f"/files/{clip}"))
    assert "finalizers" not in env.get(name)["metadata"]
    uid = body["metadata"]["uid"]
    env.kube.delete(env.mi_path(name))
    eventually(lambda: env.get(name) is None, timeout=30, what="the MediaImport to go")
    s3 = env.s3.client()
    assert s3.list_objects_v2(Bucket=env.bucket, Prefix=f"media/user-1/{uid}/")["KeyCount"] == 2
    row = env.row(uid)
    assert row is not None and row["status"] == "ready" and not row["is_deleted"]


def test_an_asset_id_of_another_user_is_refused(env: Env) -> None:
    env.start_operator()
    clip = env.origin.add(env.media.path("image.png"), "mine.png")
    asset = "5d0c1a7e-2b4f-4c6d-8e9f-0a1b2c3d4e5f"
    _ready(env, new_name("owner"), url=env.url(f"/files/{clip}"), assetId=asset)
    thief = new_name("thief")
    env.kube.create(env.mi_path(), {
        "apiVersion": "mediaimport.dev/v1alpha1", "kind": "MediaImport",
        "metadata": {"name": thief},
        "spec": {"userId": "mallory", "url": env.url(f"/files/{clip}"), "assetId": asset},
    })
    body = env.wait_phase(thief, "Failed", "Ready")
    assert _condition(body)["reason"] == "AssetIdConflict"
    assert _condition(body, "Recorded")["reason"] == "AssetIdConflict"
    eventually(lambda: not env.jobs(**{"mediaimport.dev/import-name": thief}), timeout=30,
               what="the thief's Job to be deleted")
    row = env.row(asset)
    assert row is not None and row["user_id"] == "user-1" and row["status"] == "ready"
    listing = env.s3.client().list_objects_v2(Bucket=env.bucket, Prefix="media/mallory/")
    assert listing.get("KeyCount", 0) == 0


def test_large_user_metadata_is_handled_once(env: Env) -> None:
    """A spec near the object size limits: kopf's bookkeeping must stay small."""
    env.start_operator()
    clip = env.origin.add(env.media.path("image.png"), "large-meta.png")
    name = new_name("bigmeta")
    metadata = {f"key{i:02d}": "x" * 3000 for i in range(60)}  # ~180 KB
    body = _ready(env, name, url=env.url(f"/files/{clip}"), metadata=metadata)
    annotations = env.get(name)["metadata"].get("annotations") or {}
    assert sum(len(k) + len(v) for k, v in annotations.items()) < 2000
    assert len(env.jobs(**{"mediaimport.dev/import-name": name})) == 1
    row = eventually(lambda: (r := env.row(body["status"]["assetId"])) and r, timeout=20)
    assert row["file_metadata"]["key59"] == "x" * 3000


def test_postgres_down_from_the_start_catches_up(env: Env) -> None:
    env.start_operator(MEDIAIMPORT_DATABASE_TIMEOUT="1")
    # The operator is up (and migrated); then the database goes away before the import.
    eventually(lambda: "became the leader" in env.operators[0].log(), timeout=30)
    clip = env.origin.add(env.media.path("image.png"), "pgfirst.png")
    stop_postgres_fast(env.postgres)
    try:
        name = new_name("pgfirst")
        created = env.create(name, url=env.url(f"/files/{clip}"))
        body = env.wait_phase(name, "Ready", "Failed")
        assert body["status"]["phase"] == "Ready"
        assert _condition(body, "Recorded")["reason"] == "DatabaseUnavailable"
    finally:
        env.postgres.start()
    uid = created["metadata"]["uid"]
    row = eventually(lambda: (r := env.row(uid)) and r["status"] == "ready" and r, timeout=60,
                     what="the row to catch up")
    assert row["file_size"] == body["status"]["result"]["size"]


def test_metadata_python_or_postgres_cannot_take_as_is_holds_up_nothing(env: Env) -> None:
    """A MediaImport whose free-form metadata nests thousands of levels (the API server
    takes up to 10,000) or holds \\u0000 (which Postgres refuses in JSONB) is imported like
    any other and its row keeps what can be kept; the imports next to it are not held up.
    (Once, the deep one stopped the operator's watch for every import, and the other's row
    was refused for ever.)"""
    env.start_operator()
    env.origin.add(env.media.path("h264.mp4"), "clip.mp4")
    url = env.url("/files/clip.mp4")
    deep, nul, plain = new_name("deep"), new_name("nul"), new_name("plain")
    nested = "[" * 3000 + '"leaf"' + "]" * 3000
    manifest = env.tmp / "deep.json"
    manifest.write_text(
        '{"apiVersion": "mediaimport.dev/v1alpha1", "kind": "MediaImport", '
        f'"metadata": {{"name": "{deep}", "namespace": "{env.namespace}"}}, '
        f'"spec": {{"userId": "user-1", "url": "{url}", '
        f'"metadata": {{"kept": 1, "deep": {nested}}}}}}}')
    kubectl(env.plane, "create", "-f", str(manifest))
    env.create(nul, url=url, metadata={"note": "a\u0000b"})
    env.create(plain, url=url)

    for name in (nul, plain):
        assert env.wait_phase(name, "Ready", "Failed")["status"]["phase"] == "Ready"

    def phase_and_asset() -> list[str] | None:
        out = kubectl(env.plane, "get", "mi", deep, "-n", env.namespace, "-o",
                      "jsonpath={.status.phase} {.status.assetId}").stdout.split()
        return out if out and out[0] in ("Ready", "Failed") else None

    phase, asset = eventually(phase_and_asset, timeout=90, what=f"{deep} finished")
    assert phase == "Ready"
    row = eventually(lambda: env.row(asset), timeout=30, what="the deep one's row")
    assert row["status"] == "ready"
    metadata = row["file_metadata"]
    assert metadata["kept"] == 1
    depth, value = 1, metadata["deep"]
    while isinstance(value, list):
        depth, value = depth + 1, value[0]
    assert (depth, value) == (32, "(nested deeper than 32 levels)")
    nul_asset = env.get(nul)["status"]["assetId"]
    assert env.row(nul_asset)["file_metadata"]["note"] == "a\ufffdb"
