"""The node agent: a test stand-in for the kubelet, running pods as local processes.

THIS IS NOT A CONTAINER RUNTIME. It exists so the real Job controller, garbage
collector and the operator can be exercised on a machine without Docker:

- it registers one Node and binds every unscheduled pod to it (there is no scheduler);
- it runs each pod's first container `command` + `args` as a local process, in its
  own process group, with the pod's environment. Images are ignored: the program
  (e.g. `mediaimport-job`) must be installed on this machine, on the agent's PATH;
- volumes, the termination message path and TMPDIR are mapped into a directory per
  pod under the agent's state dir (rules in `podenv`); the pod's output goes to
  `<state-dir>/pods/<namespace>_<name>_<uid>/<container>.log` (logged when it starts);
- it writes pod status as a kubelet does (Running, then Succeeded/Failed with
  `state.terminated`), honours deletion (SIGTERM, SIGKILL after the grace period,
  final status, then delete with grace 0) and runs at most `max_pods` at once,
  at a lower CPU priority than the control plane (`pod_nice`, as a kubelet's
  cgroups keep workloads from starving the node's daemons).

It is watch-driven: no polling, so a Job's round trip costs what the controllers cost.

Run inside a Python process (`NodeAgent(...).start()`) or as a process:
`python -m mediaimport_dev.nodeagent --kubeconfig K --state-dir D [--max-pods N]`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from mediaimport_dev import lifecycle, podstatus
from mediaimport_dev.kube import Json, Kube, KubeError
from mediaimport_dev.podenv import PodConfigError, PodStartError, prepare

log = logging.getLogger(__name__)

HOST_IP = "127.0.0.1"
DEFAULT_NODE_NAME = "mediaimport-node"
STRATEGIC = "application/strategic-merge-patch+json"
HEARTBEAT_SECONDS = 20.0
CONFIG_RETRY_SECONDS = 2.0
# Scheduling priority (nice) of pod processes: see NodeAgent._lower_priority.
DEFAULT_POD_NICE = 19
# What a pod's process inherits from the agent: enough to find and run programs,
# nothing that would hand it the agent's credentials (KUBECONFIG, AWS_*, ...).
INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "VIRTUAL_ENV")


@dataclass
class _Run:
    """One pod this agent is responsible for."""

    pod: Json
    directory: Path
    lock: threading.Lock = field(default_factory=threading.Lock)
    process: subprocess.Popen[bytes] | None = None
    deleting: bool = False
    finished: bool = False
    deleted_by_us: bool = False
    kill_timer: threading.Timer | None = None

    @property
    def ref(self) -> str:
        return f"{self.pod['metadata']['namespace']}/{self.pod['metadata']['name']}"

    def path(self, suffix: str = "") -> str:
        meta = self.pod["metadata"]
        return f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}{suffix}"


def _base_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
    # The agent's own interpreter directory first: that is where the project's
    # console scripts (mediaimport-job) are installed.
    path = env.get("PATH", "/usr/bin:/bin")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), path])
    return env


class NodeAgent:
    def __init__(
        self,
        kube: Kube,
        state_dir: Path,
        *,
        node_name: str = DEFAULT_NODE_NAME,
        max_pods: int = 2,
        pod_nice: int = DEFAULT_POD_NICE,
    ) -> None:
        self.kube = kube
        self.state_dir = Path(state_dir).resolve()
        self.node_name = node_name
        self.max_pods = max_pods
        self.pod_nice = pod_nice
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Run | None] = queue.Queue()
        self._stopping = threading.Event()
        # API calls that must not hold up the watch (binding, final deletes).
        self._calls = ThreadPoolExecutor(4, thread_name_prefix="agent-api")
        self._threads: list[threading.Thread] = []
        self._base_env = _base_env()
        self._exit_handle: int | None = None

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        (self.state_dir / "pods").mkdir(parents=True, exist_ok=True)
        self._register_node()
        self._exit_handle = lifecycle.on_exit(self.stop)
        targets = [(self._watch_pods, "agent-watch"), (self._heartbeat, "agent-heartbeat")]
        targets += [(self._worker, f"agent-pod-{i}") for i in range(self.max_pods)]
        for target, name in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("node agent %s up (max %d pods, state %s)", self.node_name, self.max_pods,
                 self.state_dir)

    def stop(self) -> None:
        """Kill every pod process this agent started; the pods' objects stay as they are."""
        if self._exit_handle is not None:
            lifecycle.cancel(self._exit_handle)
            self._exit_handle = None
        self._stopping.set()
        for _ in range(self.max_pods):
            self._queue.put(None)
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            if run.process is not None and run.process.poll() is None:
                self._signal(run, signal.SIGKILL)
        self._calls.shutdown(wait=False, cancel_futures=True)

    def wait(self) -> None:
        self._stopping.wait()

    # -- the node --------------------------------------------------------------
    def _node_status(self) -> Json:
        when = podstatus.now()
        memory_kib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024
        capacity = {"cpu": str(os.cpu_count() or 1), "memory": f"{memory_kib}Ki", "pods": "110"}
        return {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "mediaimport node agent (local processes, images ignored) is ready",
                    "lastHeartbeatTime": when,
                    "lastTransitionTime": when,
                }
            ],
            "addresses": [
                {"type": "InternalIP", "address": HOST_IP},
                {"type": "Hostname", "address": self.node_name},
            ],
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": platform.release(),
                "osImage": "mediaimport node agent (local processes)",
                "containerRuntimeVersion": "mediaimport-agent://0",
                "kubeletVersion": "v0.0.0-mediaimport-agent",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(
                    platform.machine(), platform.machine()
                ),
            },
        }

    def _register_node(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "mediaimport.dev/node-agent": "true",
                },
            },
        }
        try:
            self.kube.create("/api/v1/nodes", node)
        except KubeError as error:
            if error.status != 409:
                raise
        # The TaintNodesByCondition admission plugin marks new nodes not-ready; the
        # node lifecycle controller that would lift it is deliberately not running.
        self.kube.merge_patch(f"/api/v1/nodes/{self.node_name}", {"spec": {"taints": None}})
        self.kube.request(
            "PATCH", f"/api/v1/nodes/{self.node_name}/status",
            body={"status": self._node_status()}, content_type=STRATEGIC,
        )

    def _heartbeat(self) -> None:
        while not self._stopping.wait(HEARTBEAT_SECONDS):
            try:
                self.kube.request(
                    "PATCH", f"/api/v1/nodes/{self.node_name}/status",
                    body={"status": self._node_status()}, content_type=STRATEGIC,
                )
            except (KubeError, requests.RequestException) as error:
                log.warning("node heartbeat failed: %s", error)

    # -- the pod watch ---------------------------------------------------------
    def _watch_pods(self) -> None:
        while not self._stopping.is_set():
            try:
                listing = self.kube.get("/api/v1/pods")
                for pod in listing["items"]:
                    self._on_pod(pod)
                self._follow(listing["metadata"]["resourceVersion"])
            except (KubeError, requests.RequestException, ValueError) as error:
                if self._stopping.is_set():
                    return
                # 410 Gone: our resourceVersion is too old; anything else: the API
                # server is restarting. Either way list again, after a short pause.
                log.info("pod watch restarts after: %s", error)
                self._stopping.wait(0.5)

    def _follow(self, version: str) -> None:
        """Handle watch events from version on, reconnecting, until an error or stop."""
        while not self._stopping.is_set():
            for event in self.kube.watch("/api/v1/pods", resource_version=version,
                                         timeout_seconds=60):
                obj = event["object"]
                if event["type"] == "ERROR":
                    raise KubeError("WATCH", "/api/v1/pods", obj.get("code", 0), obj)
                version = obj["metadata"]["resourceVersion"]
                if event["type"] == "DELETED":
                    self._on_deleted(obj)
                elif event["type"] != "BOOKMARK":
                    self._on_pod(obj)

    def _on_pod(self, pod: Json) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        phase = (pod.get("status") or {}).get("phase", "Pending")
        terminal = phase in ("Succeeded", "Failed")
        deleting = bool(meta.get("deletionTimestamp"))
        node = spec.get("nodeName")
        if not node:
            if not deleting and not terminal:
                self._submit(self._bind, pod)
            return
        if node != self.node_name:
            return
        with self._lock:
            run = self._runs.get(meta["uid"])
            if run is None:
                run = _Run(pod, self._pod_dir(pod))
                self._runs[meta["uid"]] = run
                if terminal:
                    run.finished = True
                elif phase == "Running" or (pod.get("status") or {}).get("containerStatuses"):
                    # Started by an earlier agent whose process is gone with it.
                    run.finished = True
                    self._submit(self._lost, run)
                    return
                else:
                    self._queue.put(run)
        with run.lock:
            run.pod = pod
            if not deleting or run.deleting:
                return
            run.deleting = True
            if run.process is None:
                # Not started yet (queued, or waiting for a Secret): it never will be.
                run.finished = True
            elif not run.finished:
                grace = meta.get("deletionGracePeriodSeconds")
                if grace is None:
                    grace = spec.get("terminationGracePeriodSeconds", 30)
                self._kill(run, float(grace))
            finished = run.finished
        if finished:
            self._submit(self._delete_now, run)

    def _submit(self, call: Callable[[Any], None], arg: Any) -> None:
        """Run an API call off the watch thread (dropped once the agent stops)."""
        with contextlib.suppress(RuntimeError):  # the executor is shut down
            self._calls.submit(call, arg)

    def _on_deleted(self, pod: Json) -> None:
        with self._lock:
            run = self._runs.pop(pod["metadata"]["uid"], None)
        if run is not None:
            with run.lock:
                run.deleting = True
                if run.process is not None and run.process.poll() is None:
                    # Force-deleted by someone else: nothing to report to, just stop it.
                    self._signal(run, signal.SIGKILL)

    def _pod_dir(self, pod: Json) -> Path:
        meta = pod["metadata"]
        return self.state_dir / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"

    # -- API calls ---------------------------------------------------------------
    def _bind(self, pod: Json) -> None:
        meta = pod["metadata"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            self.kube.create(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding", binding
            )
        except KubeError as error:
            # 409: already bound (an earlier event); 404: gone meanwhile.
            if error.status not in (404, 409):
                log.warning("binding %s/%s failed: %s", meta["namespace"], meta["name"], error)

    def _patch_status(self, run: _Run, status: Json) -> None:
        try:
            self.kube.request("PATCH", run.path("/status"), body={"status": status},
                              content_type=STRATEGIC)
        except KubeError as error:
            if error.status != 404:
                log.warning("status of %s not written: %s", run.ref, error)

    def _delete_now(self, run: _Run) -> None:
        with run.lock:
            if run.deleted_by_us:
                return
            run.deleted_by_us = True
        body = {"gracePeriodSeconds": 0,
                "preconditions": {"uid": run.pod["metadata"]["uid"]}}
        try:
            self.kube.delete(run.path(), body)
        except KubeError as error:
            if error.status not in (404, 409):
                log.warning("final delete of %s failed: %s", run.ref, error)

    def _lost(self, run: _Run) -> None:
        container = run.pod["spec"]["containers"][0]
        when = podstatus.now()
        started = (run.pod.get("status") or {}).get("startTime") or when
        self._patch_status(run, podstatus.terminated(
            container, exit_code=137, started_at=started, finished_at=when, host_ip=HOST_IP,
            reason="ContainerStatusUnknown",
            message="The container could not be located when the node agent restarted",
        ))
        if run.pod["metadata"].get("deletionTimestamp"):
            self._delete_now(run)

    # -- processes -----------------------------------------------------------------
    def _signal(self, run: _Run, sig: signal.Signals) -> None:
        if run.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(run.process.pid, sig)

    def _kill(self, run: _Run, grace: float) -> None:
        """SIGTERM the pod's process group, SIGKILL it when the grace period is over."""
        log.info("pod %s is being deleted: SIGTERM, SIGKILL in %.0f s", run.ref, grace)
        self._signal(run, signal.SIGTERM)
        timer = threading.Timer(grace, self._signal, (run, signal.SIGKILL))
        timer.daemon = True
        timer.start()
        run.kill_timer = timer

    def _worker(self) -> None:
        while True:
            run = self._queue.get()
            if run is None or self._stopping.is_set():
                return
            try:
                self._run(run)
            except Exception as error:
                if self._stopping.is_set():
                    # Stopping kills the pods and, often, the API server right after:
                    # a pod's last report failing then is expected, not an agent fault.
                    log.info("pod %s: not reported, the agent is stopping (%s)", run.ref,
                             type(error).__name__)
                    return
                log.exception("pod %s: node agent error", run.ref)

    def _retry_later(self, run: _Run) -> None:
        # The kubelet retries a container whose Secret/ConfigMap is missing; a timer
        # (not a sleeping worker) brings it back without holding a pod slot.
        timer = threading.Timer(CONFIG_RETRY_SECONDS, self._queue.put, (run,))
        timer.daemon = True
        timer.start()

    def _run(self, run: _Run) -> None:
        container = run.pod["spec"]["containers"][0]
        with run.lock:
            if run.deleting:
                run.finished = True
        if run.finished:
            self._delete_now(run)
            return
        started = podstatus.now()
        try:
            spec = prepare(run.pod, run.directory, self.kube.get, self._base_env)
        except (PodConfigError, KubeError, requests.RequestException) as error:
            # Missing (or unreadable, for now) Secrets and ConfigMaps: the kubelet waits.
            self._patch_status(run, podstatus.waiting(
                container, reason="CreateContainerConfigError", message=str(error)))
            self._retry_later(run)
            return
        except PodStartError as error:
            self._finish(run, container, 128, started=started, message=str(error),
                         reason="StartError")
            return
        message = ""
        with run.lock:
            if run.deleting:
                run.finished = True
            else:
                try:
                    with spec.log_file.open("ab") as output:
                        run.process = subprocess.Popen(
                            spec.argv, env=spec.env, cwd=spec.cwd, stdin=subprocess.DEVNULL,
                            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                        )
                except OSError as error:
                    run.finished = True
                    message = f"cannot run {spec.argv[0]!r} on this machine: {error}"
        if run.process is None:
            if run.deleting:
                self._delete_now(run)
            else:
                self._finish(run, container, 128, started=started, message=message,
                             reason="StartError")
            return
        pid = run.process.pid
        self._lower_priority(pid)
        log.info("pod %s: running %s (pid %d), log %s", run.ref, spec.argv[0], pid, spec.log_file)
        self._patch_status(run, podstatus.running(
            container, started_at=started, pid=pid, host_ip=HOST_IP))
        returncode = run.process.wait()
        if run.kill_timer is not None:
            run.kill_timer.cancel()
        failed = returncode != 0
        message = podstatus.termination_message(
            _read(spec.termination_message_file, podstatus.MAX_MESSAGE_BYTES),
            _tail(spec.log_file, podstatus.FALLBACK_LOG_BYTES * 4),
            policy=container.get("terminationMessagePolicy", "File"),
            failed=failed,
        )
        self._finish(run, container, podstatus.exit_code(returncode), started=started,
                     message=message, pid=pid)
        log.info("pod %s: exited %d", run.ref, podstatus.exit_code(returncode))

    def _lower_priority(self, pgid: int) -> None:
        """Pods yield the CPU to the control plane and the operator on this one machine.

        A real node keeps its workloads from starving the system daemons with cgroups
        (kube-reserved, CPU shares by request); here the whole cluster shares the
        machine, so the pod's process group runs at a lower scheduling priority.

        With the kernel's autogroup scheduling (`sched_autogroup_enabled`), CPU time is
        first shared fairly between sessions and a process's nice value only counts
        inside its own session; each pod runs in a session of its own, so the session's
        autogroup gets the nice value too. Otherwise two busy pods would take as much
        CPU as two control-plane components, niced or not. `SCHED_IDLE` (inherited by
        what the pod starts) lets a waking API server preempt a pod at once.
        """
        if self.pod_nice <= 0:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.setpriority(os.PRIO_PGRP, pgid, self.pod_nice)
        with contextlib.suppress(OSError):  # no autogroups here, or the pod is gone
            Path(f"/proc/{pgid}/autogroup").write_text(f"{self.pod_nice}\n")
        with contextlib.suppress(OSError):
            os.sched_setscheduler(pgid, os.SCHED_IDLE, os.sched_param(0))

    def _finish(self, run: _Run, container: Json, code: int, *, started: str, message: str,
                pid: int | None = None, reason: str | None = None) -> None:
        self._patch_status(run, podstatus.terminated(
            container, exit_code=code, started_at=started, finished_at=podstatus.now(),
            message=message, host_ip=HOST_IP, pid=pid, reason=reason,
        ))
        with run.lock:
            run.finished = True
            deleting = run.deleting
        if deleting:
            self._delete_now(run)


def _read(path: Path, limit: int) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(limit)
    except OSError:
        return b""


def _tail(path: Path, limit: int) -> bytes:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read()
    except OSError:
        return b""


def node_ready(kube: Kube, node_name: str = DEFAULT_NODE_NAME) -> bool:
    """Whether an agent has registered ``node_name`` and reports it Ready."""
    try:
        node = kube.get(f"/api/v1/nodes/{node_name}")
    except (KubeError, requests.RequestException):
        return False
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mediaimport_dev.nodeagent",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--kubeconfig", required=True, type=Path)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--max-pods", type=int, default=2)
    parser.add_argument("--node-name", default=DEFAULT_NODE_NAME)
    parser.add_argument("--pod-nice", type=int, default=DEFAULT_POD_NICE,
                        help="nice value of pod processes and of their sessions, which also "
                             "run SCHED_IDLE, so they yield the CPU to the control plane "
                             "(0: normal priority; default %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    agent = NodeAgent(Kube.from_kubeconfig(args.kubeconfig), args.state_dir,
                      node_name=args.node_name, max_pods=args.max_pods,
                      pod_nice=args.pod_nice)
    agent.start()
    try:
        agent.wait()
    finally:
        agent.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
