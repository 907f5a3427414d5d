"""Session fixtures that start the real services once: S3 (versitygw) and Postgres.

The control-plane fixtures live further down (appended by their module's owners).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mediaimport_dev.controlplane import ControlPlane
from mediaimport_dev.kube import Kube
from mediaimport_dev.nodeagent import NodeAgent
from mediaimport_dev.postgres import PostgresServer
from mediaimport_dev.s3server import S3Server


@pytest.fixture(scope="session")
def services_root() -> Iterator[Path]:
    # Not under pytest's own temp root: pytest resets that to mode 0700 whenever
    # a session starts, and Postgres runs as the unprivileged `postgres` user when
    # we are root, so every directory above its data directory must stay
    # traversable by that user.
    root = Path(tempfile.mkdtemp(prefix="mediaimport-services-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server(services_root: Path) -> Iterator[S3Server]:
    with S3Server(services_root / "s3") as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh, empty bucket for one test."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(name)
    return name


@pytest.fixture(scope="session")
def postgres_server(services_root: Path) -> Iterator[PostgresServer]:
    with PostgresServer(services_root / "postgres") as server:
        yield server


# --- The local control plane (owned by the devstack module; appended) ---------------
# A real etcd + kube-apiserver + kube-controller-manager, and the node agent that
# runs pods as local processes. Session-scoped: starting them costs seconds.


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane(tmp_path_factory.mktemp("controlplane")) as plane:
        yield plane


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Kube:
    """A cluster-admin JSON client of the control plane (see mediaimport_dev.kube)."""
    return control_plane.kube()


@pytest.fixture(scope="session")
def node_agent(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeAgent]:
    agent = NodeAgent(control_plane.kube(), tmp_path_factory.mktemp("nodeagent"), max_pods=4)
    agent.start()
    yield agent
    agent.stop()


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube.create("/api/v1/namespaces", {"metadata": {"name": name}})
    yield name
    kube.delete(f"/api/v1/namespaces/{name}")
