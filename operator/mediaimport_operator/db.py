"""The media_assets table through psycopg 3 and an async pool.

- Versioned migrations (``migrations/NNNN_*.sql``) run once per database, in
  order, inside one transaction that holds a transaction-level advisory lock, so
  two operator replicas starting together never race; ``schema_migrations``
  records what ran.
- Every write is an idempotent upsert keyed by the asset id. A terminal row
  (ready/failed) is never moved back to uploading, and a row that another user or
  another MediaImport owns is never overwritten (reported as a conflict).
- Any connection problem surfaces as ``DatabaseUnavailable``, any other refusal of
  the database (a value jsonb cannot hold, a constraint, a schema that drifted) as
  ``RowRejected``: both are ``DatabaseError``, so callers keep going in Kubernetes,
  report it, and retry the write later.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import importlib.resources
import logging
import re
import select
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from .records import IMPORT_KEY, AssetRow, cancelled_error

log = logging.getLogger(__name__)

# pg_advisory_xact_lock key: "mediaimport" as a stable 63-bit number.
MIGRATION_LOCK_ID = 0x6D65_6469_6169_6D70
_MIGRATION_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class DatabaseError(Exception):
    """A write or read of media_assets did not happen."""


class DatabaseUnavailable(DatabaseError):  # noqa: N818 - a condition, not a programming error
    """Postgres could not be reached or answered with a connection-level error."""


class RowRejected(DatabaseError):  # noqa: N818 - a condition, not a programming error
    """Postgres answered, and refused the statement (data, constraint or schema)."""


class UpsertOutcome(enum.Enum):
    WRITTEN = "written"
    TERMINAL = "terminal"  # the row is already ready/failed; left as it is
    CONFLICT = "conflict"  # another user or another MediaImport owns this id


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    folder = importlib.resources.files("mediaimport_operator") / "migrations"
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions: {versions}")
    return found


_UPSERT_TEMPLATE = """
INSERT INTO media_assets AS a (
    id, user_id, name, file_size, file_type, s3_key, thumbnail_s3_key,
    status, checksum, file_metadata, namespace, created_at, updated_at
) VALUES (
    %(id)s, %(user_id)s, %(name)s, %(file_size)s, %(file_type)s, %(s3_key)s,
    %(thumbnail_s3_key)s, %(status)s, %(checksum)s, %(file_metadata)s, %(namespace)s,
    now(), now()
)
ON CONFLICT (id) DO UPDATE SET
    name = EXCLUDED.name,
    file_size = COALESCE(EXCLUDED.file_size, a.file_size),
    file_type = COALESCE(EXCLUDED.file_type, a.file_type),
    s3_key = COALESCE(EXCLUDED.s3_key, a.s3_key),
    thumbnail_s3_key = COALESCE(EXCLUDED.thumbnail_s3_key, a.thumbnail_s3_key),
    status = EXCLUDED.status,
    checksum = COALESCE(EXCLUDED.checksum, a.checksum),
    file_metadata = a.file_metadata || EXCLUDED.file_metadata,
    updated_at = now()
WHERE a.user_id = EXCLUDED.user_id
  AND (a.namespace IS NULL OR a.namespace = EXCLUDED.namespace)
  AND (a.file_metadata -> 'mediaimport' ->> 'uid' IS NULL
       OR a.file_metadata -> 'mediaimport' ->> 'uid'
          = EXCLUDED.file_metadata -> 'mediaimport' ->> 'uid')
  -- never regress: uploading may become anything, a terminal row only itself again
  AND (a.status = 'uploading' OR a.status = EXCLUDED.status)
RETURNING {returning}
"""
_UPSERT = _UPSERT_TEMPLATE.format(returning="a.status")


@functools.cache
def _upsert_returning(columns: str) -> str:
    # One text per column list: psycopg prepares a statement by its text.
    return _UPSERT_TEMPLATE.format(returning=columns)


def row_params(row: AssetRow) -> dict[str, Any]:
    """The upsert's parameters for ``row``."""
    return {
        "id": row.id,
        "user_id": row.user_id,
        "name": row.name,
        "file_size": row.file_size,
        "file_type": row.file_type,
        "s3_key": row.s3_key,
        "thumbnail_s3_key": row.thumbnail_s3_key,
        "status": row.status,
        "checksum": row.checksum,
        "file_metadata": Jsonb(row.file_metadata or {}),
        "namespace": row.namespace,
    }


async def upsert_on(conn: psycopg.AsyncConnection[Any], row: AssetRow) -> bool:
    """The upsert on a connection the caller holds (e.g. inside its transaction).

    True when written; False when refused (a terminal row, or another's id).
    """
    cursor = await conn.execute(_UPSERT, row_params(row))
    return await cursor.fetchone() is not None


async def upsert_returning(
    conn: psycopg.AsyncConnection[Any], row: AssetRow, columns: str
) -> dict[str, Any] | None:
    """The upsert on the caller's connection, answering ``columns`` of the row as written
    (None when refused): the write and the read of what it wrote in one round trip.
    ``columns`` is fixed text of the caller's, never a value."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(_upsert_returning(columns), row_params(row))
    return await cursor.fetchone()


async def check_if_disturbed(conn: psycopg.AsyncConnection[Any]) -> None:
    """The pool's check at checkout, without a round trip for a healthy connection.

    An idle connection has nothing to read: the server sends nothing unasked between
    statements except when it ends the session (a restart, an idle timeout, a
    terminated backend: a FATAL message, then EOF). So only a connection with
    something to read is pinged; a ping that fails makes the pool replace it.
    """
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
    if poller.poll(0):
        await AsyncConnectionPool.check_connection(conn)


class Database:
    """A pool of connections to one Postgres database, opened lazily."""

    def __init__(self, url: str, *, pool_size: int = 4, timeout: float = 3.0) -> None:
        self.url = url
        self.timeout = timeout
        self._pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=timeout,
            # A connection broken by a database restart is noticed at checkout,
            # not by the statement that would then fail.
            check=check_if_disturbed,
            kwargs={"connect_timeout": max(1, int(timeout)), "autocommit": True},
            # Keep trying in the background for as long as the operator lives.
            reconnect_timeout=24 * 3600.0,
            name="media_assets",
        )
        self._opened = False
        self._migrated = False
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        if not self._opened:
            await self._pool.open(wait=False)
            self._opened = True

    async def close(self) -> None:
        if self._opened:
            await self._pool.close()
            self._opened = False

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        await self.open()
        try:
            async with self._pool.connection(timeout=self.timeout) as conn:
                yield conn
        except (PoolTimeout, psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise DatabaseUnavailable(str(exc).strip() or type(exc).__name__) from exc
        except psycopg.Error as exc:
            raise RowRejected(str(exc).strip() or type(exc).__name__) from exc

    def connection(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        """A pooled connection (autocommit; ``conn.transaction()`` for more than one
        statement); DatabaseUnavailable when Postgres cannot be reached, RowRejected when
        it refuses a statement."""
        return self._connection()

    async def ensure_schema(self) -> list[str]:
        """Apply pending migrations (once per process); the names of those applied."""
        if self._migrated:
            return []
        async with self._lock:
            if self._migrated:
                return []
            applied = await self._migrate()
            self._migrated = True
            return applied

    async def _migrate(self) -> list[str]:
        migrations = load_migrations()
        applied: list[str] = []
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY,"
                " name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cursor = await conn.execute("SELECT version FROM schema_migrations")
            done = {row[0] for row in await cursor.fetchall()}
            for migration in migrations:
                if migration.version in done:
                    continue
                await conn.execute(migration.sql.encode())
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
                applied.append(migration.name)
        if applied:
            log.info("applied database migrations", extra={"migrations": applied})
        return applied

    async def upsert(self, row: AssetRow) -> UpsertOutcome:
        """Write ``row`` unless that would regress a terminal row or take another's id."""
        await self.ensure_schema()
        async with self._connection() as conn:
            if await upsert_on(conn, row):
                return UpsertOutcome.WRITTEN
            existing = await self._owner(conn, row.id)
        if existing is None:  # pragma: no cover - deleted between the statements
            return UpsertOutcome.WRITTEN
        user_id, uid, namespace = existing
        if (user_id != row.user_id or (uid is not None and uid != row.import_uid)
                or (namespace is not None and namespace != row.namespace)):
            return UpsertOutcome.CONFLICT
        return UpsertOutcome.TERMINAL

    async def _owner(
        self, conn: psycopg.AsyncConnection[Any], asset_id: str
    ) -> tuple[str, str | None, str | None] | None:
        cursor = await conn.execute(
            "SELECT user_id, file_metadata -> 'mediaimport' ->> 'uid', namespace"
            " FROM media_assets WHERE id = %s",
            (asset_id,),
        )
        found = await cursor.fetchone()
        return (found[0], found[1], found[2]) if found else None

    async def cancel(self, asset_id: str, import_uid: str, now: datetime) -> bool:
        """Fail a row that is still uploading (its MediaImport was deleted)."""
        await self.ensure_schema()
        async with self._connection() as conn:
            cursor = await conn.execute(
                "UPDATE media_assets SET status = 'failed',"
                " file_metadata = file_metadata || %s, updated_at = now()"
                " WHERE id = %s AND status = 'uploading'"
                " AND file_metadata -> 'mediaimport' ->> 'uid' = %s",
                (Jsonb(cancelled_error(now)), asset_id, import_uid),
            )
            return cursor.rowcount > 0

    async def mark_deleted(self, asset_id: str, import_uid: str) -> bool:
        """Flag the row of an import whose stored objects were deleted."""
        await self.ensure_schema()
        async with self._connection() as conn:
            cursor = await conn.execute(
                "UPDATE media_assets SET is_deleted = true, updated_at = now()"
                " WHERE id = %s AND file_metadata -> 'mediaimport' ->> 'uid' = %s",
                (asset_id, import_uid),
            )
            return cursor.rowcount > 0

    async def uploading(self) -> list[tuple[str, dict[str, Any]]]:
        """(asset id, MediaImport reference) of every row still uploading."""
        await self.ensure_schema()
        async with self._connection() as conn:
            cursor = await conn.execute(
                "SELECT id::text, file_metadata -> 'mediaimport' FROM media_assets"
                " WHERE status = 'uploading' AND file_metadata ? 'mediaimport'"
            )
            return [(row[0], row[1]) for row in await cursor.fetchall() if isinstance(row[1], dict)]

    async def get(self, asset_id: str) -> dict[str, Any] | None:
        await self.ensure_schema()
        async with self._connection() as conn:
            conn.row_factory = dict_row
            try:
                cursor = await conn.execute(
                    "SELECT * FROM media_assets WHERE id = %s", (asset_id,)
                )
                return await cursor.fetchone()
            finally:
                conn.row_factory = psycopg.rows.tuple_row


__all__ = [
    "IMPORT_KEY",
    "Database",
    "DatabaseError",
    "DatabaseUnavailable",
    "RowRejected",
    "UpsertOutcome",
    "check_if_disturbed",
    "row_params",
    "upsert_on",
    "upsert_returning",
]
