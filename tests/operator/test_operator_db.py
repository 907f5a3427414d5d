"""The media_assets writes against a real Postgres: migrations, upserts, conflicts, restarts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from mediaimport_dev.postgres import PostgresServer
from mediaimport_operator.db import (
    Database,
    DatabaseUnavailable,
    UpsertOutcome,
    upsert_returning,
)
from mediaimport_operator.model import MediaImport
from mediaimport_operator.records import row_for
from mediaimport_operator.status import JobView, derive, latest_outcomes
from operator_factories import checked, job_body, mi_body, pod_body, ready_result
from operator_support import stop_postgres_fast

NOW = datetime(2026, 11, 24, 10, 0, 5, tzinfo=UTC)


@pytest.fixture
def database_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database per test (migrations start from nothing)."""
    name = f"op_{uuid.uuid4().hex[:10]}"
    admin = f"postgresql://postgres@127.0.0.1:{postgres_server.port}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{postgres_server.user}"')
    yield f"postgresql://{postgres_server.user}@127.0.0.1:{postgres_server.port}/{name}"


def _mi(status=None, *, uid=None, user="user-1", asset=None):
    spec = {"userId": user, "metadata": {"prompt": "p"}}
    if asset:
        spec["assetId"] = asset
    return MediaImport.from_body(mi_body(status=status, spec=spec, uid=uid or str(uuid.uuid4())))


def _ready(mi: MediaImport) -> MediaImport:
    importing = derive(mi, JobView.from_body(job_body(active=1, owner_uid=mi.ref.uid)), [],
                       now=NOW).status
    mi = mi.model_copy(update={"status": importing})
    pods = [pod_body("p", phase="Succeeded", exit_code=0, message=ready_result())]
    job = job_body(succeeded=1, condition=("Complete", "", ""), owner_uid=mi.ref.uid)
    ready = derive(mi, JobView.from_body(job), latest_outcomes(pods), now=NOW,
                   verdict=checked(job, pods)).status
    return mi.model_copy(update={"status": ready})


def run(coro):
    return asyncio.run(coro)


def test_migrations_apply_once_also_when_racing(database_url: str) -> None:
    async def scenario() -> list[list[str]]:
        dbs = [Database(database_url) for _ in range(3)]
        try:
            return list(await asyncio.gather(*(db.ensure_schema() for db in dbs)))
        finally:
            for db in dbs:
                await db.close()

    results = run(scenario())
    assert sorted(len(r) for r in results) == [0, 0, 4]
    with psycopg.connect(database_url) as conn:
        versions = conn.execute("SELECT version, name FROM schema_migrations").fetchall()
        assert versions == [(1, "0001_media_assets.sql"), (2, "0002_api_idempotency_keys.sql"),
                            (3, "0003_api_deliveries_and_key_answers.sql"),
                            (4, "0004_media_assets_namespace.sql")]
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name='media_assets'"
        )}
    assert columns == {
        "id", "user_id", "name", "file_size", "file_type", "s3_key", "thumbnail_s3_key",
        "status", "checksum", "file_metadata", "folder_id", "tags", "is_deleted",
        "created_at", "updated_at", "namespace",
    }


def test_upserts_are_idempotent_and_never_regress(database_url: str) -> None:
    async def scenario() -> None:
        db = Database(database_url)
        try:
            mi = _mi()
            assert await db.upsert(row_for(mi)) is UpsertOutcome.WRITTEN
            assert await db.upsert(row_for(mi)) is UpsertOutcome.WRITTEN  # same again: fine
            ready = _ready(mi)
            assert await db.upsert(row_for(ready)) is UpsertOutcome.WRITTEN
            assert await db.upsert(row_for(ready)) is UpsertOutcome.WRITTEN
            # A late "uploading" write (an old event, a restarted operator) changes nothing.
            assert await db.upsert(row_for(mi)) is UpsertOutcome.TERMINAL
            row = await db.get(ready.asset_id)
            assert row is not None
            assert row["status"] == "ready"
            assert row["file_size"] == 2_500_000
            assert row["file_metadata"]["frame_rate"] == 30.0
            assert row["file_metadata"]["prompt"] == "p"
            # Cancelling a ready row does nothing either.
            assert not await db.cancel(ready.asset_id, ready.ref.uid, NOW)
        finally:
            await db.close()

    run(scenario())
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM media_assets").fetchone() == (1,)


def test_an_asset_id_of_another_user_or_import_is_a_conflict(database_url: str) -> None:
    async def scenario() -> None:
        db = Database(database_url)
        try:
            asset = str(uuid.uuid4())
            first = _mi(asset=asset)
            assert await db.upsert(row_for(first)) is UpsertOutcome.WRITTEN
            thief = _mi(asset=asset, user="someone-else")
            assert await db.upsert(row_for(thief)) is UpsertOutcome.CONFLICT
            same_user_other_import = _mi(asset=asset)
            assert await db.upsert(row_for(same_user_other_import)) is UpsertOutcome.CONFLICT
            row = await db.get(asset)
            assert row is not None and row["user_id"] == "user-1"
            assert row["file_metadata"]["mediaimport"]["uid"] == first.ref.uid
        finally:
            await db.close()

    run(scenario())


def test_a_row_made_by_the_api_is_claimed_by_its_import(database_url: str) -> None:
    async def scenario() -> None:
        db = Database(database_url)
        try:
            await db.ensure_schema()
            asset = str(uuid.uuid4())
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO media_assets (id, user_id, name, status) VALUES"
                    " (%s, 'user-1', 'x', 'uploading')", (asset,),
                )
            assert await db.upsert(row_for(_mi(asset=asset))) is UpsertOutcome.WRITTEN
        finally:
            await db.close()

    run(scenario())


def test_cancel_fails_an_uploading_row(database_url: str) -> None:
    async def scenario() -> None:
        db = Database(database_url)
        try:
            mi = _mi()
            await db.upsert(row_for(mi))
            assert [a for a, _ in await db.uploading()] == [mi.asset_id]
            assert not await db.cancel(mi.asset_id, "another-uid", NOW)
            assert await db.cancel(mi.asset_id, mi.ref.uid, NOW)
            row = await db.get(mi.asset_id)
            assert row is not None and row["status"] == "failed"
            assert row["file_metadata"]["error"]["reason"] == "Cancelled"
            assert await db.uploading() == []
        finally:
            await db.close()

    run(scenario())


def test_unavailable_then_back(services_root) -> None:
    """A pool survives a database restart: errors while down, writes again once it is up."""
    server = PostgresServer(services_root / f"pg-restart-{uuid.uuid4().hex[:6]}")
    server.start()
    try:
        async def scenario() -> None:
            db = Database(server.url, timeout=1.0)
            try:
                mi = _mi()
                assert await db.upsert(row_for(mi)) is UpsertOutcome.WRITTEN
                stop_postgres_fast(server)
                with pytest.raises(DatabaseUnavailable):
                    await db.upsert(row_for(_ready(mi)))
                server.start()
                assert await db.upsert(row_for(_ready(mi))) is UpsertOutcome.WRITTEN
                row = await db.get(mi.asset_id)
                assert row is not None and row["status"] == "ready"
            finally:
                await db.close()

        run(scenario())
    finally:
        server.stop()


def test_upsert_returning_answers_the_row_as_written(database_url: str) -> None:
    """One round trip writes the row and answers it; a refused write answers None."""
    async def scenario() -> None:
        db = Database(database_url)
        try:
            await db.ensure_schema()
            mi = _mi()
            async with db.connection() as conn:
                written = await upsert_returning(conn, row_for(mi), "id, user_id, status,"
                                                 " file_metadata, created_at")
                assert written is not None
                assert (str(written["id"]), written["user_id"], written["status"]) == (
                    mi.asset_id, "user-1", "uploading")
                assert written["file_metadata"]["prompt"] == "p"
                assert written["created_at"] is not None
                taken = _mi(user="user-2", asset=mi.asset_id)
                assert await upsert_returning(conn, row_for(taken), "id") is None
        finally:
            await db.close()

    run(scenario())


def _admin_url(url: str) -> str:
    return url.rsplit("/", 1)[0].replace("://mediaimport@", "://postgres@") + "/postgres"


def _backend_query(url: str, pid: int) -> str:
    with psycopg.connect(_admin_url(url), autocommit=True) as admin:
        found = admin.execute("SELECT query FROM pg_stat_activity WHERE pid = %s",
                              (pid,)).fetchone()
    assert found is not None
    return str(found[0])


def test_checkout_of_a_healthy_connection_sends_nothing(database_url: str) -> None:
    """The pool's check costs no round trip per checkout: the connection's last statement
    is still the caller's own when it is handed out again."""
    async def scenario() -> None:
        db = Database(database_url, pool_size=1)
        try:
            async with db.connection() as conn:
                pid = conn.info.backend_pid
                await conn.execute("SELECT 'the last statement'")
            async with db.connection() as conn:
                assert conn.info.backend_pid == pid
                last = await asyncio.to_thread(_backend_query, database_url, pid)
                assert last == "SELECT 'the last statement'"
        finally:
            await db.close()

    run(scenario())


def test_a_terminated_connection_is_replaced_at_checkout(database_url: str) -> None:
    """A pooled connection whose session the server ended is noticed at checkout: the
    caller's statement runs on a new one instead of failing."""
    async def scenario() -> None:
        db = Database(database_url, pool_size=1)
        try:
            async with db.connection() as conn:
                pid = conn.info.backend_pid

            def terminate() -> None:
                with psycopg.connect(_admin_url(database_url), autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))

            await asyncio.to_thread(terminate)
            async with db.connection() as conn:
                cursor = await conn.execute("SELECT pg_backend_pid()")
                assert (await cursor.fetchone()) != (pid,)
        finally:
            await db.close()

    run(scenario())


def test_unreachable_database_fails_fast() -> None:
    async def scenario() -> None:
        db = Database("postgresql://nobody@127.0.0.1:1/none", timeout=0.5)
        try:
            with pytest.raises(DatabaseUnavailable):
                await db.upsert(row_for(_mi()))
        finally:
            await db.close()

    run(scenario())


def test_rows_record_their_namespace_and_another_namespace_cannot_take_one(
    database_url: str,
) -> None:
    async def scenario() -> None:
        db = Database(database_url)
        try:
            asset = str(uuid.uuid4())
            first = _mi(asset=asset)
            assert await db.upsert(row_for(first)) is UpsertOutcome.WRITTEN
            row = await db.get(asset)
            assert row is not None and row["namespace"] == first.ref.namespace
            body = mi_body(spec={"url": "https://example.com/a.mp4", "userId": "user-1",
                                 "assetId": asset}, uid=first.ref.uid)
            body["metadata"]["namespace"] = "team-b"
            elsewhere = MediaImport.from_body(body)  # even with the same uid
            assert await db.upsert(row_for(elsewhere)) is UpsertOutcome.CONFLICT
        finally:
            await db.close()

    run(scenario())
