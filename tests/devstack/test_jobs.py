"""The real Job controller, garbage collector and TTL controller, with pods on the real node."""

from __future__ import annotations

import pytest
from k8s_helpers import Jobs, eventually, terminated

pytestmark = pytest.mark.e2e

# Writes $2 to the file $1 and exits with $3.
WRITE_MESSAGE = ["sh", "-c", 'printf %s "$2" > "$1"; exit "$3"', "sh", "/dev/termination-log"]


def test_job_completes_with_termination_message(jobs: Jobs) -> None:
    jobs.create("ok", [*WRITE_MESSAGE, '{"status": "ready"}', "0"])
    jobs.condition("ok", "Complete")
    (pod,) = jobs.pods("ok")
    assert pod["status"]["phase"] == "Succeeded"
    state = terminated(pod)
    assert state["exitCode"] == 0
    assert state["reason"] == "Completed"
    assert state["message"] == '{"status": "ready"}'
    assert state["startedAt"] <= state["finishedAt"]
    assert pod["status"]["containerStatuses"][0]["containerID"].startswith("containerd://")


def test_pod_failure_policy_fails_job_at_once(jobs: Jobs) -> None:
    jobs.create(
        "permanent",
        [*WRITE_MESSAGE, "expired", "2"],
        backoffLimit=3,
        podFailurePolicy={
            "rules": [
                {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [2]}}
            ]
        },
    )
    failed = jobs.condition("permanent", "Failed")
    assert failed["reason"] == "PodFailurePolicy"
    (pod,) = jobs.pods("permanent")
    state = terminated(pod)
    assert (state["exitCode"], state["reason"], state["message"]) == (2, "Error", "expired")


@pytest.mark.slow
def test_backoff_limit_exceeded_after_two_pods(jobs: Jobs) -> None:
    command = ["sh", "-c", "echo failing >&2; exit 1"]
    jobs.create("flaky", command, backoffLimit=1, pod_spec={"containers": [{
        "name": "main", "image": jobs.image, "imagePullPolicy": "Never", "command": command,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }]})
    # The Job controller waits 10 s before the second pod.
    failed = jobs.condition("flaky", "Failed", timeout=60)
    assert failed["reason"] == "BackoffLimitExceeded"
    pods = jobs.pods("flaky")
    assert len(pods) == 2
    for pod in pods:
        assert pod["status"]["phase"] == "Failed"
        # No message file written: the log tail stands in (FallbackToLogsOnError).
        assert terminated(pod)["message"] == "failing\n"


def test_active_deadline_kills_the_pod(jobs: Jobs) -> None:
    jobs.create("slow", ["sleep", "300"], activeDeadlineSeconds=3)
    eventually(lambda: any(p["status"].get("phase") == "Running" for p in jobs.pods("slow")),
               what="the pod to run")
    failed = jobs.condition("slow", "Failed", timeout=40)
    assert failed["reason"] == "DeadlineExceeded"
    # `sleep` as PID 1 ignores SIGTERM: the kubelet kills it after the grace period.
    eventually(lambda: not jobs.pods("slow"), timeout=60, what="the pod to be deleted")


def test_deleting_a_job_garbage_collects_its_pods(jobs: Jobs) -> None:
    jobs.create("doomed", ["sleep", "300"], pod_spec={"terminationGracePeriodSeconds": 1})
    eventually(lambda: any(p["status"].get("phase") == "Running" for p in jobs.pods("doomed")),
               what="the pod to run")
    jobs.kube.delete(jobs.path("doomed"), {"propagationPolicy": "Background"})
    eventually(lambda: not jobs.pods("doomed"), timeout=40, what="pods to be collected")


def test_ttl_after_finished_deletes_the_job(jobs: Jobs) -> None:
    jobs.create("brief", ["true"], ttlSecondsAfterFinished=0)
    eventually(lambda: jobs.get("brief") is None, timeout=30, what="the TTL controller")


def test_env_from_secret_configmap_and_fields(jobs: Jobs) -> None:
    ns = jobs.namespace
    jobs.kube.create(f"/api/v1/namespaces/{ns}/secrets",
                     {"metadata": {"name": "creds"}, "stringData": {"key": "s3cret"}})
    jobs.kube.create(f"/api/v1/namespaces/{ns}/configmaps",
                     {"metadata": {"name": "settings"}, "data": {"MODE": "fast"}})
    script = 'printf "%s|%s|%s|%s" "$KEY" "$MODE" "$POD" "$NS" > /dev/termination-log'
    jobs.create("env", [], pod_spec={
        "containers": [{
            "name": "main", "image": jobs.image, "imagePullPolicy": "Never",
            "command": ["sh", "-c", script],
            "envFrom": [{"configMapRef": {"name": "settings"}}],
            "env": [
                {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "key"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            ],
        }],
    })
    jobs.condition("env", "Complete")
    (pod,) = jobs.pods("env")
    assert terminated(pod)["message"] == f"s3cret|fast|{pod['metadata']['name']}|{ns}"
