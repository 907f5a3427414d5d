"""Fixtures of the operator's end-to-end tests: the CRD, the operator as a real process,
media served from an origin pods reach, and helpers to create and wait for MediaImports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from mediaimport_dev import nodenet
from mediaimport_dev.binaries import binary
from mediaimport_dev.controlplane import ControlPlane
from mediaimport_dev.kube import Json, Kube, KubeError
from mediaimport_dev.postgres import PostgresServer
from mediaimport_dev.s3server import S3Server
from prometheus_client.parser import text_string_to_metric_families
from psycopg.rows import dict_row
from support.media import MediaLibrary
from support.origin import Origin, serve

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "charts/mediaimport/files/mediaimports.mediaimport.dev.yaml"
GROUP_PATH = "/apis/mediaimport.dev/v1alpha1"


def kubectl(
    plane: ControlPlane, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary("kubectl")), "--kubeconfig", str(plane.kubeconfig), *args],
        capture_output=True, text=True, check=check, timeout=60,
    )


def eventually(check: Callable[[], Any], *, timeout: float = 60.0, what: str = "") -> Any:
    """Poll (tests may; the operator watches) until check() returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or check}")
        time.sleep(0.1)


@pytest.fixture
def pod_postgres(services_root: Path, origin_host: str) -> Iterator[PostgresServer]:
    """A Postgres pods reach: it also listens on this machine's end of the node's link
    (its URL for pods: `release.pod_database_url(url, origin_host)`)."""
    with PostgresServer(services_root / f"pod-postgres-{uuid.uuid4().hex[:6]}",
                        extra_hosts=[origin_host],
                        trusted_networks=[nodenet.LINK_CIDR]) as server:
        yield server


@pytest.fixture(scope="session")
def crd(control_plane: ControlPlane) -> str:
    kubectl(control_plane, "apply", "-f", str(CRD_FILE))
    kubectl(control_plane, "wait", "--for=condition=Established", "--timeout=60s",
            "crd/mediaimports.mediaimport.dev")
    # Discovery can lag Established by a moment.
    kube = control_plane.kube()
    eventually(lambda: _served(kube), timeout=30, what="the mediaimports API")
    return "mediaimports.mediaimport.dev"


def _served(kube: Kube) -> bool:
    try:
        kube.get(f"{GROUP_PATH}/mediaimports")
    except KubeError:
        return False
    return True


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> MediaLibrary:
    return MediaLibrary(tmp_path_factory.mktemp("operator-media"))


@pytest.fixture(scope="session")
def origin(origin_host: str) -> Iterator[Origin]:
    """Serves the test media where the import pods reach it (MEDIAIMPORT_ORIGIN_HOST)."""
    with serve(origin_host) as server:
        yield server


@dataclass
class OperatorProcess:
    """``python -m mediaimport_operator`` as a child process with its own log file."""

    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    def start(self) -> OperatorProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mediaimport_operator"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            start_new_session=True,
        )
        log.close()
        return self

    def kill(self) -> None:
        """SIGKILL: the operator dies at whatever line it was on."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def port(self) -> int:
        """The port of /healthz and /metrics, as the operator logged it."""
        port = None
        for line in self.log().splitlines():
            if line.startswith("{") and "health and metrics server listening" in line:
                port = json.loads(line)["port"]
        assert port, "the operator has not logged its metrics port"
        return int(port)

    def health(self) -> dict[str, Any]:
        """The /healthz document (whatever its status code)."""
        answer = requests.get(f"http://127.0.0.1:{self.port()}/healthz", timeout=5).json()
        assert isinstance(answer, dict)
        return answer

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """The samples on /metrics, keyed by (name, labels)."""
        text = requests.get(f"http://127.0.0.1:{self.port()}/metrics", timeout=5).text
        return {(sample.name, frozenset(sample.labels.items())): sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples}

    def log_without_timestamps(self) -> str:
        """The log with each JSON record's timestamp left out, so a search for a status
        code such as 403 cannot match the digits of a time (``10.014403``)."""
        lines = []
        for line in self.log().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                lines.append(line)  # tracebacks and other plain text: kept whole
                continue
            if isinstance(record, dict):
                record.pop("timestamp", None)
            lines.append(json.dumps(record))
        return "\n".join(lines)

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records


@dataclass
class Env:
    """One test's world: a namespace with the S3 Secret, a bucket, a database, an operator."""

    kube: Kube
    plane: ControlPlane
    namespace: str
    bucket: str
    s3: S3Server
    postgres: PostgresServer
    origin: Origin
    media: MediaLibrary
    tmp: Path
    job_image: str
    operators: list[OperatorProcess] = field(default_factory=list)
    channel_port: int = 0

    def __post_init__(self) -> None:
        # The channel's HMAC key, as the chart's Secret mounts it: one file per key id.
        keys = self.tmp / "channel-keys"
        keys.mkdir(exist_ok=True)
        (keys / "1").write_bytes(os.urandom(48))
        # Every operator of a test listens on one port (SO_REUSEPORT), where the import
        # pods reach it: the kernel spreads their connections over the replicas as a
        # Service would, and one replica's end leaves the channel to the others.
        self.channel_port = free_port(self.origin.host)

    # -- operator ------------------------------------------------------------------
    def operator_env(self, **overrides: str) -> dict[str, str]:
        env = {
            key: value for key, value in os.environ.items()
            if not key.startswith(("AWS_", "MEDIAIMPORT_", "KUBECONFIG"))
        }
        env.update({
            "KUBECONFIG": str(self.plane.kubeconfig),
            "MEDIAIMPORT_NAMESPACES": self.namespace,
            "MEDIAIMPORT_BUCKET": self.bucket,
            "MEDIAIMPORT_S3_SECRET_NAME": "mediaimport-s3",
            "MEDIAIMPORT_DATABASE_URL": self.postgres.url,
            "MEDIAIMPORT_ALLOWED_NETWORKS": f"{self.origin.host}/32",
            "MEDIAIMPORT_JOB_IMAGE": self.job_image,
            "MEDIAIMPORT_JOB_IMAGE_PULL_POLICY": "Never",
            # The node has 2 CPUs: at the default request (250m) eight import pods fill it,
            # and the pods of tests that stall an import on purpose would hold others back.
            "MEDIAIMPORT_CPU_REQUEST": "50m",
            "MEDIAIMPORT_HTTP_PORT": "0",
            "MEDIAIMPORT_HTTP_HOST": "127.0.0.1",
            "MEDIAIMPORT_LEASE_NAMESPACE": self.namespace,
            "MEDIAIMPORT_LEASE_DURATION": "6",
            "MEDIAIMPORT_LEASE_RENEW_DEADLINE": "4",
            "MEDIAIMPORT_LEASE_RETRY_PERIOD": "1",
            "MEDIAIMPORT_RECORD_RETRY_INTERVAL": "1",
            "MEDIAIMPORT_ORPHAN_SWEEP_INTERVAL": "5",
            "MEDIAIMPORT_TTL_SECONDS_AFTER_FINISHED": "600",
            "MEDIAIMPORT_LOG_LEVEL": "DEBUG",
            "MEDIAIMPORT_CHANNEL_KEYS_DIR": str(self.tmp / "channel-keys"),
            "MEDIAIMPORT_CHANNEL_HOST": self.origin.host,
            "MEDIAIMPORT_CHANNEL_PORT": str(self.channel_port),
            "PYTHONUNBUFFERED": "1",
        })
        env.update(overrides)
        # The operator's own AWS_* only when a test gives them (deleting objects).
        return env

    def start_operator(self, **overrides: str) -> OperatorProcess:
        index = len(self.operators)
        env = self.operator_env(MEDIAIMPORT_IDENTITY=f"operator-{index}", **overrides)
        proc = OperatorProcess(env, self.tmp / f"operator-{index}.log").start()
        self.operators.append(proc)
        return proc

    # -- objects -------------------------------------------------------------------
    def mi_path(self, name: str = "") -> str:
        base = f"{GROUP_PATH}/namespaces/{self.namespace}/mediaimports"
        return f"{base}/{name}" if name else base

    def url(self, path: str) -> str:
        return self.origin.url(path)

    def create(self, mi_name: str, /, **spec: Any) -> Json:
        body = {
            "apiVersion": "mediaimport.dev/v1alpha1",
            "kind": "MediaImport",
            "metadata": {"name": mi_name},
            "spec": {"userId": "user-1", **spec},
        }
        return self.kube.create(self.mi_path(), body)

    def get(self, name: str) -> Json | None:
        try:
            return self.kube.get(self.mi_path(name))
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def wait_phase(self, name: str, *phases: str, timeout: float = 90.0) -> Json:
        def check() -> Json | None:
            for op in self.operators:
                if op.process is not None and op.process.poll() not in (None, -9, 0, 1):
                    raise AssertionError(f"operator exited: {op.log()[-4000:]}")
            body = self.get(name)
            if body and (body.get("status") or {}).get("phase") in phases:
                return body
            return None

        try:
            return eventually(check, timeout=timeout, what=f"{name} in {phases}")
        except AssertionError:
            print(json.dumps(self.get(name), indent=1))
            for op in self.operators:
                print(op.log()[-6000:])
            raise

    def jobs(self, **selector: str) -> list[Json]:
        params = {"labelSelector": ",".join(f"{k}={v}" for k, v in selector.items())}
        return self.kube.get(f"/apis/batch/v1/namespaces/{self.namespace}/jobs",
                             **params)["items"]

    def pods(self) -> list[Json]:
        return self.kube.get(f"/api/v1/namespaces/{self.namespace}/pods")["items"]

    def events(self, name: str) -> list[Json]:
        items = self.kube.get(
            f"/api/v1/namespaces/{self.namespace}/events",
            fieldSelector=f"involvedObject.name={name},involvedObject.kind=MediaImport",
        )["items"]
        return sorted(items, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")

    def reasons(self, name: str, *expected: str, timeout: float = 20.0) -> list[str]:
        """The event reasons of a MediaImport, once all of ``expected`` are among them.

        Events are posted after the status write, from the operator's posting queue: a
        test that saw the phase change may read the events a moment before they land.
        """
        def check() -> list[str] | None:
            reasons = [e["reason"] for e in self.events(name)]
            return reasons if all(r in reasons for r in expected) else None

        try:
            return eventually(check, timeout=timeout, what=f"events {expected} of {name}")
        except AssertionError:
            print([(e["reason"], e.get("message")) for e in self.events(name)])
            raise

    def row(self, asset_id: str) -> dict[str, Any] | None:
        try:
            with psycopg.connect(self.postgres.url, row_factory=dict_row,
                                 connect_timeout=3) as conn:
                return conn.execute("SELECT * FROM media_assets WHERE id = %s",
                                    (asset_id,)).fetchone()
        except psycopg.errors.UndefinedTable:
            return None


@pytest.fixture
def env(
    control_plane: ControlPlane,
    crd: str,
    kube: Kube,
    namespace: str,
    cluster_s3: S3Server,
    cluster_bucket: str,
    postgres_server: PostgresServer,
    origin: Origin,
    media: MediaLibrary,
    tmp_path: Path,
    job_image: str,
) -> Iterator[Env]:
    kube.create(
        f"/api/v1/namespaces/{namespace}/secrets",
        {
            "metadata": {"name": "mediaimport-s3"},
            "stringData": cluster_s3.env(),
        },
    )
    world = Env(kube, control_plane, namespace, cluster_bucket, cluster_s3, postgres_server,
                origin, media, tmp_path, job_image)
    yield world
    for op in world.operators:
        op.stop()


def free_port(host: str) -> int:
    """A port nothing listens on at ``host`` now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def new_name(prefix: str = "mi") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"
