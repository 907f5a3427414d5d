"""buildah with the local stack's own image store.

The store lives in the cache, not in ``/var/lib/containers``: the locally made
base carries the name of Docker Hub's Python image, and that name must not shadow
the real one for anything else on this machine. Every container runs with runc;
crun refuses this machine's hybrid cgroup layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUNC = "/usr/sbin/runc"


class BuildahError(RuntimeError):
    """A buildah command failed; the message carries its output."""


@dataclass(frozen=True)
class Buildah:
    root: Path
    runroot: Path

    @classmethod
    def under(cls, images_dir: Path) -> Buildah:
        """The store under images_dir; its run-time state on tmpfs, gone after a reboot
        like the mounts it describes."""
        root = images_dir / "storage"
        tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
        runtime = Path("/run") if os.access("/run", os.W_OK) else images_dir
        return cls(root=root, runroot=runtime / "mediaimport-buildah" / tag)

    def argv(self, *args: str) -> list[str]:
        executable = shutil.which("buildah")
        if executable is None:
            raise BuildahError("buildah is not installed; run scripts/setup.sh")
        return [
            executable,
            "--root",
            str(self.root),
            "--runroot",
            str(self.runroot),
            "--storage-driver",
            "overlay",
            *args,
        ]

    def run(self, *args: str, timeout: float = 900, quiet: bool = True) -> str:
        """Run a buildah subcommand; return its stdout, raise with its output on failure."""
        completed = subprocess.run(
            self.argv(*args),
            capture_output=quiet,
            text=True,
            timeout=timeout,
            check=False,
        )
        if completed.returncode != 0:
            detail = (completed.stderr or "").strip()[-4000:] if quiet else ""
            raise BuildahError(f"buildah {args[0]} failed ({completed.returncode}): {detail}")
        return completed.stdout or ""

    def image_info(self, name: str) -> dict[str, Any] | None:
        """The store's record of an image (``id``, ``size``, ``names``), or None if absent."""
        try:
            listing = json.loads(self.run("images", "--json", name) or "[]")
        except BuildahError:
            return None
        return dict(listing[0]) if listing else None

    def release(self) -> None:
        """Remove working containers and unmount the store, so its directory can be deleted
        (the overlay driver keeps its own directory bind-mounted)."""
        self.run("rm", "--all")
        root = str(self.root.resolve())
        mounts = [
            line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1] == root or line.split()[1].startswith(root + "/")
        ]
        for mountpoint in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", mountpoint], check=False, timeout=60)

    def image_size(self, name: str) -> int:
        """Bytes of the image unpacked: the store keeps its layers uncompressed, with sizes."""
        inspected = json.loads(self.run("inspect", "--type", "image", name))
        layers = json.loads(inspected["Manifest"])["layers"]
        return sum(int(layer["size"]) for layer in layers)

    def exec_in(self, image: str, command: Sequence[str], *, timeout: float = 120) -> str:
        """Run a command in a throw-away container of image (no kubelet needed)."""
        container = self.run("from", "--pull=never", image).strip()
        try:
            return self.run(
                "run", "--runtime", RUNC, "--network", "none", container, "--", *command,
                timeout=timeout,
            )
        finally:
            self.run("rm", container)
