"""The real Job controller, garbage collector and TTL controller with the node agent."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from k8s_helpers import Jobs, container_pid, eventually
from mediaimport_dev.processes import pid_alive

pytestmark = pytest.mark.e2e

# A message written to the path given as an argument: the node agent maps the
# container's terminationMessagePath to the pod's directory when it starts an argument.
WRITE_MESSAGE = ["sh", "-c", 'printf %s "$2" > "$1"; exit "$3"', "sh", "/dev/termination-log"]


def test_job_completes_with_termination_message(jobs: Jobs) -> None:
    jobs.create("ok", [*WRITE_MESSAGE, '{"status": "ready"}', "0"])
    jobs.condition("ok", "Complete")
    (pod,) = jobs.pods("ok")
    assert pod["status"]["phase"] == "Succeeded"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0
    assert terminated["reason"] == "Completed"
    assert terminated["message"] == '{"status": "ready"}'
    assert terminated["startedAt"] <= terminated["finishedAt"]


PRIORITY = """
import os, pathlib, sys
autogroup = pathlib.Path("/proc/self/autogroup")
group_nice = autogroup.read_text().split()[-1] if autogroup.exists() else "none"
idle = os.sched_getscheduler(0) == os.SCHED_IDLE
pathlib.Path(sys.argv[1]).write_text(f"{os.nice(0)} {idle} {group_nice}")
"""


def test_pods_run_at_the_lowest_cpu_priority(jobs: Jobs) -> None:
    # The agent (this test process) runs at nice 0, SCHED_OTHER.
    jobs.create("nice", [sys.executable, "-c", PRIORITY, "/dev/termination-log"])
    jobs.condition("nice", "Complete")
    (pod,) = jobs.pods("nice")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    nice, idle, group_nice = terminated["message"].split()
    assert (nice, idle) == ("19", "True")
    if Path("/proc/self/autogroup").exists():  # a kernel with autogroup scheduling
        assert group_nice == "19"


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
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"], terminated["message"]) == (
        2, "Error", "expired",
    )


@pytest.mark.slow
def test_backoff_limit_exceeded_after_two_pods(jobs: Jobs) -> None:
    command = ["sh", "-c", "echo failing >&2; exit 1"]
    jobs.create("flaky", command, backoffLimit=1, pod_spec={"containers": [{
        "name": "main", "image": "local", "command": command,
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
        assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"] == (
            "failing"
        )


def test_active_deadline_kills_the_process(jobs: Jobs) -> None:
    jobs.create("slow", ["sleep", "300"], activeDeadlineSeconds=2)

    def running_pid() -> int | None:
        pods = jobs.pods("slow")
        return container_pid(pods[0]) if pods else None

    pid = eventually(running_pid, what="the pod's process")
    assert pid_alive(pid)
    failed = jobs.condition("slow", "Failed", timeout=40)
    assert failed["reason"] == "DeadlineExceeded"
    eventually(lambda: not pid_alive(pid), timeout=5, what=f"pid {pid} to end")
    # The deleted pod is finalised: terminal status, then gone.
    eventually(lambda: not jobs.pods("slow"), timeout=20, what="the pod to be deleted")


def test_deleting_a_job_garbage_collects_its_pods(jobs: Jobs) -> None:
    jobs.create("doomed", ["sleep", "300"])
    pid = eventually(lambda: container_pid(next(iter(jobs.pods("doomed")), {})),
                     what="the pod's process")
    jobs.kube.delete(jobs.path("doomed"), {"propagationPolicy": "Background"})
    eventually(lambda: not jobs.pods("doomed"), timeout=40, what="pods to be collected")
    assert not pid_alive(pid)


def test_ttl_after_finished_deletes_the_job(jobs: Jobs) -> None:
    jobs.create("brief", ["true"], ttlSecondsAfterFinished=0)
    eventually(lambda: jobs.get("brief") is None, timeout=30, what="the TTL controller")


def test_env_from_secret_configmap_and_fields(jobs: Jobs) -> None:
    ns = jobs.namespace
    jobs.kube.create(f"/api/v1/namespaces/{ns}/secrets",
                     {"metadata": {"name": "creds"}, "stringData": {"key": "s3cret"}})
    jobs.kube.create(f"/api/v1/namespaces/{ns}/configmaps",
                     {"metadata": {"name": "settings"}, "data": {"MODE": "fast"}})
    script = 'printf "%s|%s|%s|%s" "$KEY" "$MODE" "$POD" "$NS" > "$1"'
    jobs.create("env", ["sh", "-c", script, "sh", "/dev/termination-log"], pod_spec={
        "containers": [{
            "name": "main", "image": "local",
            "command": ["sh", "-c", script, "sh", "/dev/termination-log"],
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
    message = pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
    assert message == f"s3cret|fast|{pod['metadata']['name']}|{ns}"
