"""The operator when its connection to the API server breaks or hangs (a loopback proxy in
front of the real API server drops or holds what goes through), and its background loops."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from urllib.parse import urlsplit

import psycopg
import pytest
import yaml
from conftest import Env, OperatorProcess, eventually, new_name
from psycopg.types.json import Jsonb
from support.faultproxy import FaultProxy, fault_proxy

pytestmark = pytest.mark.e2e


@pytest.fixture
def proxy(env: Env) -> Iterator[FaultProxy]:
    config = yaml.safe_load(env.plane.kubeconfig.read_text())
    server = urlsplit(config["clusters"][0]["cluster"]["server"])
    assert server.hostname and server.port
    with fault_proxy((server.hostname, server.port)) as running:
        yield running


def through(env: Env, proxy: FaultProxy) -> str:
    """A kubeconfig of the admin user whose server is the proxy."""
    config = yaml.safe_load(env.plane.kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://{proxy.host}:{proxy.port}"
    path = env.tmp / f"proxied-{proxy.port}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def logged_at(op: OperatorProcess, message: str) -> datetime:
    """When ``op`` logged ``message`` (its JSON records carry the time)."""
    record = next(r for r in op.log_records() if r.get("message") == message)
    return datetime.fromisoformat(record["timestamp"])


def exited(op: OperatorProcess, *, timeout: float) -> int:
    assert op.process is not None
    eventually(lambda: op.process is not None and op.process.poll() is not None,
               timeout=timeout, what="the operator to exit")
    return op.process.returncode


def test_a_dropped_connection_during_renewal_ends_leadership_and_the_process(
    env: Env, proxy: FaultProxy
) -> None:
    leader = env.start_operator(KUBECONFIG=through(env, proxy))
    eventually(lambda: "became the leader" in leader.log(), timeout=30, what="a leader")
    proxy.drop()  # every request now ends with the connection closed under it
    # The renew deadline is 4 s: the leader stops well before its lease (6 s) could pass on.
    code = exited(leader, timeout=20)
    log = leader.log()
    assert code == 1, log[-3000:]
    assert "lost the leader lease" in log
    assert proxy.dropped > 0
    assert "ServerDisconnectedError" in log or "Server disconnected" in log, log[-3000:]


def test_a_renewal_that_hangs_ends_leadership_before_a_standby_takes_over(
    env: Env, proxy: FaultProxy
) -> None:
    leader = env.start_operator(KUBECONFIG=through(env, proxy), MEDIAIMPORT_API_TIMEOUT="30")
    eventually(lambda: "became the leader" in leader.log(), timeout=30, what="a leader")
    standby = env.start_operator()  # straight to the API server
    eventually(lambda: "standing by" in standby.log(), timeout=30, what="a standby")
    proxy.hold()  # the renewal's request is sent and never answered
    eventually(lambda: "became the leader" in standby.log(), timeout=40,
               what="the standby to take over")
    assert exited(leader, timeout=40) == 1
    stopped = logged_at(leader, "lost the leader lease: stopping")
    took_over = logged_at(standby, "became the leader")
    assert stopped < took_over, (stopped, took_over)


def _orphan_row(env: Env) -> str:
    """An uploading row whose MediaImport never existed (deleted while unobserved)."""
    asset = str(uuid.uuid4())
    ref = {"namespace": env.namespace, "name": new_name("gone"), "uid": str(uuid.uuid4())}
    with psycopg.connect(env.postgres.url, autocommit=True, connect_timeout=3) as conn:
        conn.execute(
            "INSERT INTO media_assets (id, user_id, name, status, file_metadata)"
            " VALUES (%s, 'user-1', 'gone.png', 'uploading', %s)",
            (asset, Jsonb({"mediaimport": ref})),
        )
    return asset


def test_the_orphan_sweep_survives_a_dropped_connection(env: Env, proxy: FaultProxy) -> None:
    op = env.start_operator(KUBECONFIG=through(env, proxy), MEDIAIMPORT_LEADER_ELECTION="false",
                            MEDIAIMPORT_ORPHAN_SWEEP_INTERVAL="1")
    # One import first: the operator's client then holds open connections, which the
    # proxy closes under the sweep's next request.
    clip = env.origin.add(env.media.path("image.png"), "sweep.png")
    name = new_name("sweep")
    env.create(name, url=env.url(f"/files/{clip}"))
    assert env.wait_phase(name, "Ready", "Failed")["status"]["phase"] == "Ready"
    proxy.drop()
    asset = _orphan_row(env)
    eventually(lambda: proxy.dropped > 0, timeout=20, what="a request to be dropped")
    time.sleep(3)  # a few sweeps (one a second) meet the dropped connections
    proxy.heal()
    row = eventually(lambda: (r := env.row(asset)) and r["status"] == "failed" and r,
                     timeout=30, what="the sweep to cancel the orphaned row")
    assert row["file_metadata"]["error"]["reason"] == "Cancelled"
    health = op.health()
    assert health["status"] == "ok"
    assert health["loops"]["orphan-sweep"] == "running", json.dumps(health)
