"""containerd for the local node: Debian's 1.6 with runc, started by hand in the node's netns.

Its content store (images, snapshots) lives in the machine's cache (``<cache>/containerd``),
so images imported once are there for the next `up`; its state, socket and shims' runtime
files live under the node's run directory. The CRI plugin is set for this kind of machine:

- ``restrict_oom_score_adj``: without CAP_SYS_RESOURCE every pod sandbox fails with
  "can't get final child's PID from pipe: EOF";
- runc v2 with cgroupfs (``SystemdCgroup = false``): crun rejects the hybrid cgroup layout;
- ``sandbox_image`` is the locally built pause image: no registry is reachable.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from mediaimport_dev import nodehost, nodenet
from mediaimport_dev.binaries import cache_root

NAMESPACE = "k8s.io"  # the CRI plugin's containerd namespace
SOCKET = nodehost.RUN_DIR / "containerd.sock"
STATE_DIR = nodehost.RUN_DIR / "containerd"
RUNC = "/usr/sbin/runc"
CNI_BIN_DIR = "/usr/lib/cni"


class ContainerdError(RuntimeError):
    """containerd or ctr failed (the message carries its output)."""


def root_dir() -> Path:
    return cache_root() / "containerd"


def binary() -> str:
    found = shutil.which("containerd") or "/usr/bin/containerd"
    if not Path(found).exists():
        raise ContainerdError("containerd is not installed; run scripts/setup.sh")
    return found


def config(*, pause_image: str, cni_conf_dir: Path) -> str:
    root = root_dir()
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{root}"
state = "{STATE_DIR}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{SOCKET}"

[ttrpc]
  address = "{SOCKET}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{root / 'opt'}"

[{cri}]
  sandbox_image = "{pause_image}"
  restrict_oom_score_adj = true
  enable_cdi = false
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{RUNC}"
  [{cri}.cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni_conf_dir}"
"""


def cni_config() -> str:
    """The pods' network: a bridge in the node's namespace, addresses from POD_CIDR,
    masqueraded when they leave it (so this machine answers the node's address)."""
    network = {
        "cniVersion": "1.0.0",
        "name": "mediaimport",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "isDefaultGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": nodenet.POD_CIDR}]],
                    "dataDir": str(nodehost.RUN_DIR / "cni-ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(network, indent=2)


def ctr(*args: str, timeout: float = 300) -> str:
    result = subprocess.run(
        ["ctr", "--address", str(SOCKET), "--namespace", NAMESPACE, *args],
        capture_output=True, text=True, check=False, timeout=timeout,
    )
    if result.returncode != 0:
        raise ContainerdError(f"ctr {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def image_names() -> set[str]:
    return {line.strip() for line in ctr("images", "list", "--quiet").splitlines()
            if line.strip()}


def import_image(archive: Path) -> None:
    ctr("images", "import", str(archive))


def remove_all_containers() -> None:
    """Forget the containers a previous node left in the store (their tasks are gone):
    the new cluster's kubelet knows nothing of them."""
    for container in ctr("containers", "list", "--quiet").split():
        ctr("containers", "delete", container)
