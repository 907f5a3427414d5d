"""The status never depends on the row: Postgres refusing a row, Postgres down while imports
finish or are deleted — with the real API server, job, Postgres and S3."""

from __future__ import annotations

import time

import psycopg
import pytest
from conftest import Env, eventually, new_name
from operator_support import stop_postgres_fast

pytestmark = pytest.mark.e2e


def _condition(body: dict, type_: str) -> dict:
    return next(c for c in body["status"]["conditions"] if c["type"] == type_)


def _rows_written(env: Env, result: str) -> float:
    samples = env.operators[0].metrics()
    return samples[("mediaimport_row_writes_total", frozenset({("result", result)}))]


def test_a_row_postgres_refuses_still_gets_its_status(env: Env) -> None:
    env.start_operator()
    clip = env.origin.add(env.media.path("image.png"), "refused.png")
    name = new_name("refused")
    user = f"refused-{new_name()}"
    # A rule of the database's own that no row of this user meets (as a DBA's constraint
    # or trigger might be): Postgres refuses the row, whatever the operator writes.
    def refuse_the_user() -> bool:
        try:
            with psycopg.connect(env.postgres.url, autocommit=True) as conn:
                conn.execute(f"ALTER TABLE media_assets ADD CONSTRAINT "
                             f"no_{user.replace('-', '_')} CHECK (user_id <> '{user}') NOT VALID")
        except psycopg.errors.UndefinedTable:  # the operator's migrations have not run yet
            return False
        return True

    eventually(refuse_the_user, timeout=30, what="the media_assets table")
    created = env.create(name, url=env.url(f"/files/{clip}"), userId=user)
    body = env.wait_phase(name, "Ready", "Failed")
    assert body["status"]["phase"] == "Ready"
    assert body["status"]["result"]["key"].endswith("/refused.png")
    recorded = _condition(body, "Recorded")
    assert (recorded["status"], recorded["reason"]) == ("False", "RowRejected")
    assert "violates check constraint" in recorded["message"], recorded
    assert env.row(created["metadata"]["uid"]) is None
    assert _rows_written(env, "rejected") >= 1
    env.reasons(name, "Imported")


def test_a_row_behind_holds_its_import_until_it_is_written(env: Env) -> None:
    operator = env.start_operator(MEDIAIMPORT_DATABASE_TIMEOUT="1")
    eventually(lambda: "became the leader" in operator.log(), timeout=30, what="a leader")
    clip = env.origin.add(env.media.path("image.png"), "behind.png")
    name = new_name("behind")
    stop_postgres_fast(env.postgres)
    try:
        uid = env.create(name, url=env.url(f"/files/{clip}"))["metadata"]["uid"]
        body = env.wait_phase(name, "Ready", "Failed")
        assert body["status"]["phase"] == "Ready"
        assert _condition(body, "Recorded")["reason"] == "DatabaseUnavailable"
        # What the row needs lives on the object until the row is written: a deletion waits.
        eventually(lambda: env.get(name)["metadata"].get("finalizers") ==
                   ["mediaimport.dev/record"], timeout=15, what="the record finalizer")
        env.kube.delete(env.mi_path(name))
        time.sleep(3)
        held = env.get(name)
        assert held is not None and held["metadata"].get("deletionTimestamp")
    finally:
        env.postgres.start()
    row = eventually(lambda: (r := env.row(uid)) and r["status"] == "ready" and r, timeout=60,
                     what="the row written from the deleted import")
    assert row["s3_key"] == body["status"]["result"]["key"]
    eventually(lambda: env.get(name) is None, timeout=30, what="the import to go")


def test_a_recorded_import_holds_no_finalizer(env: Env) -> None:
    env.start_operator()
    clip = env.origin.add(env.media.path("image.png"), "recorded.png")
    name = new_name("recorded")
    env.create(name, url=env.url(f"/files/{clip}"))
    body = env.wait_phase(name, "Ready", "Failed")
    assert body["status"]["phase"] == "Ready"
    eventually(lambda: _condition(env.get(name), "Recorded")["status"] == "True", timeout=20)
    assert "finalizers" not in env.get(name)["metadata"]


def test_an_import_deleted_while_its_row_is_behind_is_recorded(env: Env) -> None:
    env.start_operator(MEDIAIMPORT_DATABASE_TIMEOUT="1",
                       MEDIAIMPORT_JOB_EXTRA_ENV='{"MEDIAIMPORT_RETRIES": "0"}')
    clip = env.origin.add(env.media.path("image.png"), f"deleted-behind-{new_name()}.png")
    name = new_name("delbehind")
    # The first attempt fails (HTTP 500); the Job's next one, ~10 s later, succeeds.
    created = env.create(name, url=env.url(f"/flaky/{clip}?code=500&fail=1"))
    uid = created["metadata"]["uid"]
    eventually(lambda: (b := env.get(name)) and b.get("status", {}).get("conditions")
               and _condition(b, "Succeeded")["reason"] == "Retrying", timeout=60,
               what="the first attempt to fail")
    assert env.row(uid)["status"] == "uploading"
    stop_postgres_fast(env.postgres)
    try:
        body = env.wait_phase(name, "Ready", "Failed")
        assert body["status"]["phase"] == "Ready"
        assert _condition(body, "Recorded")["reason"] == "DatabaseUnavailable"
        env.kube.delete(env.mi_path(name))
        time.sleep(2)
        assert env.get(name) is not None  # held for its row
    finally:
        env.postgres.start()
    eventually(lambda: env.get(name) is None, timeout=60, what="the import to go")
    row = eventually(lambda: (r := env.row(uid)) and r["status"] != "uploading" and r,
                     timeout=60, what="the row to be written")
    assert row["status"] == "ready", row["file_metadata"]
    assert row["s3_key"] == body["status"]["result"]["key"]
    assert row["file_size"] == body["status"]["result"]["size"]
    time.sleep(6)  # an orphan sweep (every 5 s) leaves it as it is
    assert env.row(uid)["status"] == "ready"
