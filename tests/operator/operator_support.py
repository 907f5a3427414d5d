"""Helpers of the operator's component and end-to-end tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from mediaimport_dev.postgres import PostgresServer, _server_binary


def stop_postgres_fast(server: PostgresServer) -> None:
    """Stop Postgres now, with clients still connected (the operator's pool).

    ``PostgresServer.stop`` sends SIGTERM, Postgres' *smart* shutdown, which waits
    for every client to disconnect; a pool never does. ``pg_ctl -m fast`` ends the
    sessions, which is what an outage looks like to the operator.
    """
    argv = [_server_binary("pg_ctl"), "-D", str(server.data_dir), "stop", "-m", "fast", "-w"]
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    subprocess.run(argv, check=False, capture_output=True, timeout=60)
    server.stop()
    assert not Path(server.data_dir / "postmaster.pid").exists()
