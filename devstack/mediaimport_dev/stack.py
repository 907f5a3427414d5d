"""The local stack as a list of components, each started, checked and stopped the same way.

`mediaimport-dev up` claims the machine and makes the node's network first (`network`),
then starts the control plane and the node, Postgres and S3 concurrently, then every
extension in EXTENSIONS in order, with everything the earlier ones provide in a
StackContext. State goes to `<home>/stack.json`, so `status`, `env`, `logs` and `down`
work from any process.

The operator and the API are one extension: the chart's Helm release (release.py), so the
local stack runs what `helm install` gives users. Extension point: a `Component` added to
EXTENSIONS (see the protocol below) is covered by `up`, `status`, `down` and `logs <name>`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mediaimport_dev import certs, cluster, nodehost, nodenet
from mediaimport_dev.controlplane import NODE_HOST, ControlPlane
from mediaimport_dev.images import PAUSE_IMAGE, job_image
from mediaimport_dev.kube import Kube
from mediaimport_dev.node import NODE_NAME, Node, node_ready
from mediaimport_dev.postgres import PostgresServer
from mediaimport_dev.processes import stop_group
from mediaimport_dev.s3server import S3Server

STATE_FILE = "stack.json"
DEFAULT_BUCKET = "mediaimport"
# Where sources may come from: this machine's end of the node's veth, where local
# origins listen (MEDIAIMPORT_ORIGIN_HOST).
ORIGIN_HOST = nodenet.HOST_IP
DEFAULT_NETWORKS = (f"{ORIGIN_HOST}/32",)

State = dict[str, Any]


def default_home() -> Path:
    return Path(os.environ.get("MEDIAIMPORT_DEV_HOME") or Path.cwd() / ".mediaimport-dev")


@dataclass
class StackContext:
    """What the base components provide to the ones started after them."""

    home: Path
    allow_networks: list[str]
    bucket: str = DEFAULT_BUCKET
    # Environment for processes of the stack (KUBECONFIG, DATABASE_URL, AWS_*, ...).
    env: dict[str, str] = field(default_factory=dict)
    # Image name -> OCI archive of the images the node runs (the job's among them).
    images: dict[str, Path] = field(default_factory=dict)


class Component(Protocol):
    name: str

    def up(self, ctx: StackContext) -> State:
        """Start; return what down/healthy/describe need (JSON-serialisable)."""

    def down(self, state: State) -> None: ...

    def healthy(self, state: State) -> bool: ...

    def describe(self, state: State) -> str:
        """One line for `status`: pids, ports, URLs."""

    def log_path(self, state: State) -> Path | None: ...


class NetworkComponent:
    """The machine's one-node lock (kept by a holder process), the host clean-up and
    record, and the node's network namespace and veth."""

    name = "network"

    def up(self, ctx: StackContext) -> State:
        lock = nodehost.MachineLock()
        cluster.claim_machine(lock, owner=f"mediaimport-dev up (pid {os.getpid()}), "
                              f"home {ctx.home}")
        try:
            holder = nodehost.spawn_lock_holder(lock, ctx.home / "network" / "lock.log")
        finally:
            lock.release()
        return {"lock_holder": holder, "log": str(ctx.home / "network" / "lock.log")}

    def down(self, state: State) -> None:
        holder = state["lock_holder"]
        if nodehost.is_lock_holder(holder):
            cluster.release_machine(None)
            stop_group(holder, grace=2.0)
            return
        # The holder is gone (killed): clean up only if no other stack has the machine
        # meanwhile (it cleaned up what this one left when it started).
        lock = nodehost.MachineLock()
        if lock.try_acquire(owner=f"mediaimport-dev down (pid {os.getpid()})"):
            cluster.release_machine(lock)

    def healthy(self, state: State) -> bool:
        return nodehost.is_lock_holder(state["lock_holder"]) and nodenet.exists()

    def describe(self, state: State) -> str:
        return (f"netns {nodenet.NETNS}: this machine {nodenet.HOST_IP} (dev {nodenet.HOST_IF})"
                f" <-> node {nodenet.NODE_IP}; pods {nodenet.POD_CIDR}, services "
                f"{nodenet.SERVICE_CIDR}; lock held by pid {state['lock_holder']}")

    def log_path(self, state: State) -> Path | None:
        return Path(state["log"])


class ControlPlaneComponent:
    name = "controlplane"

    def up(self, ctx: StackContext) -> State:
        plane = ControlPlane(ctx.home / "controlplane", detached=True, host=NODE_HOST)
        plane.start()
        return {"dir": str(plane.state_dir)}

    def _plane(self, state: State) -> ControlPlane | None:
        return ControlPlane.load(Path(state["dir"]))

    def down(self, state: State) -> None:
        plane = self._plane(state)
        if plane is not None:
            plane.stop()

    def healthy(self, state: State) -> bool:
        plane = self._plane(state)
        return plane is not None and plane.healthy()

    def describe(self, state: State) -> str:
        plane = self._plane(state)
        if plane is None:
            return "not running"
        parts = [f"{c.name} pid {c.pid} ports {c.ports}" for c in plane.components.values()]
        return f"{plane.server}; " + "; ".join(parts)

    def log_path(self, state: State) -> Path | None:
        return Path(state["dir"]) / "logs"


class NodeComponent:
    name = "node"

    def up(self, ctx: StackContext) -> State:
        plane_dir = ctx.home / "controlplane"
        plane = ControlPlane.load(plane_dir)
        assert plane is not None, "the control plane starts first"
        node = Node(ctx.home / "node")
        state = {"dir": str(node.state_dir), "kubeconfig": str(plane.kubeconfig)}
        node.start(server=plane.server, pki=certs.load(plane.pki), pause_image=PAUSE_IMAGE,
                   images=ctx.images)
        return state

    def down(self, state: State) -> None:
        node = Node.load(Path(state["dir"]))
        if node is not None:
            node.stop()

    def healthy(self, state: State) -> bool:
        node = Node.load(Path(state["dir"]))
        return (node is not None and node.alive()
                and node_ready(Kube.from_kubeconfig(state["kubeconfig"])))

    def describe(self, state: State) -> str:
        node = Node.load(Path(state["dir"]))
        if node is None:
            return "not running"
        parts = [f"{c.name} pid {c.pid}" for c in node.components.values()]
        return f"{NODE_NAME} at {nodenet.NODE_IP}; " + "; ".join(parts)

    def log_path(self, state: State) -> Path | None:
        return Path(state["dir"]) / "logs"


class PostgresComponent:
    name = "postgres"

    def up(self, ctx: StackContext) -> State:
        # Also on the node's veth: a pod (the operator run in the cluster) reaches it.
        server = PostgresServer(ctx.home / "postgres", extra_hosts=[ORIGIN_HOST],
                                trusted_networks=[nodenet.LINK_CIDR])
        server.start()
        return server.to_state()

    def down(self, state: State) -> None:
        PostgresServer.from_state(state).stop()

    def healthy(self, state: State) -> bool:
        return PostgresServer.from_state(state).running()

    def describe(self, state: State) -> str:
        server = PostgresServer.from_state(state)
        return f"pid {server.pid}, {server.url}"

    def log_path(self, state: State) -> Path | None:
        return PostgresServer.from_state(state).log_path


class S3Component:
    name = "s3"

    def up(self, ctx: StackContext) -> State:
        # On the node's veth: the import Jobs' pods upload to it.
        server = S3Server(ctx.home / "s3", host=ORIGIN_HOST)
        server.start()
        server.create_bucket(ctx.bucket)
        return server.to_state()

    def down(self, state: State) -> None:
        S3Server.from_state(state).stop()

    def healthy(self, state: State) -> bool:
        return S3Server.from_state(state).running()

    def describe(self, state: State) -> str:
        server = S3Server.from_state(state)
        return f"pid {server.pid}, {server.endpoint_url}"

    def log_path(self, state: State) -> Path | None:
        return S3Server.from_state(state).log_path


BASE: list[Component] = [
    NetworkComponent(), ControlPlaneComponent(), NodeComponent(), PostgresComponent(),
    S3Component(),
]
# Started after the base, in this order, stopped before it: the operator and the API as
# the chart installs them.
EXTENSIONS: list[Component] = []

from mediaimport_dev.release import ReleaseComponent  # noqa: E402 - needs Component

EXTENSIONS.append(ReleaseComponent())


def components() -> list[Component]:
    return [*BASE, *EXTENSIONS]


def base_env(home: Path, states: dict[str, State], bucket: str, networks: list[str],
             images: dict[str, Path]) -> dict[str, str]:
    env = {"KUBECONFIG": str(home / "controlplane" / "kubeconfig")}
    if "postgres" in states:
        postgres = PostgresServer.from_state(states["postgres"])
        env["DATABASE_URL"] = postgres.url
        env.update(postgres.libpq_env())
    if "s3" in states:
        env.update(S3Server.from_state(states["s3"]).env())
    env["MEDIAIMPORT_BUCKET"] = bucket
    env["MEDIAIMPORT_ALLOWED_NETWORKS"] = ",".join(networks)
    env["MEDIAIMPORT_ORIGIN_HOST"] = ORIGIN_HOST
    if images:
        env["MEDIAIMPORT_JOB_IMAGE"] = job_image(images)
    return env


class Stack:
    """The stack recorded under one home directory."""

    def __init__(self, home: Path) -> None:
        self.home = home.resolve()
        self.state_file = self.home / STATE_FILE

    def load(self) -> State | None:
        try:
            state: State = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None
        return state

    def _save(self, state: State) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    def health(self) -> dict[str, bool]:
        state = self.load() or {}
        recorded = state.get("components", {})
        return {c.name: c.name in recorded and c.healthy(recorded[c.name]) for c in components()}

    def env(self) -> dict[str, str]:
        state = self.load()
        if state is None:
            raise RuntimeError(f"the stack is not up (no {self.state_file})")
        return dict(state["env"])

    def up(self, *, allow_networks: list[str], bucket: str = DEFAULT_BUCKET,
           echo: Any = print) -> None:
        """Start a fresh stack (the caller checks whether one is already up)."""
        self.down()
        for name in (*(c.name for c in BASE), *(c.name for c in EXTENSIONS)):
            shutil.rmtree(self.home / name, ignore_errors=True)
        self.home.mkdir(parents=True, exist_ok=True)
        _make_traversable(self.home)
        started = time.monotonic()
        images = cluster.node_images()
        ctx = StackContext(self.home, allow_networks, bucket, images=images)
        state: State = {"components": {}, "allow_networks": allow_networks, "bucket": bucket,
                        "env": {}}
        recorded: dict[str, State] = state["components"]
        # The state file is written before anything starts, and after each part,
        # so `down` can always clean up, even after a failed or interrupted `up`.
        self._save(state)
        ctx.env = base_env(self.home, {}, bucket, allow_networks, images)
        network, control, node, postgres, s3 = BASE

        def kubernetes() -> None:
            recorded[control.name] = control.up(ctx)
            self._save(state)
            recorded[node.name] = node.up(ctx)

        def service(component: Component) -> None:
            recorded[component.name] = component.up(ctx)

        try:
            recorded[network.name] = network.up(ctx)
            self._save(state)
            with ThreadPoolExecutor(3) as pool:
                futures = [pool.submit(kubernetes), pool.submit(service, postgres),
                           pool.submit(service, s3)]
            self._save(state)
            for future in futures:
                future.result()  # the first failure, if any, with its own traceback
            ctx.env = base_env(self.home, recorded, bucket, allow_networks, images)
            state["env"] = ctx.env
            self._save(state)
            for extension in EXTENSIONS:
                recorded[extension.name] = extension.up(ctx)
                self._save(state)
        except BaseException:
            self._save(state)
            self.down()
            raise
        echo(f"mediaimport-dev: up in {time.monotonic() - started:.1f} s (state {self.home})")

    def down(self) -> list[str]:
        """Stop everything recorded; returns the names stopped. Idempotent."""
        state = self.load()
        if state is None:
            return []
        recorded = state.get("components", {})
        stopped = []
        for component in reversed(components()):
            if component.name in recorded:
                component.down(recorded[component.name])
                stopped.append(component.name)
        # A control plane whose `up` was interrupted before it was recorded.
        leftover = ControlPlane.load(self.home / "controlplane")
        if leftover is not None:
            leftover.stop()
        self.state_file.unlink(missing_ok=True)
        return stopped


def _make_traversable(home: Path) -> None:
    # Postgres runs as the `postgres` user when we are root, and must reach its
    # data directory under home.
    if os.geteuid() != 0:
        return
    for parent in [home, *home.parents]:
        if parent == Path("/"):
            break
        mode = parent.stat().st_mode
        if mode & 0o005 != 0o005:
            parent.chmod(mode | 0o005)

