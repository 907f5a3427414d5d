"""Session fixtures that start the real services once: S3 (versitygw) and Postgres.

The control-plane fixtures live further down (appended by their module's owners).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mediaimport_dev.postgres import PostgresServer
from mediaimport_dev.s3server import S3Server


@pytest.fixture(scope="session")
def services_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("services")
    # Postgres runs as the unprivileged `postgres` user when we are root: every
    # directory above its data directory must be traversable by that user.
    for parent in [root, *root.parents]:
        if parent == Path("/"):
            break
        if os.geteuid() == 0 and parent.stat().st_mode & 0o005 != 0o005:
            parent.chmod(parent.stat().st_mode | 0o005)
    return root


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
