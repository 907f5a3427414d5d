"""A real Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.

What controller-runtime's envtest runs (etcd + API server), plus the controller
manager and the scheduler, so Jobs, garbage collection, TTL-after-finished, service
accounts, endpoints and node lifecycle behave exactly as in a cluster. The API server
listens on this machine's end of the node's veth (`nodenet.HOST_IP`), so the kubelet
and pods (through the `kubernetes` Service) reach it too; the node is `node.Node`, and
`cluster.Cluster` puts the two together.

Two ways to use it:
- attached (tests): `with ControlPlane(state_dir) as cp: ...`; the processes are
  stopped on exit, on exceptions, at interpreter exit and on SIGINT/SIGTERM.
- detached (`mediaimport-dev up`): `start()` then `save()`; the processes outlive
  this Python process, and `ControlPlane.load(state_dir)` in another process can
  report on them and stop them.
"""

from __future__ import annotations

import contextlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from mediaimport_dev import certs, kubeconfig, lifecycle, nodenet
from mediaimport_dev.binaries import binary
from mediaimport_dev.kube import Kube, KubeError
from mediaimport_dev.ports import free_port, wait_for_port
from mediaimport_dev.processes import log_tail, pid_alive, spawn, stop_group

# Where the control plane listens: loopback on its own; with a node (`cluster.Cluster`,
# the stack), this machine's end of the node's veth, so the kubelet and pods reach it.
HOST = "127.0.0.1"
NODE_HOST = nodenet.HOST_IP
STATE_FILE = "controlplane.json"
CONTROLLERS = [
    "job-controller",
    "garbage-collector-controller",
    "ttl-after-finished-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "namespace-controller",
    # The node: its not-ready taint goes once it is Ready; pods of a lost node are evicted.
    "node-lifecycle-controller",
    "taint-eviction-controller",
    "pod-garbage-collector-controller",
    # Services: endpoints for kube-proxy, and Deployments for workloads such as the operator.
    "endpoints-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "deployment-controller",
    "replicaset-controller",
    # ResourceQuotas count what namespaces hold (count/jobs.batch and the like), as on any
    # cluster: an import must get on when a quota refuses its Job for a while.
    "resourcequota-controller",
]


class ControlPlaneError(RuntimeError):
    """A component failed to start or to become ready (the message names its log)."""


@dataclass
class Component:
    name: str
    pid: int
    log: str
    ports: dict[str, int] = field(default_factory=dict)

    def alive(self) -> bool:
        if not pid_alive(self.pid):
            return False
        # A recycled pid from an old state file must not count as ours.
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return True
        return self.name.encode() in cmdline


class ControlPlane:
    def __init__(self, state_dir: Path, *, detached: bool = False, host: str = HOST) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.detached = detached
        self.host = host
        self.components: dict[str, Component] = {}
        self.server = ""
        self._exit_handle: int | None = None
        # Pids this object started: always ours to stop, whatever /proc says.
        self._owned: set[int] = set()

    # -- paths -----------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        """Admin (cluster-admin) kubeconfig."""
        return self.state_dir / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.state_dir / "pki"

    def log_path(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    def kube(self) -> Kube:
        return Kube.from_kubeconfig(self.kubeconfig)

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # The state file says "something may run here" from the first process on,
        # so `down` can clean up even after a failed start.
        if self.detached:
            self.save()
        else:
            self._exit_handle = lifecycle.on_exit(self.stop)
        try:
            self._start(deadline)
        except BaseException:
            self.stop()
            raise
        if self.detached:
            self.save()

    def _start(self, deadline: float) -> None:
        pki = certs.generate(self.pki)
        etcd_port, etcd_peer = free_port(self.host), free_port(self.host)
        api_port, kcm_port = free_port(self.host), free_port(self.host)
        scheduler_port = free_port(self.host)
        self.server = f"https://{self.host}:{api_port}"
        kubeconfig.write(
            self.kubeconfig, server=self.server, ca=pki.ca.cert, cert=pki.admin.cert,
            key=pki.admin.key,
        )
        kcm_kubeconfig = kubeconfig.write(
            self.state_dir / "controller-manager.kubeconfig",
            server=self.server,
            ca=pki.ca.cert,
            cert=pki.controller_manager.cert,
            key=pki.controller_manager.key,
        )
        scheduler_kubeconfig = kubeconfig.write(
            self.state_dir / "scheduler.kubeconfig",
            server=self.server,
            ca=pki.ca.cert,
            cert=pki.scheduler.cert,
            key=pki.scheduler.key,
        )

        etcd_url = f"http://{self.host}:{etcd_port}"
        peer_url = f"http://{self.host}:{etcd_peer}"
        self._spawn(
            "etcd",
            [
                binary("etcd"),
                "--name=default",
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                # Test data: losing it on a power cut is fine, fsync latency is not.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            {"client": etcd_port, "peer": etcd_peer},
        )
        self._wait(lambda: wait_for_port(self.host, etcd_port, 0.2), "etcd", deadline)

        self._spawn(
            "kube-apiserver",
            [
                binary("kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={self.host}",
                f"--advertise-address={self.host}",
                f"--secure-port={api_port}",
                f"--cert-dir={self.pki}",
                f"--tls-cert-file={pki.serving.cert}",
                f"--tls-private-key-file={pki.serving.key}",
                f"--client-ca-file={pki.ca.cert}",
                # Node: the kubelet's rights follow the pods bound to it (with the
                # NodeRestriction admission plugin); RBAC: everyone else's.
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                # logs, exec and port-forward: the API server calls the kubelet.
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-client-certificate={pki.apiserver_kubelet_client.cert}",
                f"--kubelet-client-key={pki.apiserver_kubelet_client.key}",
                f"--kubelet-certificate-authority={pki.ca.cert}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={certs.SERVICE_CIDR}",
                "--allow-privileged=true",
                # Without a node (loopback), the `kubernetes` Endpoints cannot hold the
                # address, and nothing in a cluster network would use it.
                *(["--endpoint-reconciler-type=none"] if self.host == HOST else []),
                "--profiling=false",
            ],
            {"https": api_port},
        )
        self._wait(self._api_ready, "kube-apiserver", deadline)
        # Started once the API server is ready: before RBAC's bootstrap policy
        # exists, the controller manager is refused and exits.
        self._spawn(
            "kube-controller-manager",
            [
                binary("kube-controller-manager"),
                f"--kubeconfig={kcm_kubeconfig}",
                f"--authentication-kubeconfig={kcm_kubeconfig}",
                f"--authorization-kubeconfig={kcm_kubeconfig}",
                f"--bind-address={self.host}",
                f"--secure-port={kcm_port}",
                f"--cert-dir={self.pki / 'controller-manager'}",
                "--leader-elect=false",
                f"--controllers={','.join(CONTROLLERS)}",
                # Each controller acts as its own ServiceAccount with the bootstrap
                # roles, as in kubeadm clusters: RBAC gets exercised for real.
                "--use-service-account-credentials=true",
                f"--root-ca-file={pki.ca.cert}",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={certs.SERVICE_CIDR}",
                # Many small Jobs at once: more syncs than the default 5. The client keeps
                # its default rate (QPS 20, burst 30): more than the node's pods need,
                # and a faster one only competes with the operator for the API server on
                # this one machine (bench/operator_throughput.py: create→Job p50 halved).
                "--concurrent-job-syncs=20",
                "--concurrent-gc-syncs=20",
                "--v=1",
            ],
            {"https": kcm_port},
        )
        self._spawn(
            "kube-scheduler",
            [
                binary("kube-scheduler"),
                f"--kubeconfig={scheduler_kubeconfig}",
                f"--authentication-kubeconfig={scheduler_kubeconfig}",
                f"--authorization-kubeconfig={scheduler_kubeconfig}",
                f"--bind-address={self.host}",
                f"--secure-port={scheduler_port}",
                f"--cert-dir={self.pki / 'scheduler'}",
                "--leader-elect=false",
                "--v=1",
            ],
            {"https": scheduler_port},
        )
        self._wait_for_default_service_account(deadline)

    def _spawn(self, name: str, argv: list[Any], ports: dict[str, int]) -> None:
        log = self.log_path(name)
        process = spawn(argv, log)
        self._owned.add(process.pid)
        self.components[name] = Component(name, process.pid, str(log), ports)
        if self.detached:
            self.save()

    def _check_alive(self) -> None:
        for component in self.components.values():
            if not pid_alive(component.pid):
                raise ControlPlaneError(
                    f"{component.name} exited during start; log {component.log}:\n"
                    f"{log_tail(Path(component.log))}"
                )

    def _wait(self, ready: Any, name: str, deadline: float) -> None:
        # Start-up is the one place that polls: a process that is not listening
        # yet cannot be watched.
        while time.monotonic() < deadline:
            self._check_alive()
            if ready():
                return
            time.sleep(0.1)
        raise ControlPlaneError(f"{name} not ready in time; log {self.log_path(name)}")

    def _api_ready(self) -> bool:
        try:
            self.kube().text("/readyz", timeout=2)
        except (requests.RequestException, KubeError):
            return False
        return True

    def _wait_for_default_service_account(self, deadline: float) -> None:
        kube = self.kube()
        path = "/api/v1/namespaces/default/serviceaccounts"
        while time.monotonic() < deadline:
            self._check_alive()
            listing = kube.get(path, fieldSelector="metadata.name=default")
            if listing["items"]:
                return
            with contextlib.suppress(requests.RequestException):
                for event in kube.watch(
                    path,
                    resource_version=listing["metadata"]["resourceVersion"],
                    timeout_seconds=5,
                    fieldSelector="metadata.name=default",
                ):
                    if event["type"] == "ADDED":
                        return
        raise ControlPlaneError(
            "the `default` ServiceAccount never appeared; log "
            f"{self.log_path('kube-controller-manager')}"
        )

    def stop(self) -> None:
        """Stop every component (all at once: each takes up to its grace period)."""
        if self._exit_handle is not None:
            lifecycle.cancel(self._exit_handle)
            self._exit_handle = None
        running = [
            c for c in self.components.values()
            if c.pid in self._owned or c.alive()
        ]
        if running:
            with ThreadPoolExecutor(len(running)) as pool:
                list(pool.map(lambda c: stop_group(c.pid, grace=5.0), running))
        self.components.clear()
        if self.detached:
            with contextlib.suppress(FileNotFoundError):
                (self.state_dir / STATE_FILE).unlink()

    # -- detached use ----------------------------------------------------------
    def save(self) -> None:
        state = {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "components": {name: asdict(c) for name, c in self.components.items()},
        }
        tmp = self.state_dir / f"{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_dir / STATE_FILE)

    @classmethod
    def load(cls, state_dir: Path) -> ControlPlane | None:
        """The detached control plane recorded in state_dir, or None."""
        try:
            state = json.loads((Path(state_dir) / STATE_FILE).read_text())
        except FileNotFoundError:
            return None
        plane = cls(state_dir, detached=True)
        plane.server = state["server"]
        plane.components = {n: Component(**c) for n, c in state["components"].items()}
        return plane

    def healthy(self) -> bool:
        return (
            bool(self.components)
            and all(c.alive() for c in self.components.values())
            and self._api_ready()
        )
