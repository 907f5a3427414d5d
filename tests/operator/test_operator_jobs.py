"""An import's Job and its pods, end to end: a finished Job is never run again, only the Job's
own pods speak for it, and a pod that ended with its result decides before the Job does."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from conftest import Env, eventually, new_name
from mediaimport_operator.jobs import job_name
from mediaimport_operator.model import MediaImport

pytestmark = pytest.mark.e2e


def _condition(body: dict, type_: str = "Succeeded") -> dict:
    return next(c for c in body["status"]["conditions"] if c["type"] == type_)


def _job(env: Env, name: str) -> dict | None:
    found = env.jobs(**{"mediaimport.dev/import-name": name})
    return found[0] if found else None


def _finished(job: dict | None) -> bool:
    return job is not None and any(
        c["type"] in ("Complete", "Failed") and c["status"] == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def test_a_job_that_finished_while_no_operator_watched_is_not_run_again(env: Env) -> None:
    # Without a channel (credentials, no keys) the pod needs no operator to finish: its
    # result waits in its termination message, checked when an operator is back.
    unwatched = {"MEDIAIMPORT_STORAGE_ACCESS": "credentials", "MEDIAIMPORT_CHANNEL_KEYS_DIR": "",
                 "MEDIAIMPORT_TTL_SECONDS_AFTER_FINISHED": "1"}
    first = env.start_operator(**unwatched)
    clip = env.origin.add(env.media.path("image.png"), f"unwatched-{new_name()}.png")
    name = new_name("unwatched")
    env.create(name, url=env.url(f"/files/{clip}"))
    job = eventually(lambda: _job(env, name), timeout=30, what="the Job")
    first.kill()
    # The Job finishes while no operator watches; its TTL (1 s) must not take the result
    # with it before an operator has read it.
    eventually(lambda: _finished(_job(env, name)) or _job(env, name) is None, timeout=60,
               what="the Job to finish")
    time.sleep(4)
    assert env.origin.hits(f"/files/{clip}") == 1
    env.start_operator(**unwatched)
    body = env.wait_phase(name, "Ready", "Failed")
    assert body["status"]["phase"] == "Ready", json.dumps(body["status"], indent=1)
    assert env.origin.hits(f"/files/{clip}") == 1  # downloaded once: not run twice
    assert body["status"]["jobName"] == job["metadata"]["name"]
    # Once the result is in the status, the TTL is set and the Job goes.
    eventually(lambda: _job(env, name) is None, timeout=30, what="the Job to be collected")


def _stray_pod(env: Env, job: str, finished_at: datetime) -> None:
    """A finished pod that carries the Job's name but belongs to another Job (one that was
    deleted and created again under the same name), with a result document of its own."""
    pod = f"{job}-old{uuid.uuid4().hex[:4]}"
    env.kube.create(f"/api/v1/namespaces/{env.namespace}/pods", {
        "metadata": {"name": pod, "labels": {
            "batch.kubernetes.io/job-name": job, "job-name": job,
            "batch.kubernetes.io/controller-uid": str(uuid.uuid4()),
        }},
        # Bound to a node nobody runs: the pod only exists as a record.
        "spec": {"nodeName": "mediaimport-elsewhere", "restartPolicy": "Never",
                 "containers": [{"name": "import", "image": "stray"}]},
    })
    document = {"status": "failed", "error": {
        "reason": "ChecksumMismatch", "message": "An older attempt's checksum failed.",
        "retryable": False}}
    stamp = finished_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    env.kube.merge_patch(f"/api/v1/namespaces/{env.namespace}/pods/{pod}/status", {
        "status": {"phase": "Failed", "containerStatuses": [{
            "name": "import", "image": "stray", "imageID": "", "ready": False,
            "restartCount": 0, "started": False,
            "state": {"terminated": {"exitCode": 2, "reason": "Error",
                                     "message": json.dumps(document),
                                     "startedAt": stamp, "finishedAt": stamp}},
        }]},
    })


def test_only_the_jobs_own_pods_decide_its_result(env: Env) -> None:
    name = new_name("ownpods")
    # One attempt, no retries inside the job: the origin's 503 fails the import as it is.
    created = env.create(name, url=env.url("/status/503"))
    job = job_name(MediaImport.from_body(created))
    _stray_pod(env, job, datetime.now(UTC) + timedelta(hours=1))
    env.start_operator(MEDIAIMPORT_BACKOFF_LIMIT="0",
                       MEDIAIMPORT_JOB_EXTRA_ENV='{"MEDIAIMPORT_RETRIES": "0"}')
    body = env.wait_phase(name, "Failed", "Ready")
    reason = _condition(body)["reason"]
    assert reason != "ChecksumMismatch", _condition(body)
    assert reason == "SourceUnavailable", _condition(body)


def test_the_resync_finds_a_completion_the_watch_never_delivered(env: Env) -> None:
    """The operator watches its Jobs and their pods by their managed-by label: a Job and
    pods that lose it (a tool relabelling them) are out of those watches, and the import's
    end is never delivered. The resync reads the Job of every live import and finds it."""
    env.start_operator(MEDIAIMPORT_RESYNC_INTERVAL="3",
                       MEDIAIMPORT_JOB_EXTRA_ENV='{"MEDIAIMPORT_RETRIES": "0"}')
    clip = env.origin.add(env.media.path("image.png"), f"unwatched-{new_name()}.png")
    name = new_name("resync")
    # The first attempt fails (HTTP 500); the Job's next one, ~10 s later, succeeds: time
    # enough to take the Job out of the watch before it completes.
    env.create(name, url=env.url(f"/flaky/{clip}?code=500&fail=1"))
    job = eventually(lambda: _job(env, name), timeout=30, what="the Job")
    path = f"/apis/batch/v1/namespaces/{env.namespace}/jobs/{job['metadata']['name']}"
    env.kube.merge_patch(path, {"metadata": {"labels": {"app.kubernetes.io/managed-by": None}}})
    # Its pods too (the pods' watch would report the succeeding one): each as it is created,
    # long before its container can end.
    stop = threading.Event()
    unlabel = threading.Thread(target=_unlabel_pods, args=(env, job["metadata"]["uid"], stop))
    unlabel.start()
    try:
        body = env.wait_phase(name, "Ready", "Failed", timeout=120)
    finally:
        stop.set()
        unlabel.join()
    assert body["status"]["phase"] == "Ready", json.dumps(body["status"], indent=1)
    assert body["status"]["attempts"] == 2
    # The import is Ready from its pod's end; the Job controller marks the Job Complete
    # about a second later (its batching), out of the watch's sight.
    def completed() -> dict | None:
        job = env.kube.get(path)
        return job if _finished(job) else None

    unwatched = eventually(completed, timeout=30, what="the Job to complete")
    assert "app.kubernetes.io/managed-by" not in unwatched["metadata"]["labels"]
    env.reasons(name, "Imported")


def _unlabel_pods(env: Env, job_uid: str, stop: threading.Event) -> None:
    """Take every pod of the Job out of the operator's pods' watch, until ``stop``."""
    path = f"/api/v1/namespaces/{env.namespace}/pods"
    selector = f"batch.kubernetes.io/controller-uid={job_uid}"
    listing = env.kube.get(path, labelSelector=selector)
    version = listing["metadata"]["resourceVersion"]
    for pod in listing["items"]:
        _unlabel(env, pod)
    while not stop.is_set():
        for event in env.kube.watch(path, resource_version=version, timeout_seconds=2,
                                    labelSelector=selector):
            pod = event["object"]
            version = pod["metadata"]["resourceVersion"]
            if event["type"] in ("ADDED", "MODIFIED"):
                _unlabel(env, pod)


def _unlabel(env: Env, pod: dict) -> None:
    if "app.kubernetes.io/managed-by" in pod["metadata"].get("labels", {}):
        env.kube.merge_patch(
            f"/api/v1/namespaces/{env.namespace}/pods/{pod['metadata']['name']}",
            {"metadata": {"labels": {"app.kubernetes.io/managed-by": None}}},
        )


def test_the_import_is_ready_from_its_pod_before_the_job_is_complete(env: Env) -> None:
    """The kubelet reports the container's end with its termination message about 2 s
    before the Job controller marks the Job Complete. With the controller manager paused
    once the pod exists, the Job stays unfinished, and the import is Ready all the same,
    from the pod; the Job completes and is handed to the TTL controller afterwards."""
    env.start_operator(MEDIAIMPORT_JOB_EXTRA_ENV='{"MEDIAIMPORT_RETRIES": "0"}')
    png = env.origin.add(env.media.path("image.png"), f"early-{new_name()}.png")
    name = new_name("early")
    env.create(name, url=env.url(f"/files/{png}"))

    def job_pod() -> dict | None:
        return next((p for p in env.pods()
                     if p["metadata"]["labels"].get("mediaimport.dev/import-name") == name), None)

    eventually(job_pod, timeout=30, what="the import's pod")
    controller_manager = env.plane.components["kube-controller-manager"].pid
    os.kill(controller_manager, signal.SIGSTOP)
    try:
        body = env.wait_phase(name, "Ready", "Failed", timeout=60)
        job = _job(env, name)
        assert not _finished(job), job and job["status"]
    finally:
        os.kill(controller_manager, signal.SIGCONT)
    assert body["status"]["phase"] == "Ready", json.dumps(body["status"], indent=1)
    assert body["status"]["result"]["media"]["width"] == 200
    pod = job_pod()
    assert pod is not None
    finished_at = pod["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]
    assert body["status"]["completionTime"] == finished_at
    env.reasons(name, "Imported")
    job = eventually(lambda: (j := _job(env, name)) and _finished(j) and j, timeout=30,
                     what="the Job Complete once the controller manager runs again")
    assert job["spec"]["ttlSecondsAfterFinished"] is not None
