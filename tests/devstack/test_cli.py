"""`mediaimport-dev up` / `env` / `status` / `down`, run as the console script, and what the
node leaves on this machine: nothing, after `down` or after being killed and started again."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from mediaimport_dev import nodehost, nodenet
from mediaimport_dev.binaries import binary
from mediaimport_dev.processes import pid_alive
from support.hoststate import machine_to_myself, snapshot

# These start stacks of their own: they run before the session's cluster exists.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.ownnode]

CLI = str(Path(sys.executable).parent / "mediaimport-dev")


@pytest.fixture
def homes() -> Iterator[Path]:
    """Where the stacks keep their state: not under pytest's temp root, whose mode any
    pytest session starting on this machine resets to 0700 (Postgres runs as `postgres`)."""
    root = Path(tempfile.mkdtemp(prefix="mediaimport-stacks-"))
    root.chmod(0o755)
    yield root
    # A test that failed half-way leaves its stacks up, and with them the machine's node:
    # every later test would wait for it.
    for state in root.glob("*/stack.json"):
        run(state.parent, "down")
    shutil.rmtree(root, ignore_errors=True)


def run(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "--home", str(home), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def recorded_pids(home: Path) -> list[int]:
    state = json.loads((home / "stack.json").read_text())["components"]
    pids = [state["network"]["lock_holder"]]
    for part, file in (("controlplane", "controlplane.json"), ("node", "node.json")):
        recorded = json.loads((home / part / file).read_text())
        pids += [c["pid"] for c in recorded["components"].values()]
    return pids + [s["pid"] for name, s in state.items() if "pid" in s]


def parse_exports(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = shlex.split(value)[0]
    return env


def kubectl(env: dict[str, str], *args: str) -> str:
    return subprocess.run([str(binary("kubectl")), *args], env={**os.environ, **env},
                          capture_output=True, text=True, check=True, timeout=120).stdout


def start_a_pod(env: dict[str, str]) -> None:
    """A pod left running: its shim, mounts, cgroups and NAT rules are what a kill leaves."""
    kubectl(env, "run", "sleeper", f"--image={env['MEDIAIMPORT_JOB_IMAGE']}",
            "--image-pull-policy=Never",
            "--restart=Never", "--command", "--", "sleep", "3600")
    kubectl(env, "wait", "--for=condition=Ready", "pod/sleeper", "--timeout=120s")


def the_release_runs_the_operator_and_the_api(home: Path, env: dict[str, str]) -> None:
    """The chart as users get it: a helm release, its pods, the API reached from here."""
    assert "release" in run(home, "status").stdout
    releases = json.loads(subprocess.run(
        [str(binary("helm")), "list", "-n", "default", "-o", "json"], env={**os.environ, **env},
        capture_output=True, text=True, check=True, timeout=60).stdout)
    assert [(r["name"], r["status"]) for r in releases] == [("mediaimport", "deployed")]
    listed = json.loads(kubectl(env, "get", "pods", "-n", "default", "-o", "json", "-l",
                                "app.kubernetes.io/instance=mediaimport"))["items"]
    pods = [f"{p['metadata']['labels']['app.kubernetes.io/component']}={p['status']['phase']}"
            for p in listed]
    assert sorted(pods) == ["api=Running", "operator=Running", "operator=Running"]
    assert env["MEDIAIMPORT_API_USER"] == "dev-user"
    api = env["MEDIAIMPORT_API_URL"]
    mine = requests.get(f"{api}/api/v1/media", timeout=10,
                        headers={"Authorization": f"Bearer {env['MEDIAIMPORT_API_TOKEN']}"})
    assert mine.status_code == 200, mine.text
    # The API's Service port (an Ingress's) does not serve readiness or metrics: the admin
    # port does (`up` again and `status` find the stack healthy through it).
    for path in ("/readyz", "/metrics"):
        assert requests.get(f"{api}{path}", timeout=10).status_code == 404, path
    made = run(home, "token", "alice@example.com")
    assert made.returncode == 0, made.stderr
    alice = requests.post(f"{api}/api/v1/media/import-from-url", timeout=10,
                          headers={"Authorization": f"Bearer {made.stdout.strip()}"},
                          json={"url": f"http://{nodenet.HOST_IP}:9/x.mp4"})
    assert alice.status_code == 202, alice.text  # printed once it works: no wait here
    refused = run(home, "token", "../root")
    assert refused.returncode == 2 and "not a valid user id" in refused.stderr
    logs = run(home, "logs", "release").stdout
    assert "operator.log" in logs and "became the leader" in logs
    assert "api.log" in logs and "mediaimport API started" in logs


def test_token_needs_a_running_stack(homes: Path) -> None:
    answer = run(homes / "none", "token", "bob")
    assert answer.returncode == 1 and "not up" in answer.stderr


def test_up_env_down_leaves_the_host_as_it_was(homes: Path) -> None:
    home = homes / "home"
    with machine_to_myself():
        before = snapshot()
    up = run(home, "up", "--allow-network", f"{nodenet.HOST_IP}/32",
             "--allow-network", "10.1.2.0/24")
    assert up.returncode == 0, up.stdout + up.stderr
    again = run(home, "up", "--allow-network", f"{nodenet.HOST_IP}/32",
                "--allow-network", "10.1.2.0/24")
    assert "already up" in again.stdout

    status = run(home, "status")
    assert status.returncode == 0, status.stdout
    env = parse_exports(run(home, "env").stdout)
    assert {"KUBECONFIG", "DATABASE_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "MEDIAIMPORT_BUCKET"} <= set(env)
    assert env["MEDIAIMPORT_ALLOWED_NETWORKS"] == f"{nodenet.HOST_IP}/32,10.1.2.0/24"
    assert env["MEDIAIMPORT_ORIGIN_HOST"] == nodenet.HOST_IP
    assert env["AWS_ENDPOINT_URL_S3"].startswith(f"http://{nodenet.HOST_IP}:")
    assert kubectl(env, "get", "nodes", "-o", "name").strip() == "node/mediaimport-node"
    psql = subprocess.run(["psql", "-Atc", "select current_user, current_database()"],
                          env={**os.environ, **env}, capture_output=True, text=True,
                          check=False)
    assert psql.stdout.strip() == "mediaimport|mediaimport", psql.stderr
    assert "kube-apiserver.log" in run(home, "logs", "controlplane").stdout
    assert "kubelet.log" in run(home, "logs", "node").stdout
    the_release_runs_the_operator_and_the_api(home, env)
    start_a_pod(env)

    pids = recorded_pids(home)
    down = run(home, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert [p for p in pids if pid_alive(p)] == []
    assert run(home, "status").returncode != 0
    assert "nothing running" in run(home, "down").stdout
    with machine_to_myself():
        after = snapshot()
    for key, value in before.items():
        assert after[key] == value, key


def test_a_killed_stack_is_cleaned_up_by_the_next_up(homes: Path) -> None:
    with machine_to_myself():
        before = snapshot()
    killed, fresh = homes / "killed", homes / "fresh"
    assert run(killed, "up").returncode == 0
    start_a_pod(parse_exports(run(killed, "env").stdout))
    for pid in recorded_pids(killed):  # a session ending: no `down`
        os.kill(pid, signal.SIGKILL)
    assert nodehost.node_pids(), "the pod's shim and container outlive the kill"

    up = run(fresh, "up")  # another checkout, as CI after such an end
    assert up.returncode == 0, up.stdout + up.stderr
    env = parse_exports(run(fresh, "env").stdout)
    # A fresh cluster: only the pods of its own release, none of the killed stack's.
    pods = kubectl(env, "get", "pods", "-A", "-o", "name").split()
    assert pods and all(p.startswith("pod/mediaimport-") for p in pods), pods
    start_a_pod(env)
    assert run(killed, "down").returncode == 0  # the old state: harmless, the node is fresh's
    assert run(fresh, "status").returncode == 0
    assert run(fresh, "down").returncode == 0
    with machine_to_myself():
        after = snapshot()
    for key, value in before.items():
        assert after[key] == value, key


def test_a_terminated_up_stops_what_it_started_and_frees_the_machine(homes: Path) -> None:
    home = homes / "terminated"
    with machine_to_myself():
        before = snapshot()
    started = subprocess.Popen([CLI, "--home", str(home), "up"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        state = home / "stack.json"
        deadline = time.monotonic() + 300
        while not (state.exists() and "controlplane" in json.loads(state.read_text() or "{}")
                   .get("components", {})):
            assert started.poll() is None and time.monotonic() < deadline, started.stdout
            time.sleep(0.2)
        holder = json.loads(state.read_text())["components"]["network"]["lock_holder"]
        started.send_signal(signal.SIGTERM)  # in the middle of `up`
        output, _ = started.communicate(timeout=120)
    finally:
        started.kill()
    assert started.returncode == 128 + signal.SIGTERM, output
    assert not pid_alive(holder)
    assert not state.exists()
    lock = nodehost.MachineLock()
    assert lock.try_acquire(owner="test"), nodehost.MachineLock.holder()
    lock.release()
    with machine_to_myself():
        after = snapshot()
    for key, value in before.items():
        assert after[key] == value, key


def test_a_second_stack_waits_for_the_machine(homes: Path) -> None:
    with machine_to_myself():
        second = subprocess.Popen([CLI, "--home", str(homes / "second"), "up"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert second.stdout is not None
            line = second.stdout.readline()
            assert "waiting for the machine's one local node" in line, line
            assert "a test taking a host snapshot" in line
            assert second.poll() is None
        finally:
            second.kill()
            second.wait(30)
    run(homes / "second", "down")
