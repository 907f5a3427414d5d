"""`mediaimport-dev up` / `env` / `status` / `down`, run as the console script."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from mediaimport_dev.binaries import binary
from mediaimport_dev.processes import pid_alive

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CLI = str(Path(sys.executable).parent / "mediaimport-dev")


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "--home", str(home), *args], capture_output=True, text=True,
                          timeout=120, check=False)


def recorded_pids(home: Path) -> list[int]:
    state = json.loads((home / "stack.json").read_text())["components"]
    plane = json.loads((home / "controlplane" / "controlplane.json").read_text())
    pids = [c["pid"] for c in plane["components"].values()]
    return pids + [s["pid"] for name, s in state.items() if name != "controlplane"]


def parse_exports(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = shlex.split(value)[0]
    return env


def test_up_env_down_twice_from_clean_state(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for _ in range(2):
        up = run(home, "up", "--allow-network", "127.0.0.0/8", "--allow-network", "10.1.2.0/24")
        assert up.returncode == 0, up.stdout + up.stderr
        again = run(home, "up", "--allow-network", "127.0.0.0/8", "--allow-network", "10.1.2.0/24")
        assert "already up" in again.stdout

        status = run(home, "status")
        assert status.returncode == 0, status.stdout
        env = parse_exports(run(home, "env").stdout)
        assert {"KUBECONFIG", "DATABASE_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "MEDIAIMPORT_BUCKET"} <= set(env)
        assert env["MEDIAIMPORT_ALLOWED_NETWORKS"] == "127.0.0.0/8,10.1.2.0/24"
        nodes = subprocess.run([str(binary("kubectl")), "get", "nodes", "-o", "name"],
                               env={**os.environ, **env}, capture_output=True, text=True,
                               check=True)
        assert nodes.stdout.strip() == "node/mediaimport-node"
        psql = subprocess.run(["psql", "-Atc", "select current_user, current_database()"],
                              env={**os.environ, **env}, capture_output=True, text=True,
                              check=False)
        assert psql.stdout.strip() == "mediaimport|mediaimport", psql.stderr
        logs = run(home, "logs", "controlplane")
        assert "kube-apiserver.log" in logs.stdout

        pids = recorded_pids(home)
        down = run(home, "down")
        assert down.returncode == 0
        assert [p for p in pids if pid_alive(p)] == []
        assert run(home, "status").returncode != 0
        assert "nothing running" in run(home, "down").stdout
