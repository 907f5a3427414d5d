"""Session fixtures that start the real services once: S3 (versitygw), Postgres and the
local cluster."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mediaimport_dev import nodenet
from mediaimport_dev.cluster import Cluster, node_images
from mediaimport_dev.controlplane import ControlPlane
from mediaimport_dev.images import PAUSE_IMAGE
from mediaimport_dev.images import job_image as find_job_image
from mediaimport_dev.kube import Kube
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


# --- The local cluster ---------------------------------------------------------------
# A real etcd + kube-apiserver + kube-controller-manager + kube-scheduler, and a real node
# (containerd, kubelet, kube-proxy) running the project's images. One node runs on a
# machine at a time: a session waits for another worktree's to end. Tests marked
# `ownnode` start a stack of their own, so they run first, before this one exists.


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("ownnode") is None)


@pytest.fixture(scope="session")
def images() -> dict[str, Path]:
    """Image name -> OCI archive of the images the node runs (built when inputs change)."""
    return node_images()


@pytest.fixture(scope="session")
def job_image(images: dict[str, Path]) -> str:
    return find_job_image(images)


@pytest.fixture(scope="session")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, images: dict[str, Path]
) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("cluster"), pause_image=PAUSE_IMAGE,
                 images=images) as running:
        yield running


@pytest.fixture(scope="session")
def control_plane(cluster: Cluster) -> ControlPlane:
    return cluster.plane


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Kube:
    """A cluster-admin JSON client of the control plane (see mediaimport_dev.kube)."""
    return control_plane.kube()


@pytest.fixture(scope="session")
def origin_host(cluster: Cluster) -> str:
    """MEDIAIMPORT_ORIGIN_HOST: where test origins listen so that pods reach them."""
    return nodenet.HOST_IP


@pytest.fixture(scope="session")
def cluster_s3(cluster: Cluster, services_root: Path) -> Iterator[S3Server]:
    """An S3 server pods reach (on the node's veth), for tests that run imports in pods."""
    with S3Server(services_root / "cluster-s3", host=nodenet.HOST_IP) as server:
        yield server


@pytest.fixture
def cluster_bucket(cluster_s3: S3Server) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    cluster_s3.create_bucket(name)
    return name


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube.create("/api/v1/namespaces", {"metadata": {"name": name}})
    yield name
    kube.delete(f"/api/v1/namespaces/{name}")
