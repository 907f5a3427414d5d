"""Static checks of job-image/Dockerfile (Docker cannot run here: this reads the file,
it does not build the image)."""

from __future__ import annotations

import json
import re
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parents[2] / "job-image" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_slim_debian_base() -> None:
    bases = [arg for op, arg in instructions() if op == "FROM"]
    assert bases and all("slim-bookworm" in base for base in bases)


def test_ffmpeg_from_debian_without_recommends() -> None:
    runs = " ".join(arg for op, arg in instructions() if op == "RUN")
    assert re.search(r"apt-get install -y --no-install-recommends [^&]*\bffmpeg\b", runs)
    assert "ca-certificates" in runs  # TLS to origins needs the CA bundle
    assert "rm -rf /var/lib/apt/lists" in runs


def test_runs_as_a_numeric_non_root_user() -> None:
    users = [arg for op, arg in instructions() if op == "USER"]
    assert users, "no USER instruction"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0


def test_entrypoint_is_the_console_script() -> None:
    entrypoints = [arg for op, arg in instructions() if op == "ENTRYPOINT"]
    assert [json.loads(entrypoints[-1])] == [["mediaimport-job"]]


def test_read_only_root_filesystem_friendly() -> None:
    env = " ".join(arg for op, arg in instructions() if op == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "TMPDIR=/tmp" in env


def test_installs_only_the_base_dependencies() -> None:
    runs = " ".join(arg for op, arg in instructions() if op == "RUN")
    assert "pip install" in runs and "[" not in runs.split("pip install", 1)[1].split("&&")[0]
