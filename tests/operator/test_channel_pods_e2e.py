"""The import pod's channel on the real node: pods with no S3 credential import through it,
report progress through it, and nothing a pod claims is believed without a check."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any

import pytest
import requests
from conftest import Env, eventually, kubectl, new_name
from mediaimport_job.result import MediaInfo, ReadyResult, render
from mediaimport_operator.credentials import KeyRing, mint

pytestmark = pytest.mark.e2e

# The sample video at this rate takes some 10 s to download: long enough to watch.
SLOW_SECONDS = 10.0


def _slow_url(env: Env, name: str) -> tuple[str, bytes]:
    sample = env.media.path("h264.mp4")
    stored = env.origin.add(sample, name)
    data = sample.read_bytes()
    rate = max(1000, int(len(data) / SLOW_SECONDS))
    return env.url(f"/paced/{stored}?rate={rate}"), data


def _job(env: Env, name: str) -> dict[str, Any]:
    """The import's one Job, once it exists."""
    (job,) = eventually(lambda: env.jobs(**{"mediaimport.dev/import-name": name}) or None,
                        timeout=30, what=f"the Job of {name}")
    return dict(job)


def _job_env(env: Env, name: str) -> dict[str, Any]:
    (container,) = _job(env, name)["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def _post(url: str, token: str, endpoint: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{url}/{endpoint}", json=body, timeout=10,
                         headers={"Authorization": f"Bearer {token}"})


def _report(attempt: int = 1) -> dict[str, Any]:
    return {"phase": "downloading", "bytesDownloaded": 1, "attempt": attempt,
            "updatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _running_pod(env: Env, uid: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        for pod in env.pods():
            labels = pod["metadata"].get("labels") or {}
            if labels.get("mediaimport.dev/import-uid") == uid and \
                    (pod.get("status") or {}).get("phase") == "Running":
                return pod
        return None

    result: dict[str, Any] = eventually(check, timeout=60, what="the import pod running")
    return result


def _condition(body: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in body["status"]["conditions"] if c["type"] == "Succeeded")


def test_a_pod_without_s3_credentials_imports_and_shows_progress(env: Env) -> None:
    env.start_operator()
    url, data = _slow_url(env, "progress.mp4")
    name = new_name("progress")
    uid = env.create(name, url=url, type="video")["metadata"]["uid"]
    pod = _running_pod(env, uid)
    (container,) = pod["spec"]["containers"]
    assert "envFrom" not in container
    assert not [e for e in container["env"] if e["name"].startswith("AWS_")]

    # The container's environment has its channel and no S3 credential; the job's own
    # process cannot be read by another of the same uid (ffmpeg's position).
    exec_env = kubectl(env.plane, "exec", "-n", env.namespace, pod["metadata"]["name"], "--",
                       "env").stdout
    variables = dict(line.split("=", 1) for line in exec_env.splitlines() if "=" in line)
    assert "MEDIAIMPORT_CHANNEL_TOKEN" in variables
    assert not [n for n in variables if n.startswith("AWS_")]
    peek = kubectl(env.plane, "exec", "-n", env.namespace, pod["metadata"]["name"], "--",
                   "cat", "/proc/1/environ", check=False)
    assert peek.returncode != 0 and "Permission denied" in peek.stderr

    # Progress while it runs: in the status, and as a percent in kubectl's PROGRESS column.
    seen: list[float] = []
    columns: set[str] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = env.get(name) or {}
        status = body.get("status") or {}
        if status.get("phase") != "Importing" and seen:
            break
        progress = status.get("progress")
        if progress and progress.get("percent") is not None:
            if not seen or seen[-1] != progress["percent"]:
                seen.append(progress["percent"])
            assert progress["bytesTotal"] == len(data)
            assert progress["attempt"] == 1
            line = kubectl(env.plane, "get", "mi", "-n", env.namespace, name,
                           "--no-headers").stdout.split()
            if line[2] == "Importing":
                columns.add(line[3])
        time.sleep(0.5)
    assert len(seen) >= 3, seen
    assert seen == sorted(seen), seen  # never backwards
    assert any(column.endswith("%") and column != "100%" for column in columns), columns
    body = env.wait_phase(name, "Ready", "Failed")
    assert body["status"]["phase"] == "Ready", body["status"]
    assert body["status"]["progress"]["percent"] == 100
    stored = env.s3.client().get_object(Bucket=env.bucket, Key=body["status"]["result"]["key"])
    assert stored["Body"].read() == data


def _alice_object(env: Env) -> tuple[str, bytes, dict[str, Any]]:
    """A Ready import of user alice: its key, its bytes and its row."""
    env.origin.add(env.media.path("h264.mp4"), "alice.mp4")
    name = new_name("alice")
    uid = env.create(name, url=env.url("/files/alice.mp4"), userId="alice")["metadata"]["uid"]
    body = env.wait_phase(name, "Ready", "Failed")
    assert body["status"]["phase"] == "Ready"
    key = body["status"]["result"]["key"]
    data = env.s3.client().get_object(Bucket=env.bucket, Key=key)["Body"].read()
    row = eventually(lambda: (r := env.row(uid)) and r["status"] == "ready" and r, timeout=20,
                     what="alice's row")
    return key, data, row


def _forged_pod(env: Env, name: str, job: dict[str, Any], claim: ReadyResult, *,
                owner: dict[str, Any] | None) -> None:
    """A pod with the Job's labels whose container exits 0 with ``claim`` as its result."""
    labels = dict(job["spec"]["template"]["metadata"]["labels"])
    (container,) = job["spec"]["template"]["spec"]["containers"]
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    env.kube.create(f"/api/v1/namespaces/{env.namespace}/pods", {
        "metadata": metadata,
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "containers": [{
                "name": "import",
                "image": container["image"],
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", 'printf "%s" "$RESULT" > /dev/termination-log'],
                "env": [{"name": "RESULT", "value": render(claim)}],
                "securityContext": {"runAsUser": 10001, "runAsNonRoot": True},
            }],
        },
    })


def _claim(env: Env, key: str, size: int, *, bucket: str | None = None) -> ReadyResult:
    return ReadyResult(type="video", bucket=bucket or env.bucket, key=key, thumbnailKey=None,
                       name=key.rsplit("/", 1)[-1], size=size, sha256="0" * 64,
                       contentType="video/mp4", media=MediaInfo())


def _assert_refused(env: Env, name: str, uid: str, alice: tuple[str, bytes, dict[str, Any]]
                    ) -> None:
    body = env.wait_phase(name, "Ready", "Failed", timeout=120)
    assert body["status"]["phase"] == "Failed", body["status"]
    condition = _condition(body)
    assert condition["reason"] == "InvalidResult", condition
    assert "result" not in body["status"]
    env.reasons(name, "InvalidResult")
    row = eventually(lambda: (r := env.row(uid)) and r["status"] == "failed" and r, timeout=30,
                     what="the failed row")
    assert row["s3_key"] is None
    key, data, alice_row = alice
    assert env.s3.client().get_object(Bucket=env.bucket, Key=key)["Body"].read() == data
    after = env.row(alice_row["id"])
    assert after is not None
    assert (after["status"], after["s3_key"], after["user_id"]) == ("ready", key, "alice")


def test_a_pod_with_the_jobs_labels_but_not_owned_by_it_is_not_believed(env: Env) -> None:
    operator = env.start_operator()
    alice = _alice_object(env)
    url, _ = _slow_url(env, "mallory.mp4")
    name = new_name("mallory")
    uid = env.create(name, url=url, userId="mallory")["metadata"]["uid"]
    job = _job(env, name)
    # Owned by something else (a ConfigMap), so the Job controller does not adopt it.
    holder = env.kube.create(f"/api/v1/namespaces/{env.namespace}/configmaps",
                             {"metadata": {"name": f"holder-{uuid.uuid4().hex[:6]}"}})
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": holder["metadata"]["name"],
             "uid": holder["metadata"]["uid"], "controller": True}
    _forged_pod(env, f"forged-{uuid.uuid4().hex[:6]}", job, _claim(env, alice[0],
                len(alice[1])), owner=owner)
    _assert_refused(env, name, uid, alice)
    assert "is not owned by Job" in _condition(env.get(name) or {})["message"]
    metrics = operator.metrics()
    assert metrics[("mediaimport_invalid_results_total", frozenset())] >= 1


@pytest.mark.parametrize("target", ["another user's key", "another bucket"])
def test_a_pod_of_the_job_claiming_another_prefix_or_bucket_is_not_believed(
    env: Env, target: str
) -> None:
    env.start_operator()
    alice = _alice_object(env)
    url, _ = _slow_url(env, "mallory.mp4")
    name = new_name("mallory")
    uid = env.create(name, url=url, userId="mallory")["metadata"]["uid"]
    job = _job(env, name)
    if target == "another bucket":
        other = f"other-{uuid.uuid4().hex[:8]}"
        env.s3.create_bucket(other)
        env.s3.client().put_object(Bucket=other, Key=f"media/mallory/{uid}/x.mp4", Body=b"x")
        claim = _claim(env, f"media/mallory/{uid}/x.mp4", 1, bucket=other)
    else:
        claim = _claim(env, alice[0], len(alice[1]))
    # No owner: the Job controller adopts it, and it becomes a pod of the Job.
    _forged_pod(env, f"adopted-{uuid.uuid4().hex[:6]}", job, claim, owner=None)
    _assert_refused(env, name, uid, alice)


def test_credentials_are_good_for_their_own_import_only_and_s3_checks_the_urls(
    env: Env,
) -> None:
    env.start_operator()
    url_a, _ = _slow_url(env, "a.mp4")
    url_b, _ = _slow_url(env, "b.mp4")
    a, b = new_name("cred-a"), new_name("cred-b")
    uid_a = env.create(a, url=url_a)["metadata"]["uid"]
    env.create(b, url=url_b)
    job_a, job_b = _job_env(env, a), _job_env(env, b)
    channel_a, token_a = job_a["MEDIAIMPORT_CHANNEL_URL"], job_a["MEDIAIMPORT_CHANNEL_TOKEN"]
    channel_b = job_b["MEDIAIMPORT_CHANNEL_URL"]
    env.wait_phase(a, "Importing")

    # A's credential on B's endpoints, and an expired credential of A's.
    replayed = _post(channel_b, token_a, "progress", _report())
    assert replayed.status_code == 403, replayed.text
    ring = KeyRing.from_directory(env.tmp / "channel-keys")
    expired = mint(ring, namespace=env.namespace, name=a, uid=uid_a,
                   expires_at=int(time.time()) - 5)
    assert _post(channel_a, expired, "progress", _report()).status_code == 403

    # Keys outside A's prefix are never signed; a signed URL works for its own key only.
    prefix = f"media/user-1/{uid_a}"
    outside = _post(channel_a, token_a, "uploads/put", {
        "key": "media/alice/other/x.bin", "contentType": "application/octet-stream",
        "sha256": "0" * 64, "contentLength": 3})
    assert outside.status_code == 403, outside.text
    body = b"abc"
    digest = hashlib.sha256(body).hexdigest()
    signed = _post(channel_a, token_a, "uploads/put", {
        "key": f"{prefix}/probe.bin", "contentType": "application/octet-stream",
        "sha256": digest, "contentLength": len(body)})
    assert signed.status_code == 200, signed.text
    presigned = signed.json()
    moved = presigned["url"].replace(f"{prefix}/probe.bin", "media/alice/stolen.bin")
    refused = requests.put(moved, data=body, headers=presigned["headers"], timeout=10)
    assert refused.status_code == 403, refused.text
    stored = requests.put(presigned["url"], data=body, headers=presigned["headers"], timeout=10)
    assert stored.status_code == 200, stored.text
    reading = requests.get(presigned["url"], timeout=10)  # a write URL reads nothing
    assert reading.status_code == 403

    # Once A is finished its credential is refused: at once for anything that writes,
    # and for progress once the channel's short cache of the import has expired.
    assert env.wait_phase(a, "Ready", "Failed")["status"]["phase"] == "Ready"
    late = _post(channel_a, token_a, "uploads/put", {
        "key": f"{prefix}/late.bin", "contentType": "application/octet-stream",
        "sha256": digest, "contentLength": len(body)})
    assert late.status_code == 409, late.text
    assert json.loads(late.text)["reason"]
    eventually(lambda: _post(channel_a, token_a, "progress", _report()).status_code == 409,
               timeout=10, what="progress refused for the finished import")


def test_the_leader_deleted_mid_import_the_import_still_finishes(env: Env) -> None:
    first = env.start_operator()
    eventually(lambda: "became the leader" in first.log(), timeout=30, what="a leader")
    second = env.start_operator()
    eventually(lambda: "standing by" in second.log(), timeout=30, what="a standby")
    url, data = _slow_url(env, "handover.mp4")
    name = new_name("handover")
    env.create(name, url=url)

    def percent() -> float | None:
        progress = ((env.get(name) or {}).get("status") or {}).get("progress") or {}
        value = progress.get("percent")
        return float(value) if value is not None else None

    before = eventually(percent, timeout=60, what="a first progress report")
    first.kill()  # the leader goes, mid-import; the standby serves the channel already
    later = eventually(lambda: (p := percent()) is not None and p > before and p,
                       timeout=60, what="progress after the leader went")
    assert later > before
    body = env.wait_phase(name, "Ready", "Failed", timeout=120)
    assert body["status"]["phase"] == "Ready", body["status"]
    stored = env.s3.client().get_object(Bucket=env.bucket, Key=body["status"]["result"]["key"])
    assert stored["Body"].read() == data
    assert "became the leader" in second.log()


def test_an_unreachable_channel_fails_the_import_as_channel_unavailable(env: Env) -> None:
    closed = f"http://{env.origin.host}:9"  # discard: nothing listens there
    env.start_operator(
        MEDIAIMPORT_CHANNEL_URL=closed,
        MEDIAIMPORT_BACKOFF_LIMIT="0",
        MEDIAIMPORT_JOB_EXTRA_ENV=json.dumps({"MEDIAIMPORT_CHANNEL_BUDGET": "4"}),
    )
    env.origin.add(env.media.path("h264.mp4"), "unreachable.mp4")
    name = new_name("nochannel")
    env.create(name, url=env.url("/files/unreachable.mp4"))
    body = env.wait_phase(name, "Ready", "Failed", timeout=120)
    assert body["status"]["phase"] == "Failed"
    condition = _condition(body)
    assert condition["reason"] == "ChannelUnavailable", condition
    assert "channel" in condition["message"]


def test_credentials_mode_gives_the_pod_its_secret_and_still_reports_through_the_channel(
    env: Env,
) -> None:
    env.start_operator(MEDIAIMPORT_STORAGE_ACCESS="credentials")
    url, data = _slow_url(env, "credentials.mp4")
    name = new_name("creds")
    uid = env.create(name, url=url)["metadata"]["uid"]
    pod = _running_pod(env, uid)
    (container,) = pod["spec"]["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": "mediaimport-s3"}}]
    variables = {e["name"]: e.get("value") for e in container["env"]}
    assert variables["MEDIAIMPORT_STORAGE"] == "credentials"
    eventually(lambda: ((env.get(name) or {}).get("status") or {}).get("progress"),
               timeout=60, what="progress through the channel")
    body = env.wait_phase(name, "Ready", "Failed")
    assert body["status"]["phase"] == "Ready", body["status"]
    stored = env.s3.client().get_object(Bucket=env.bucket, Key=body["status"]["result"]["key"])
    assert stored["Body"].read() == data
