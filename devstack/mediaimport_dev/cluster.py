"""A whole local cluster in this process: the machine, the control plane and the node.

The order every user of the node follows (this class for tests; the stack's
components for `mediaimport-dev up`):

1. `claim_machine`: take the machine's one-node lock (waiting, with a message, while
   another stack has it), clean up whatever a node killed without `down` left behind,
   note the host's sysctls and fixed paths, and make the node's network;
2. the control plane (its API server listens on the network's host end);
3. the node, until it is Ready, untainted and lists the images;

and in reverse, `release_machine`, which leaves the host as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

from mediaimport_dev import certs, containerd, lifecycle, nodehost, nodenet
from mediaimport_dev.binaries import cache_root
from mediaimport_dev.controlplane import NODE_HOST, ControlPlane
from mediaimport_dev.images import ensure_images
from mediaimport_dev.kube import Kube
from mediaimport_dev.node import Node

LOCK_TIMEOUT = 3600.0


def node_images() -> dict[str, Path]:
    """The project's images (built when their inputs changed): name -> OCI archive."""
    return {name: image.archive for name, image in ensure_images(cache_root()).items()}


def say(message: str) -> None:
    print(message, flush=True)


def claim_machine(lock: nodehost.MachineLock, *, owner: str, timeout: float = LOCK_TIMEOUT,
                  echo: Callable[[str], None] = say) -> None:
    lock.acquire(owner=owner, timeout=timeout, echo=echo)
    try:
        nodehost.clean(own_dirs=[containerd.root_dir()])
        nodehost.record()
        nodenet.create()
    except BaseException:
        release_machine(lock)
        raise


def release_machine(lock: nodehost.MachineLock | None) -> None:
    nodehost.clean(own_dirs=[containerd.root_dir()])
    if lock is not None:
        lock.release()


class Cluster:
    """images: image name -> OCI archive, imported into containerd unless already there
    (the pause image among them)."""

    def __init__(self, state_dir: Path, *, pause_image: str,
                 images: Mapping[str, Path]) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.pause_image = pause_image
        self.images = dict(images)
        self.plane = ControlPlane(self.state_dir / "controlplane", host=NODE_HOST)
        self.node = Node(self.state_dir / "node")
        self.lock = nodehost.MachineLock()
        self._exit_handle: int | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig

    def kube(self) -> Kube:
        return self.plane.kube()

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self, *, echo: Callable[[str], None] = say) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        claim_machine(self.lock, owner=f"tests, state {self.state_dir}", echo=echo)
        self._exit_handle = lifecycle.on_exit(self.stop)
        try:
            self.plane.start()
            self.node.start(server=self.plane.server, pki=certs.load(self.plane.pki),
                            pause_image=self.pause_image, images=self.images, echo=echo)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._exit_handle is not None:
            lifecycle.cancel(self._exit_handle)
            self._exit_handle = None
        self.node.stop()
        self.plane.stop()
        release_machine(self.lock)
