"""A real PostgreSQL server from Debian's binaries in a temporary data directory.

The server refuses to run as root, and sessions and CI run as root: then the
data directory is given to the unprivileged ``postgres`` user (created by
Debian's package) and every server command runs through ``runuser``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .ports import free_port
from .processes import ServerProcess, log_tail, pid_alive, spawn, stop_group

# The one address the server listens on and every client here connects to.
HOST = "127.0.0.1"
DEBIAN_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


class PostgresError(RuntimeError):
    """The Postgres server did not initialise, start or answer."""


def _server_binary(name: str) -> str:
    for directory in DEBIAN_BIN_DIRS:
        if (directory / name).exists():
            return str(directory / name)
    found = shutil.which(name)
    if found is None:
        raise PostgresError(
            f"{name} not found; install Debian's postgresql package (scripts/setup.sh does)"
        )
    return found


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


@dataclass
class PostgresServer(ServerProcess):
    """One Postgres cluster under ``root`` listening on 127.0.0.1:port (trust auth).

    ``restart()`` keeps the data, so tests can stop the database mid-import
    and bring it back.
    """

    root: Path
    port: int = 0
    database: str = "mediaimport"
    user: str = "mediaimport"
    pid: int | None = None
    # Addresses it also listens on (clients here use HOST), e.g. the node's veth end, and
    # the networks whose clients it trusts besides loopback (the node's, for pods).
    extra_hosts: list[str] = field(default_factory=list)
    trusted_networks: list[str] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{HOST}:{self.port}/{self.database}"

    def libpq_env(self) -> dict[str, str]:
        """The same server for tools that read libpq's variables (a bare `psql`)."""
        return {"PGHOST": HOST, "PGPORT": str(self.port), "PGUSER": self.user,
                "PGDATABASE": self.database}

    def _own_for_server_user(self, path: Path) -> None:
        if os.geteuid() == 0:
            server_user = pwd.getpwnam("postgres")
            os.chown(path, server_user.pw_uid, server_user.pw_gid)

    def start(self, timeout: float = 30.0) -> None:
        fresh = not (self.data_dir / "PG_VERSION").exists()
        if fresh:
            self._initdb()
        self._trust(self.trusted_networks)
        if not self.port:
            self.port = free_port()
        socket_dir = self.root / "socket"
        socket_dir.mkdir(exist_ok=True)
        self._own_for_server_user(socket_dir)
        process = spawn(
            _as_server_user([
                _server_binary("postgres"),
                "-D", str(self.data_dir),
                "-h", ",".join([HOST, *self.extra_hosts]),
                "-p", str(self.port),
                "-k", str(socket_dir),
                # Test-speed settings: a lost test database costs nothing.
                "-c", "fsync=off",
                "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off",
                "-c", "max_connections=200",
            ]),
            self.log_path,
        )
        self.pid = process.pid
        self._wait_ready(timeout)
        if fresh:
            self._create_role_and_database()

    def _initdb(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._own_for_server_user(self.root)
        result = subprocess.run(
            _as_server_user([
                _server_binary("initdb"),
                "-D", str(self.data_dir),
                "-U", "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ]),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise PostgresError(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")

    def _trust(self, networks: list[str]) -> None:
        """Let clients from networks in (initdb's file trusts loopback only)."""
        hba = self.data_dir / "pg_hba.conf"
        text = hba.read_text()
        lines = [f"host all all {network} trust" for network in networks]
        missing = [line for line in lines if line not in text.splitlines()]
        if missing:
            hba.write_text(text.rstrip("\n") + "\n" + "\n".join(missing) + "\n")

    def _psql(self, sql: str, database: str = "postgres") -> None:
        result = subprocess.run(
            [
                _server_binary("psql"),
                "-h", HOST, "-p", str(self.port), "-U", "postgres",
                "-d", database, "-v", "ON_ERROR_STOP=1", "-qc", sql,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise PostgresError(f"psql failed: {result.stderr.strip()}")

    def _create_role_and_database(self) -> None:
        self._psql(f'CREATE ROLE "{self.user}" LOGIN')
        self._psql(f'CREATE DATABASE "{self.database}" OWNER "{self.user}"')

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [_server_binary("pg_isready"), "-h", HOST, "-p", str(self.port), "-q"],
                check=False,
            )
            if ready.returncode == 0:
                return
            if self.pid is not None and not pid_alive(self.pid):
                break
            time.sleep(0.1)
        self.stop()
        raise PostgresError(
            f"postgres did not become ready on port {self.port}; "
            f"log {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def stop(self) -> None:
        if self.pid is not None:
            # "Fast" shutdown: a plain SIGTERM is Postgres's "smart" mode, which
            # waits for every client (an operator's pool) to disconnect first.
            subprocess.run(
                _as_server_user([
                    _server_binary("pg_ctl"), "stop", "-D", str(self.data_dir),
                    "-m", "fast", "-w", "-t", "20",
                ]),
                capture_output=True,
                check=False,
            )
            stop_group(self.pid, grace=10.0)
            self.pid = None

    def restart(self) -> None:
        self.stop()
        self.start()
