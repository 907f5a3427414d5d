"""The local node: containerd, the kubelet and kube-proxy, in the node's network namespace.

Started after the control plane (`cluster.Cluster` does both, with the network first).
The kubelet registers the Node `mediaimport-node` with NODE_IP as its InternalIP, runs
pods through containerd and runc on the bridge CNI, and serves logs, exec and
port-forward to the API server; kube-proxy programs the Services into the namespace's
iptables. Every process enters only the node's network namespace (nsenter --net), so the
kubelet sees this machine's cgroups and mounts.
"""

from __future__ import annotations

import contextlib
import json
import tarfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import requests
import yaml

from mediaimport_dev import certs, containerd, kubeconfig, nodehost, nodenet
from mediaimport_dev.binaries import binary
from mediaimport_dev.controlplane import Component
from mediaimport_dev.kube import Json, Kube, KubeError
from mediaimport_dev.processes import log_tail, pid_alive, spawn, stop_group

NODE_NAME = certs.NODE_NAME
KUBELET_PORT = 10250
KUBELET_ROOT = nodehost.DATA_DIR / "kubelet"
STATE_FILE = "node.json"


class NodeError(RuntimeError):
    """A part of the node failed to start or to become ready (the message names its log)."""


def archive_digest(archive: Path) -> str:
    """The manifest digest an OCI archive holds (what containerd lists once imported)."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        if member is None:
            raise NodeError(f"{archive} is not an OCI archive (no index.json)")
        index = json.load(member)
    return str(index["manifests"][0]["digest"])


def kubelet_config(pki: certs.ClusterCerts, resolv_conf: Path) -> Json:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": nodenet.NODE_IP,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki.ca.cert)},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(pki.kubelet_serving.cert),
        "tlsPrivateKeyFile": str(pki.kubelet_serving.key),
        "containerRuntimeEndpoint": f"unix://{containerd.SOCKET}",
        "imageServiceEndpoint": f"unix://{containerd.SOCKET}",
        # This machine: cgroup v1 (accepted with a deprecation warning from 1.35 on), no
        # systemd, swap allowed.
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        # No cluster DNS: every address a pod needs is an IP (see docs/local-stack.md).
        "resolvConf": str(resolv_conf),
        # Images come from local archives only: never collect them, and never evict pods
        # because a shared development disk or memory runs low.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "serializeImagePulls": False,
        # Mounted Secrets follow their object within seconds rather than a minute: a token
        # from `mediaimport-dev token` reaches the API pods' tokens file quickly.
        "syncFrequency": "10s",
        "podLogsDir": str(nodehost.DATA_DIR / "pod-logs"),
        "volumePluginDir": str(nodehost.DATA_DIR / "volume-plugins"),
        "nodeStatusMaxImages": 100,
        "shutdownGracePeriod": "0s",
    }


def kube_proxy_config(proxy_kubeconfig: Path) -> Json:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(proxy_kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "mode": "iptables",
        "clusterCIDR": nodenet.POD_CIDR,
        "nodePortAddresses": [f"{nodenet.NODE_IP}/32"],
        "metricsBindAddress": "127.0.0.1:10249",
        "healthzBindAddress": "127.0.0.1:10256",
        # Leave the machine-wide conntrack table size alone.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
    }


def node_ready(kube: Kube, images: tuple[str, ...] = ()) -> bool:
    """Ready, without a NoSchedule/NoExecute taint, and listing every image in images."""
    try:
        node = kube.get(f"/api/v1/nodes/{NODE_NAME}")
    except (KubeError, requests.RequestException):
        return False
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    taints = [t for t in (node.get("spec") or {}).get("taints") or []
              if t.get("effect") in ("NoSchedule", "NoExecute")]
    listed = {name for image in (node.get("status") or {}).get("images") or []
              for name in image.get("names") or []}
    return ready and not taints and all(_listed(name, listed) for name in images)


def _listed(name: str, listed: set[str]) -> bool:
    # The kubelet lists a local image by its full reference (docker.io/... for short names).
    return name in listed or any(n.endswith("/" + name) for n in listed)


class Node:
    """containerd + kubelet + kube-proxy; like ControlPlane, attached or detached."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.components: dict[str, Component] = {}

    def log_path(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    def start(
        self,
        *,
        server: str,
        pki: certs.ClusterCerts,
        pause_image: str,
        images: Mapping[str, Path],
        timeout: float = 120.0,
        echo: Callable[[str], None] = print,
    ) -> None:
        deadline = time.monotonic() + timeout
        self.state_dir.mkdir(parents=True, exist_ok=True)
        cni_dir = self.state_dir / "cni"
        cni_dir.mkdir(exist_ok=True)
        (cni_dir / "10-mediaimport.conflist").write_text(containerd.cni_config())
        config = self.state_dir / "containerd.toml"
        config.write_text(containerd.config(pause_image=pause_image, cni_conf_dir=cni_dir))
        self._spawn("containerd", [containerd.binary(), "--config", str(config)])
        # The CRI service answers "server is not initialized yet" (and a kubelet started then
        # exits) until it has recovered its state and started streaming, after which it logs
        # this line; the containerd API itself answers earlier.
        log = self.log_path("containerd")
        self._wait(lambda: _answers(containerd.image_names)
                   and "Start streaming server" in log.read_text(errors="replace"),
                   "containerd", deadline)
        containerd.remove_all_containers()
        self._import(images, echo)

        kubelet_kubeconfig = kubeconfig.write(
            self.state_dir / "kubelet.kubeconfig", server=server, ca=pki.ca.cert,
            cert=pki.kubelet.cert, key=pki.kubelet.key,
        )
        resolv = self.state_dir / "resolv.conf"
        # No DNS on the local node: pods reach everything by IP, and a name lookup fails
        # at once instead of trying this machine's resolver, which the node cannot reach.
        resolv.write_text("nameserver 127.0.0.1\n")
        kubelet_yaml = self.state_dir / "kubelet.yaml"
        kubelet_yaml.write_text(yaml.safe_dump(kubelet_config(pki, resolv)))
        self._spawn("kubelet", [
            str(binary("kubelet")),
            f"--config={kubelet_yaml}",
            f"--kubeconfig={kubelet_kubeconfig}",
            f"--root-dir={KUBELET_ROOT}",
            f"--cert-dir={self.state_dir / 'pki'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={nodenet.NODE_IP}",
            "--v=1",
        ])
        proxy_kubeconfig = kubeconfig.write(
            self.state_dir / "kube-proxy.kubeconfig", server=server, ca=pki.ca.cert,
            cert=pki.kube_proxy.cert, key=pki.kube_proxy.key,
        )
        proxy_yaml = self.state_dir / "kube-proxy.yaml"
        proxy_yaml.write_text(yaml.safe_dump(kube_proxy_config(proxy_kubeconfig)))
        self._spawn("kube-proxy", [str(binary("kube-proxy")), f"--config={proxy_yaml}", "--v=1"])

        kube = Kube(server=server, ca_file=str(pki.ca.cert), cert_file=str(pki.admin.cert),
                    key_file=str(pki.admin.key))
        names = (pause_image, *images)
        self._wait(lambda: node_ready(kube, names),
                   f"the node {NODE_NAME} (Ready, untainted, images listed)", deadline,
                   log="kubelet")

    def _import(self, images: Mapping[str, Path], echo: Callable[[str], None]) -> None:
        present = _image_digests()
        stale = {name: archive for name, archive in images.items()
                 if present.get(name) != archive_digest(archive)}
        if not stale:
            return
        started = time.monotonic()

        def one(archive: Path) -> None:
            containerd.import_image(archive)

        with ThreadPoolExecutor(min(len(stale), 2)) as pool:
            list(pool.map(one, stale.values()))
        echo(f"mediaimport-dev: imported {', '.join(stale)} into containerd "
             f"in {time.monotonic() - started:.1f} s")

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = self.log_path(name)
        process = spawn(nodenet.in_netns_argv([str(a) for a in argv]), log)
        self.components[name] = Component(name, process.pid, str(log), {})
        self.save()

    def _wait(self, ready: Callable[[], bool], what: str, deadline: float,
              log: str | None = None) -> None:
        while time.monotonic() < deadline:
            for component in self.components.values():
                if not pid_alive(component.pid):
                    raise NodeError(f"{component.name} exited during start; log "
                                    f"{component.log}:\n{log_tail(Path(component.log))}")
            if ready():
                return
            time.sleep(0.2)
        name = log or what
        raise NodeError(f"{what} not ready in time; log {self.log_path(name)}:\n"
                        f"{log_tail(self.log_path(name))}")

    def stop(self) -> None:
        """Stop kube-proxy and the kubelet, then containerd (its shims and containers are
        killed by the host clean-up that follows: `nodehost.clean`)."""
        for names in (("kube-proxy", "kubelet"), ("containerd",)):
            running = [self.components[n] for n in names
                       if n in self.components and self.components[n].alive()]
            if running:
                with ThreadPoolExecutor(len(running)) as pool:
                    list(pool.map(lambda c: stop_group(c.pid, grace=5.0), running))
        self.components.clear()
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / STATE_FILE).unlink()

    def save(self) -> None:
        state = {"components": {name: asdict(c) for name, c in self.components.items()}}
        tmp = self.state_dir / f"{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_dir / STATE_FILE)

    @classmethod
    def load(cls, state_dir: Path) -> Node | None:
        try:
            state = json.loads((Path(state_dir) / STATE_FILE).read_text())
        except FileNotFoundError:
            return None
        node = cls(state_dir)
        node.components = {n: Component(**c) for n, c in state["components"].items()}
        return node

    def alive(self) -> bool:
        return bool(self.components) and all(c.alive() for c in self.components.values())


def _answers(call: Callable[[], Any]) -> bool:
    try:
        call()
    except (containerd.ContainerdError, OSError):
        return False
    return True


def _image_digests() -> dict[str, str]:
    digests = {}
    for line in containerd.ctr("images", "list").splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3:
            digests[fields[0]] = fields[2]
    return digests
