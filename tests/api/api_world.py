"""Helpers and fixtures of the API's tests: ``mediaimport-api`` as a real uvicorn process on
loopback, against the local control plane, Postgres and S3.

Two API worlds live for the session, each with a namespace, a bucket and its own API
process: ``live_api`` has an operator watching its namespace (imports run to Ready);
``quiet_api`` has none (MediaImports are created and stay Pending: for the tests of
validation, auth, idempotency and webhooks, and for schemathesis, whose generated URLs
must never be fetched). Tests keep apart by using users of their own.

The operator's session fixtures (CRD, origin, media, the operator process) are reused
from tests/operator/conftest.py rather than written twice.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from mediaimport_api.auth import hash_token, new_token
from mediaimport_dev.controlplane import ControlPlane
from mediaimport_dev.kube import Json, Kube, KubeError
from mediaimport_dev.ports import free_port
from mediaimport_dev.postgres import PostgresServer
from mediaimport_dev.s3server import S3Server
from psycopg.rows import dict_row
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "operator_fixtures", ROOT / "tests" / "operator" / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
operator_fixtures = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = operator_fixtures  # dataclasses look their module up
_spec.loader.exec_module(operator_fixtures)

# The operator's session fixtures, shared (pytest finds fixtures by their names here).
crd = operator_fixtures.crd
media = operator_fixtures.media
origin = operator_fixtures.origin
Env = operator_fixtures.Env
eventually = operator_fixtures.eventually

API = str(Path(sys.executable).parent / "mediaimport-api")
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"webhook secret for the API tests!").decode()
SIGNING_KEY = "context-signing-key-for-the-api-tests-0123456789"
GROUP_PATH = "/apis/mediaimport.dev/v1alpha1"


@dataclass
class ApiServer:
    """One ``mediaimport-api`` process and what a test needs to talk to it."""

    kube: Kube
    namespace: str
    bucket: str
    postgres: PostgresServer
    tokens_file: Path
    log_path: Path
    env: dict[str, str]
    port: int = 0
    admin_port: int = 0  # /healthz, /readyz and /metrics (MEDIAIMPORT_API_ADMIN_PORT)
    process: subprocess.Popen[bytes] | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, timeout: float = 60.0) -> ApiServer:
        self.port = free_port("127.0.0.1")
        self.admin_port = free_port("127.0.0.1")
        env = {"MEDIAIMPORT_API_PORT": str(self.port),
               "MEDIAIMPORT_API_ADMIN_PORT": str(self.admin_port), **self.env}
        self.admin_port = int(env["MEDIAIMPORT_API_ADMIN_PORT"] or self.port)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [API], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"mediaimport-api exited:\n{self.log()[-4000:]}")
            try:
                if requests.get(f"{self.admin_url}/readyz", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"mediaimport-api not ready:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- users ---------------------------------------------------------------------
    def new_user(self, prefix: str = "user") -> str:
        """A fresh user with a token in the tokens file (picked up without a restart)."""
        user = f"{prefix}-{uuid.uuid4().hex[:8]}"
        token = new_token()
        with self.tokens_file.open("a") as file:
            file.write(f"{hash_token(token)} {user}\n")
        self.tokens[user] = token
        return user

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    # -- HTTP ------------------------------------------------------------------------
    def request(self, method: str, path: str, user: str | None = None, **kwargs: Any
                ) -> requests.Response:
        headers = {**(self.auth(user) if user else {}), **kwargs.pop("headers", {})}
        kwargs.setdefault("timeout", 90)
        return requests.request(method, self.url + path, headers=headers, **kwargs)

    def post_import(self, user: str, body: dict[str, Any], **kwargs: Any
                    ) -> requests.Response:
        return self.request("POST", "/api/v1/media/import-from-url", user, json=body, **kwargs)

    # -- what exists -----------------------------------------------------------------
    def mi_path(self, name: str = "") -> str:
        base = f"{GROUP_PATH}/namespaces/{self.namespace}/mediaimports"
        return f"{base}/{name}" if name else base

    def mediaimports(self, user: str | None = None) -> list[Json]:
        items: list[Json] = self.kube.get(self.mi_path())["items"]
        return [i for i in items if user is None or i["spec"]["userId"] == user]

    def mediaimport(self, name: str) -> Json | None:
        try:
            return self.kube.get(self.mi_path(name))
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def rows(self, user: str) -> list[dict[str, Any]]:
        with psycopg.connect(self.postgres.url, row_factory=dict_row) as conn:
            return conn.execute(
                "SELECT * FROM media_assets WHERE user_id = %s ORDER BY created_at", (user,)
            ).fetchall()

    def metrics(self) -> str:
        return requests.get(f"{self.admin_url}/metrics", timeout=10).text


def api_env(plane: ControlPlane, namespace: str, bucket: str, s3: S3Server,
            postgres: PostgresServer, tokens_file: Path, **overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("AWS_", "MEDIAIMPORT_", "KUBECONFIG"))}
    env.update(s3.env())
    env.update({
        "KUBECONFIG": str(plane.kubeconfig),
        "MEDIAIMPORT_API_NAMESPACE": namespace,
        "MEDIAIMPORT_API_TOKENS_FILE": str(tokens_file),
        "MEDIAIMPORT_API_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "MEDIAIMPORT_API_CONTEXT_SIGNING_KEY": SIGNING_KEY,
        "MEDIAIMPORT_API_ALLOWED_NETWORKS": "127.0.0.2/32",
        "MEDIAIMPORT_API_DATABASE_URL": postgres.url,
        "MEDIAIMPORT_API_BUCKET": bucket,
        "MEDIAIMPORT_API_S3_PUBLIC_ENDPOINT": s3.endpoint_url,
        "MEDIAIMPORT_API_HOST": "127.0.0.1",
        "MEDIAIMPORT_API_LOG_LEVEL": "DEBUG",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(overrides)
    return env


@dataclass
class World:
    """A namespace (with the S3 Secret the import Jobs read), a bucket and a scratch folder."""

    plane: ControlPlane
    kube: Kube
    s3: S3Server
    postgres: PostgresServer
    tmp: Path
    namespace: str = ""
    bucket: str = ""

    def __post_init__(self) -> None:
        self.namespace = f"api-{uuid.uuid4().hex[:8]}"
        self.kube.create("/api/v1/namespaces", {"metadata": {"name": self.namespace}})
        self.kube.create(f"/api/v1/namespaces/{self.namespace}/secrets",
                         {"metadata": {"name": "mediaimport-s3"}, "stringData": self.s3.env()})
        self.bucket = f"api-{uuid.uuid4().hex[:12]}"
        self.s3.create_bucket(self.bucket)

    def start_api(self, **overrides: str) -> ApiServer:
        tokens = self.tmp / "tokens"
        tokens.write_text("# <sha256 of a token> <user>\n")
        env = api_env(self.plane, self.namespace, self.bucket, self.s3, self.postgres, tokens,
                      **overrides)
        return ApiServer(self.kube, self.namespace, self.bucket, self.postgres, tokens,
                         self.tmp / "api.log", env).start()

    def remove(self) -> None:
        self.kube.delete(f"/api/v1/namespaces/{self.namespace}")


@pytest.fixture(scope="session")
def quiet_api(
    control_plane: ControlPlane, crd: str, kube: Kube, s3_server: S3Server,
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ApiServer]:
    world = World(control_plane, kube, s3_server, postgres_server,
                  tmp_path_factory.mktemp("quiet-api"))
    # Nothing imports here: an image's default wait would only hold the tests up.
    server = world.start_api(MEDIAIMPORT_API_IMAGE_WAIT_SECONDS="0.2")
    yield server
    server.stop()
    world.remove()


@dataclass
class LiveWorld:
    api: ApiServer
    env: Any  # the operator tests' Env: origin, media, operator process
    s3: S3Server


@pytest.fixture(scope="session")
def live(
    control_plane: ControlPlane, crd: str, kube: Kube, cluster_s3: S3Server,
    postgres_server: PostgresServer, origin: Any, media: Any, job_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveWorld]:
    # S3 and the origin where the import pods reach them (the node's veth).
    world = World(control_plane, kube, cluster_s3, postgres_server,
                  tmp_path_factory.mktemp("live-api"))
    operator_env = Env(kube, control_plane, world.namespace, world.bucket, cluster_s3,
                       postgres_server, origin, media, world.tmp, job_image)
    operator_env.start_operator()
    # The longest wait there is: a machine shared by many test runs can be slow.
    server = world.start_api(MEDIAIMPORT_API_IMAGE_WAIT_SECONDS="60",
                             MEDIAIMPORT_API_ALLOWED_NETWORKS=f"{origin.host}/32")
    yield LiveWorld(server, operator_env, cluster_s3)
    server.stop()
    for operator in operator_env.operators:
        operator.stop()
    world.remove()


# -- streams read on threads of their own ------------------------------------------------


class Collected:
    """Messages of a stream read on a thread of its own, until the server ends it."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.ended = threading.Event()
        self.error: BaseException | None = None

    def wait_for(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"{len(self.messages)} of {count}: {self.messages}"
            time.sleep(0.02)


def follow_sse(api: ApiServer, user: str, name: str) -> Collected:
    collected = Collected()

    def read() -> None:
        try:
            answer = api.request("GET", f"/api/v1/imports/{name}/events", user, stream=True,
                                 timeout=60)
            assert answer.status_code == 200, answer.text
            for line in answer.iter_lines(decode_unicode=True):
                if line.startswith("data:"):
                    collected.messages.append(json.loads(line[5:]))
        except BaseException as error:  # reported by wait_for
            collected.error = error
        finally:
            collected.ended.set()

    threading.Thread(target=read, daemon=True).start()
    return collected


def follow_ws(api: ApiServer, user: str, name: str) -> Collected:
    collected = Collected()

    def read() -> None:
        try:
            url = f"ws://127.0.0.1:{api.port}/api/v1/imports/{name}/ws"
            with connect(url, additional_headers=api.auth(user), open_timeout=10) as socket:
                for text in socket:
                    collected.messages.append(json.loads(text))
        except BaseException as error:
            collected.error = error
        finally:
            collected.ended.set()

    threading.Thread(target=read, daemon=True).start()
    return collected
