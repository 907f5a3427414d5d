"""The API's reads of media_assets, and its Idempotency-Key records, in Postgres.

The table and its rows are the operator package's (``mediaimport_operator.db``
and ``records``); this module only queries them for one user at a time, and only
rows of the namespaces the API serves: an import made in another namespace for a
user's id is not that user's (rows without a namespace, which the application wrote
itself without an import, are).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from mediaimport_operator.db import Database
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

# Idempotency-Keys are kept 24 hours (written out in the statements below).
MAX_KEY_LENGTH = 255
ASSET_COLUMNS = (
    "id, user_id, name, file_size, file_type, s3_key, thumbnail_s3_key, status, checksum,"
    " file_metadata, namespace, created_at, updated_at"
)
# The rows of the served namespaces (a bound list) and the application's own.
SERVED = "(namespace IS NULL OR namespace = ANY(%s))"
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


async def asset_on(conn: psycopg.AsyncConnection[Any], user: str, asset_id: str,
                   namespaces: Sequence[str]) -> dict[str, Any] | None:
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        f"SELECT {ASSET_COLUMNS} FROM media_assets"  # noqa: S608 - fixed text, values bound
        f" WHERE id = %s AND user_id = %s AND NOT is_deleted AND {SERVED}",
        (asset_id, user, list(namespaces)),
    )
    return await cursor.fetchone()


async def get_asset(db: Database, user: str, asset_id: str, namespaces: Sequence[str]
                    ) -> dict[str, Any] | None:
    """The user's asset ``asset_id`` if it is of one of ``namespaces`` (or of none)."""
    await db.ensure_schema()
    async with db.connection() as conn:
        return await asset_on(conn, user, asset_id, namespaces)


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
    db: Database, user: str, *, namespaces: Sequence[str], status: str | None,
    media_type: str | None, limit: int, cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """The user's assets of ``namespaces`` (or of none), newest first, and the cursor of
    the next page (None: no more)."""
    clauses = ["user_id = %s", "NOT is_deleted", SERVED]
    params: list[Any] = [user, list(namespaces)]
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


# A claim whose request never finished (its process died) is taken over after this: longer
# than a request can run (the Kubernetes client's 30 s timeout, then the row).
STALE_CLAIM_SECONDS = 120


@dataclass(frozen=True)
class KeyRecord:
    fingerprint: str
    asset_id: str
    import_name: str
    # The first request's answer; None while it still runs.
    response_code: int | None = None
    response_body: dict[str, Any] | None = None


async def claim_key(db: Database, user: str, key: str, record: KeyRecord) -> KeyRecord | None:
    """Claim ``key`` for ``record`` (in progress), in a statement of its own.

    None: claimed (new, expired, or left in progress by a request that died); the caller
    creates the import and then ``complete_key`` or ``release_key``. Otherwise the record
    that holds the key, in progress or with its answer. Nothing waits on a row lock and
    no connection is held while the import is made.
    """
    await db.ensure_schema()
    async with db.connection() as conn:
        cursor = await conn.execute(
            "INSERT INTO api_idempotency_keys AS k (user_id, key, fingerprint, asset_id,"
            " import_name, response_code, response_body)"
            " VALUES (%s, %s, %s, %s, %s, NULL, NULL)"
            " ON CONFLICT (user_id, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint,"
            "  asset_id = EXCLUDED.asset_id, import_name = EXCLUDED.import_name,"
            "  response_code = NULL, response_body = NULL, created_at = now()"
            " WHERE k.created_at < now() - interval '24 hours'"
            "  OR (k.response_code IS NULL"
            "      AND k.created_at < now() - make_interval(secs => %s))"
            " RETURNING 1",
            (user, key, record.fingerprint, record.asset_id, record.import_name,
             STALE_CLAIM_SECONDS),
        )
        if await cursor.fetchone() is not None:
            return None
        return await _key_on(conn, user, key)


async def read_key(db: Database, user: str, key: str) -> KeyRecord | None:
    async with db.connection() as conn:
        return await _key_on(conn, user, key)


async def _key_on(conn: psycopg.AsyncConnection[Any], user: str, key: str
                  ) -> KeyRecord | None:
    cursor = await conn.execute(
        "SELECT fingerprint, asset_id::text, import_name, response_code, response_body"
        " FROM api_idempotency_keys WHERE user_id = %s AND key = %s",
        (user, key),
    )
    found = await cursor.fetchone()
    if found is None:  # deleted by the purge or a release in between
        return None
    return KeyRecord(found[0], found[1], found[2], found[3], found[4])


async def complete_key(conn: psycopg.AsyncConnection[Any], user: str, key: str,
                       asset_id: str, *, code: int, body: dict[str, Any] | None) -> bool:
    """Record the answer of the claim for ``asset_id``; False if the claim was lost (taken
    over as stale)."""
    cursor = await conn.execute(
        "UPDATE api_idempotency_keys SET response_code = %s, response_body = %s"
        " WHERE user_id = %s AND key = %s AND asset_id = %s",
        (code, Jsonb(body) if body is not None else None, user, key, asset_id),
    )
    return cursor.rowcount == 1


async def release_key(db: Database, user: str, key: str, asset_id: str) -> None:
    """Give up an unfinished claim (the import was not made): the key is free again."""
    async with db.connection() as conn:
        await conn.execute(
            "DELETE FROM api_idempotency_keys"
            " WHERE user_id = %s AND key = %s AND asset_id = %s AND response_code IS NULL",
            (user, key, asset_id),
        )


# -- Webhook deliveries -------------------------------------------------------------------


def context_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def bind_delivery(db: Database, webhook_id: str, user: str, context: str,
                        expires_at: float) -> str | None:
    """Bind a delivery's webhook-id to the context it came with, until ``expires_at`` (Unix
    seconds: when its signature stops being accepted). None when it is bound to this
    context (first seen now, or again: a retry); otherwise the user it is bound to."""
    await db.ensure_schema()
    async with db.connection() as conn:
        cursor = await conn.execute(
            "INSERT INTO api_webhook_deliveries AS d"
            " (webhook_id, user_id, context_hash, expires_at)"
            " VALUES (%s, %s, %s, to_timestamp(%s))"
            " ON CONFLICT (webhook_id) DO UPDATE SET user_id = EXCLUDED.user_id,"
            "  context_hash = EXCLUDED.context_hash,"
            "  expires_at = GREATEST(d.expires_at, EXCLUDED.expires_at)"
            " WHERE d.expires_at < now()"
            "  OR (d.user_id = EXCLUDED.user_id AND d.context_hash = EXCLUDED.context_hash)"
            " RETURNING 1",
            (webhook_id, user, context_hash(context), expires_at),
        )
        if await cursor.fetchone() is not None:
            return None
        cursor = await conn.execute(
            "SELECT user_id FROM api_webhook_deliveries WHERE webhook_id = %s", (webhook_id,))
        found = await cursor.fetchone()
    return str(found[0]) if found is not None else None


async def purge_keys(db: Database) -> int:
    """Remove expired Idempotency-Keys and delivery records; how many."""
    await db.ensure_schema()
    async with db.connection() as conn:
        cursor = await conn.execute(
            "DELETE FROM api_idempotency_keys WHERE created_at < now() - interval '24 hours'"
        )
        removed = cursor.rowcount
        cursor = await conn.execute("DELETE FROM api_webhook_deliveries WHERE expires_at < now()")
        return removed + cursor.rowcount
