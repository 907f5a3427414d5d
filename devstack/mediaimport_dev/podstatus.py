"""Pod status documents as a kubelet writes them (the parts the Job controller reads).

Pure functions: the node agent patches their result into `pods/{name}/status`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

Json = dict[str, Any]

# Kubelet limits (pkg/kubelet/container): message file bytes, fallback log tail.
MAX_MESSAGE_BYTES = 4096
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(kind: str, status: bool, when: str, reason: str | None = None) -> Json:
    condition: Json = {
        "type": kind,
        "status": "True" if status else "False",
        "lastProbeTime": None,
        "lastTransitionTime": when,
    }
    if reason:
        condition["reason"] = reason
    return condition


def _base(container: Json) -> Json:
    return {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": "",
        "restartCount": 0,
    }


def running(container: Json, *, started_at: str, pid: int, host_ip: str) -> Json:
    status = _base(container) | {
        "containerID": f"mediaimport-agent://{pid}",
        "ready": True,
        "started": True,
        "state": {"running": {"startedAt": started_at}},
    }
    return {
        "phase": "Running",
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": host_ip,
        "podIPs": [{"ip": host_ip}],
        "startTime": started_at,
        "conditions": [
            _condition("PodReadyToStartContainers", True, started_at),
            _condition("Initialized", True, started_at),
            _condition("Ready", True, started_at),
            _condition("ContainersReady", True, started_at),
            _condition("PodScheduled", True, started_at),
        ],
        "containerStatuses": [status],
    }


def waiting(container: Json, *, reason: str, message: str) -> Json:
    """Pending with a container that cannot start yet (e.g. a missing Secret)."""
    status = _base(container) | {
        "ready": False,
        "started": False,
        "state": {"waiting": {"reason": reason, "message": message}},
    }
    return {"phase": "Pending", "containerStatuses": [status]}


def terminated(
    container: Json,
    *,
    exit_code: int,
    started_at: str,
    finished_at: str,
    message: str,
    host_ip: str,
    pid: int | None = None,
    reason: str | None = None,
) -> Json:
    reason = reason or ("Completed" if exit_code == 0 else "Error")
    state: Json = {
        "exitCode": exit_code,
        "reason": reason,
        "startedAt": started_at,
        "finishedAt": finished_at,
    }
    if message:
        state["message"] = message
    if pid is not None:
        state["containerID"] = f"mediaimport-agent://{pid}"
    status = _base(container) | {
        "ready": False,
        "started": False,
        "state": {"terminated": state},
    }
    if pid is not None:
        status["containerID"] = state["containerID"]
    return {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": host_ip,
        "podIPs": [{"ip": host_ip}],
        "startTime": started_at,
        "conditions": [
            _condition("PodReadyToStartContainers", False, finished_at),
            _condition("Initialized", True, started_at),
            _condition("Ready", False, finished_at, "PodCompleted"),
            _condition("ContainersReady", False, finished_at, "PodCompleted"),
            _condition("PodScheduled", True, started_at),
        ],
        "containerStatuses": [status],
    }


def termination_message(message_file_content: bytes, log_tail: bytes, *, policy: str,
                        failed: bool) -> str:
    """What goes into state.terminated.message, following the kubelet's rules."""
    message = message_file_content[:MAX_MESSAGE_BYTES]
    if not message.strip() and failed and policy == "FallbackToLogsOnError":
        lines = log_tail.splitlines()[-FALLBACK_LOG_LINES:]
        message = b"\n".join(lines)[-FALLBACK_LOG_BYTES:]
    return message.decode("utf-8", errors="replace")


def exit_code(returncode: int) -> int:
    """A process killed by signal N exits 128+N in a container's terms."""
    return 128 - returncode if returncode < 0 else returncode
