"""What the node changes on this machine outside its own directories, and how it is undone.

A kubelet and containerd use some fixed host paths whatever they are configured with
(FIXED_PATHS), set kernel sysctls (the kubelet's kernel tunables), create cgroups under
``kubepods`` in every hierarchy and mount overlays, tmpfs volumes and network namespaces.
So one node at a time runs on a machine: `MachineLock` serialises them (a second stack
waits, saying who holds the node). `record()` notes the host's sysctls and which fixed
paths existed before the node starts; `clean()` stops whatever node processes remain,
unmounts, removes the cgroups, the network and the paths the node created, and puts the
sysctls back. `clean()` also works after a node was killed without `down`: the record
outlives the processes (RUN_DIR), and the next `up` calls it first.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mediaimport_dev import nodenet

LOCK_PATH = Path("/run/lock/mediaimport-node.lock")
# Runtime state of the one node on this machine: containerd's socket and state, the record.
RUN_DIR = Path("/run/mediaimport-node")
# The kubelet's root directory (pod volumes, plugin sockets); unix socket paths under it
# must stay short, so it is not under a stack's (possibly deep) home directory.
DATA_DIR = Path("/var/lib/mediaimport-node")
RECORD = RUN_DIR / "host.json"
# Paths the kubelet, containerd and the CNI plugins create whatever their configuration.
FIXED_PATHS = (
    Path("/var/lib/kubelet"),
    Path("/var/log/pods"),
    Path("/var/log/containers"),
    Path("/usr/libexec/kubernetes"),
    Path("/var/lib/cni"),
    Path("/run/containerd"),
    Path("/run/netns"),
    RUN_DIR,
    DATA_DIR,
)
# The kubelet sets these kernel tunables (container_manager_linux.go); `ip_forward` is
# per network namespace and set only in the node's, but is watched here as well.
SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
)
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PARENT = "kubepods"


class NodeBusyError(RuntimeError):
    """Another stack's node holds the machine and did not let go in time."""


class MachineLock:
    """An exclusive flock on LOCK_PATH: one local node per machine.

    The lock file is never deleted (a waiter would then lock a file nobody else sees).
    `holder()` is what the current holder wrote into it.
    """

    def __init__(self) -> None:
        self.fd: int | None = None

    def acquire(self, *, owner: str, timeout: float, echo: Callable[[str], None]) -> None:
        LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + timeout
        told = 0.0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                if now > deadline:
                    os.close(fd)
                    raise NodeBusyError(
                        f"another local node still runs on this machine after "
                        f"{timeout:.0f} s ({self.holder()}); stop it with "
                        "`mediaimport-dev --home <its home> down`"
                    ) from None
                if now - told > 60:
                    echo(f"mediaimport-dev: waiting for the machine's one local node: "
                         f"{self.holder()} (a lock on {LOCK_PATH})")
                    told = now
                time.sleep(0.5)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{owner}\n".encode(), 0)
        self.fd = fd

    def try_acquire(self, *, owner: str) -> bool:
        """Take the lock if nobody holds it; never waits."""
        try:
            self.acquire(owner=owner, timeout=0, echo=lambda _: None)
        except NodeBusyError:
            return False
        return True

    @staticmethod
    def holder() -> str:
        try:
            return LOCK_PATH.read_text().strip() or "unknown holder"
        except OSError:
            return "unknown holder"

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


HOLDER_MARK = "mediaimport-node-lock"


def is_lock_holder(pid: int) -> bool:
    """pid is alive and is a lock holder (not a recycled pid)."""
    try:
        return HOLDER_MARK.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def spawn_lock_holder(lock: MachineLock, log: Path) -> int:
    """A small process that keeps the machine lock while a detached node runs.

    The process that ran `up` exits; this one inherits the locked file and holds it until
    `down` stops it (or it is killed, in which case the next `up` cleans up first).
    """
    assert lock.fd is not None
    os.set_inheritable(lock.fd, True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", "import signal; signal.pause()", HOLDER_MARK],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            pass_fds=(lock.fd,), start_new_session=True,
        )
    return process.pid


# -- the record ---------------------------------------------------------------------


def read_sysctls(names: Iterable[str] = SYSCTLS) -> dict[str, str]:
    values = {}
    for name in names:
        with contextlib.suppress(OSError):
            values[name] = (Path("/proc/sys") / name).read_text().strip()
    return values


def record() -> None:
    """Note the host's sysctls and the fixed paths that exist, before the node starts."""
    created = [str(p) for p in FIXED_PATHS if not p.exists()]
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    state = {"sysctls": read_sysctls(), "created": created}
    tmp = RECORD.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(RECORD)


def _load_record() -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(RECORD.read_text())
    except (OSError, ValueError):
        return None
    return state


# -- clean-up -----------------------------------------------------------------------


def node_pids() -> list[int]:
    """Processes of the node: in its network namespace (kubelet, containerd and its
    shims, kube-proxy) or in a pod's cgroup (the containers)."""
    inode = nodenet.netns_inode()
    pids: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if inode is not None and (entry / "ns" / "net").stat().st_ino == inode:
                pids.add(int(entry.name))
    for procs in _kubepods_dirs("cgroup.procs"):
        with contextlib.suppress(OSError):
            pids.update(int(line) for line in procs.read_text().split())
    pids.discard(os.getpid())
    return sorted(pids)


def _kubepods_dirs(leaf: str = "") -> list[Path]:
    found: list[Path] = []
    if not CGROUP_ROOT.is_dir():
        return found
    for hierarchy in CGROUP_ROOT.iterdir():
        top = hierarchy / CGROUP_PARENT
        if top.is_dir():
            found += [d / leaf if leaf else d for d in [top, *top.rglob("*")] if d.is_dir()]
    return found


def kill_node_processes(timeout: float = 10.0) -> None:
    for pid in node_pids():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while node_pids() and time.monotonic() < deadline:
        time.sleep(0.1)


def _mount_points() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # mountinfo escapes space, tab, newline and backslash as octal (\040 ...).
        points.append(line.split()[4].encode().decode("unicode_escape"))
    return points


def node_mounts(roots: Iterable[Path]) -> list[str]:
    """Mount points at or under roots, deepest first."""
    names = [str(r).rstrip("/") for r in roots]
    inside = {m for m in _mount_points()
              if any(m == r or m.startswith(r + "/") for r in names)}
    return sorted(inside, key=lambda m: m.count("/"), reverse=True)


def unmount_all(roots: Iterable[Path]) -> None:
    roots = list(roots)
    # A point can carry several stacked mounts: repeat until none is left.
    for _ in range(5):
        mounts = node_mounts(roots)
        if not mounts:
            return
        for point in mounts:
            subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)


def remove_cgroups() -> None:
    for directory in sorted(_kubepods_dirs(), key=lambda d: len(d.parts), reverse=True):
        with contextlib.suppress(OSError):
            directory.rmdir()


def restore_sysctls(values: dict[str, str]) -> None:
    for name, value in values.items():
        path = Path("/proc/sys") / name
        with contextlib.suppress(OSError):
            if path.read_text().strip() != value:
                path.write_text(value)


def clean(own_dirs: Iterable[Path] = ()) -> None:
    """Undo everything a node (running, stopped or killed) left on this machine.

    own_dirs: the node's own directories (containerd's root...): whatever is mounted
    under them is the node's. Of the fixed paths, only those the node created are
    touched: a pre-existing /run/netns or /run/containerd may hold another runtime's.
    """
    kill_node_processes()
    state = _load_record() or {"sysctls": {}, "created": []}
    created = [Path(p) for p in state["created"]]
    nodenet.delete()
    unmount_all([*own_dirs, RUN_DIR, DATA_DIR, *created])
    remove_cgroups()
    restore_sysctls(state["sysctls"])
    for path in sorted(created, key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    shutil.rmtree(DATA_DIR, ignore_errors=True)
