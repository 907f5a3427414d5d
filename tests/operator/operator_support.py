"""Helpers of the operator's component and end-to-end tests."""

from __future__ import annotations

from pathlib import Path

from mediaimport_dev.postgres import PostgresServer


def stop_postgres_fast(server: PostgresServer) -> None:
    """Stop Postgres now, with clients still connected (the operator's pool).

    ``PostgresServer.stop`` uses ``pg_ctl -m fast``, which ends the sessions:
    what an outage looks like to the operator.
    """
    server.stop()
    assert not Path(server.data_dir / "postmaster.pid").exists()
