"""Wheels of the project's dependencies, made on this machine for the image builds.

The Dockerfiles install with pip, from PyPI by default. The local build mounts
this wheelhouse into each ``RUN`` and passes ``PIP_NO_INDEX=1`` and
``PIP_FIND_LINKS`` as build arguments, so nothing inside the build reaches an
index: the dependencies of every extra the images install, and the build
backend that ``pip install .`` needs to build the project from its sources.
pip picks wheels for the Python that runs it: the host's CPython is the same
minor version (3.11) on the same glibc as the base image's, so the wheels fit it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mediaimport_dev.imageinputs import Hasher

# What the Dockerfiles install: the base dependencies (job image) and the
# operator and API extras (operator image).
EXTRAS = ("operator", "api")
# Where the local build mounts the wheelhouse in every RUN (read-only).
MOUNT_POINT = "/wheels"


def requirements(pyproject: dict[str, Any]) -> list[str]:
    """The build backend, the base dependencies and those of the images' extras."""
    project = pyproject["project"]
    extras = project.get("optional-dependencies", {})
    found = [
        *pyproject["build-system"]["requires"],
        *project.get("dependencies", []),
        *(requirement for extra in EXTRAS for requirement in extras[extra]),
    ]
    return [str(requirement) for requirement in dict.fromkeys(found)]


def wheelhouse_key(repo: Path) -> str:
    """Content hash of what decides the wheelhouse: pyproject.toml and the Python version."""
    return (
        Hasher("wheelhouse")
        .add_bytes("pyproject", (repo / "pyproject.toml").read_bytes())
        .add_text("extras", ",".join(EXTRAS))
        .add_text("python", f"{sys.version_info.major}.{sys.version_info.minor}")
        .hexdigest()
    )


def build_wheelhouse(
    repo: Path,
    destination: Path,
    *,
    log: Callable[[str], None],
    log_file: Path,
    earlier: Sequence[Path] = (),
) -> None:
    """pip-wheel the dependencies into destination (built atomically: all or nothing).

    Resolved from ``earlier`` wheelhouses alone first: a pyproject change that needs
    no new package (a comment, a looser bound) needs no index. PyPI only otherwise.
    """
    pyproject = tomllib.loads((repo / "pyproject.toml").read_text())
    staging = destination.with_name(destination.name + ".partial")
    log(f"building the wheelhouse for the image builds into {destination}")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    links = [option for path in earlier for option in ("--find-links", str(path))]
    attempts = [["--no-index", *links]] if links else []
    attempts.append(links)
    with log_file.open("w") as output:
        for options in attempts:
            if staging.exists():
                shutil.rmtree(staging)
            staging.mkdir(parents=True)
            # The project itself is built inside the image build, from its sources.
            completed = subprocess.run(
                [
                    sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check",
                    "--wheel-dir", str(staging), *options, *requirements(pyproject),
                ],
                cwd=staging, stdout=output, stderr=subprocess.STDOUT, timeout=1800, check=False,
            )
            if completed.returncode == 0:
                break
    if completed.returncode != 0:
        tail = log_file.read_text()[-3000:]
        raise RuntimeError(f"pip wheel failed ({completed.returncode}); see {log_file}:\n{tail}")
    if destination.exists():
        shutil.rmtree(destination)
    staging.replace(destination)
