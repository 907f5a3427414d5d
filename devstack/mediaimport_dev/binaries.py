"""Locates the pinned binaries that `scripts/build-binaries.sh` builds and caches."""

from __future__ import annotations

import os
from pathlib import Path


class MissingBinaryError(RuntimeError):
    """A pinned binary has not been built on this machine yet."""


def cache_root() -> Path:
    """The cache shared with the build script (kept outside the repository)."""
    explicit = os.environ.get("MEDIAIMPORT_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "mediaimport"


def binary(name: str) -> Path:
    """Path of a cached binary such as ``kube-apiserver``, ``etcd`` or ``versitygw``."""
    path = cache_root() / "bin" / name
    if not os.access(path, os.X_OK):
        raise MissingBinaryError(
            f"{name} is not built yet (looked for {path}); run scripts/setup.sh "
            f"(or scripts/build-binaries.sh) first"
        )
    return path
