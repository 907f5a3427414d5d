"""The API's reads of media_assets, and its Idempotency-Key records, in Postgres.

The table and its rows are the operator package's (``mediaimport_operator.db``
and ``records``); this module only queries them for one user at a time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from mediaimport_operator.db import Database
from psycopg.rows import dict_row

# Idempotency-Keys are kept 24 hours (written out in the statements below).
MAX_KEY_LENGTH = 255
ASSET_COLUMNS = (
    "id, user_id, name, file_size, file_type, s3_key, thumbnail_s3_key, status, checksum,"
    " file_metadata, created_at, updated_at"
)
# What the 202 of a new import answers from (views.accepted_view): a new row is never
# ready, so the rest of it (its metadata decoded from JSONB, above all) would go unused.
ACCEPTED_COLUMNS = "id, name, file_type, status, created_at"


class CursorError(ValueError):
    pass


def parse_uuid(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


async def asset_on(conn: psycopg.AsyncConnection[Any], user: str, asset_id: str
                   ) -> dict[str, Any] | None:
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        f"SELECT {ASSET_COLUMNS} FROM media_assets"  # noqa: S608 - fixed text, values bound
        " WHERE id = %s AND user_id = %s AND NOT is_deleted",
        (asset_id, user),
    )
    return await cursor.fetchone()


async def get_asset(db: Database, user: str, asset_id: str) -> dict[str, Any] | None:
    await db.ensure_schema()
    async with db.connection() as conn:
        return await asset_on(conn, user, asset_id)


def encode_cursor(row: dict[str, Any]) -> str:
    data = json.dumps([row["created_at"].isoformat(), str(row["id"])]).encode()
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[datetime, str]:
    try:
        created, asset_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        return datetime.fromisoformat(created), str(uuid.UUID(asset_id))
    except (ValueError, TypeError, binascii.Error) as error:
        raise CursorError("the cursor is not one this API handed out") from error


async def list_assets(
    db: Database, user: str, *, status: str | None, media_type: str | None, limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """The user's assets, newest first, and the cursor of the next page (None: no more)."""
    clauses = ["user_id = %s", "NOT is_deleted"]
    params: list[Any] = [user]
    if status is not None:
        clauses.append("status = %s")
        params.append(status)
    if media_type is not None:
        clauses.append("file_type = %s")
        params.append(media_type)
    if cursor is not None:
        created, asset_id = decode_cursor(cursor)
        clauses.append("(created_at, id) < (%s, %s)")
        params += [created, asset_id]
    params.append(limit + 1)
    query = (
        # Fixed clauses only; every value is a bound parameter.
        f"SELECT {ASSET_COLUMNS} FROM media_assets WHERE {' AND '.join(clauses)}"  # noqa: S608
        " ORDER BY created_at DESC, id DESC LIMIT %s"
    )
    await db.ensure_schema()
    async with db.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(query.encode(), params)
        rows = await cur.fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1]) if more and rows else None)


# -- Idempotency-Key ----------------------------------------------------------------------


def fingerprint(document: dict[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def key_problem(key: str) -> str | None:
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        return f"the Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters"
    if not all(" " <= char <= "~" for char in key):
        return "the Idempotency-Key must be printable ASCII"
    return None


@dataclass(frozen=True)
class KeyRecord:
    fingerprint: str
    asset_id: str
    import_name: str


async def claim_key(
    conn: psycopg.AsyncConnection[Any], user: str, key: str, record: KeyRecord
) -> KeyRecord | None:
    """Claim ``key`` for ``record`` inside the caller's transaction.

    None: claimed (new, or its earlier use expired). Otherwise the record that holds
    the key. A concurrent request with the same key waits here until the first
    one's transaction ends, then sees its record, so only one import is created.
    """
    cursor = await conn.execute(
        "INSERT INTO api_idempotency_keys AS k"
        " (user_id, key, fingerprint, asset_id, import_name) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (user_id, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint,"
        "  asset_id = EXCLUDED.asset_id, import_name = EXCLUDED.import_name, created_at = now()"
        " WHERE k.created_at < now() - interval '24 hours'"
        " RETURNING 1",
        (user, key, record.fingerprint, record.asset_id, record.import_name),
    )
    if await cursor.fetchone() is not None:
        return None
    cursor = await conn.execute(
        "SELECT fingerprint, asset_id::text, import_name FROM api_idempotency_keys"
        " WHERE user_id = %s AND key = %s",
        (user, key),
    )
    found = await cursor.fetchone()
    if found is None:  # pragma: no cover - deleted by the purge in between
        return None
    return KeyRecord(found[0], found[1], found[2])


async def purge_keys(db: Database) -> int:
    await db.ensure_schema()
    async with db.connection() as conn:
        cursor = await conn.execute(
            "DELETE FROM api_idempotency_keys WHERE created_at < now() - interval '24 hours'"
        )
        return cursor.rowcount
