"""Creating, reading, waiting for and cancelling imports: what the routes ask for.

A MediaImport and its media_assets row are made together: the row is written
(on the same connection, in the same transaction as an Idempotency-Key claim)
right after the MediaImport is created, and if the row cannot be written the
MediaImport is deleted again, so a failure leaves neither behind. A concurrent
request with the same key waits on the key's row until the first transaction
ends, then answers with the first request's import.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from mediaimport_operator.db import Database, UpsertOutcome, upsert_returning
from mediaimport_operator.kube import ApiError, Json, Kube, mediaimport_path
from mediaimport_operator.model import API_VERSION, KIND, MediaImport, MediaImportSpec, Phase
from mediaimport_operator.records import row_for

from . import metrics, replicate
from .errors import ApiProblem
from .store import (
    ACCEPTED_COLUMNS,
    KeyRecord,
    claim_key,
    complete_key,
    fingerprint,
    get_asset,
    release_key,
)
from .validation import Source
from .views import (
    TERMINAL_JOB_STATUSES,
    accepted_view,
    asset_progress,
    cancelled_row,
    import_name_of,
    is_deleting,
    job_status,
)
from .watch import DELETED, ImportWatch

log = logging.getLogger(__name__)

MANAGED_BY = "mediaimport-api"
LABEL_SOURCE = "mediaimport.dev/source"
# metadata.name rules of a MediaImport (a DNS subdomain, and the CRD's 63 characters).
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$")
# How long a request waits for another one with its Idempotency-Key to be answered.
KEY_WAIT_SECONDS = 5.0
# An asset's progress is extra: its answer does not wait long for Kubernetes.
PROGRESS_READ_SECONDS = 2.0


def manifest(namespace: str, name: str, spec: MediaImportSpec, source: str) -> Json:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY, LABEL_SOURCE: source},
        },
        "spec": spec.wire(),
    }


def url_import_name(asset_id: str) -> str:
    return f"imp-{asset_id}"


@contextlib.asynccontextmanager
async def kubernetes_errors() -> AsyncIterator[None]:
    """The Kubernetes API's failures as answers: its own refusals, or 503 when unreachable."""
    try:
        yield
    except ApiError as error:
        if error.status == 422:
            raise ApiProblem(422, "validation_failed", f"Kubernetes refused the import: {error}"
                             ) from error
        if error.status in (429,) or error.status >= 500:
            raise ApiProblem(503, "unavailable", "The Kubernetes API is unavailable; retry.",
                             headers={"Retry-After": "1"}) from error
        log.exception("the Kubernetes API refused a request")
        raise ApiProblem(500, "internal", "The Kubernetes API refused the request.") from error
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        raise ApiProblem(503, "unavailable", "The Kubernetes API cannot be reached; retry.",
                         headers={"Retry-After": "1"}) from error


@dataclass(frozen=True)
class Created:
    # A new import's ACCEPTED_COLUMNS (it is uploading); empty for a replay.
    row: dict[str, Any]
    import_name: str
    # A replay: the key's record, whose answer (status, body) the first request gave.
    replay: KeyRecord | None = None


@dataclass
class Imports:
    kube: Kube
    db: Database
    namespace: str
    watch: ImportWatch
    # The namespaces whose rows the API answers (Settings.served): this one first.
    served: tuple[str, ...]

    # -- import-from-url ---------------------------------------------------------------
    async def create_from_url(self, user: str, source: Source, key: str | None) -> Created:
        """Create the import and its row; with an Idempotency-Key, or the replay of the
        key's first request.

        With a key, the key is claimed first (a statement of its own), then the
        MediaImport is created with no database connection held, then the row is written
        and the key's answer recorded in one short transaction. A request with the same
        key meanwhile waits at most KEY_WAIT_SECONDS for that answer, polling without a
        connection, then answers 409 ``in_progress``.
        """
        await self.db.ensure_schema()
        asset_id = str(uuid.uuid4())
        name = url_import_name(asset_id)
        spec = MediaImportSpec.model_validate({
            "url": source.url, "userId": user, "type": source.type, "name": source.name,
            "assetId": asset_id, "metadata": source.metadata,
        })
        body = manifest(self.namespace, name, spec, "url")
        if key is not None:
            held = await self._claim(user, key, KeyRecord(
                fingerprint(source.fingerprint()), asset_id, name))
            if held is not None:
                return Created({}, held.import_name, replay=held)
        created: Json | None = None
        try:
            created = await self._create(body)
            row = await self._write_row(created, source.guessed_type, user, key)
        except BaseException:
            if created is not None:
                await asyncio.shield(self._delete_quietly(created))
            if key is not None:
                await asyncio.shield(self._release_quietly(user, key, asset_id))
            raise
        metrics.IMPORTS_CREATED.labels("url").inc()
        return Created(row, name)

    async def _write_row(self, created: Json, guessed_type: str | None, user: str,
                         key: str | None) -> dict[str, Any]:
        """The new import's row, and with a key its answer (202), in one transaction."""
        async with self.db.connection() as conn, conn.transaction():
            row = await self._record(conn, created, guessed_type)
            if key is None:
                return row
            name, asset_id = created["metadata"]["name"], str(row["id"])
            if not await complete_key(conn, user, key, asset_id, code=202,
                                      body=accepted_view(row, name, guessed_type)):
                # Only when this request outlived STALE_CLAIM_SECONDS and another took
                # the key over: the row is rolled back with the transaction.
                raise ApiProblem(409, "in_progress", "Another request with this "
                                 "Idempotency-Key took over; retry to get its answer.",
                                 headers={"Retry-After": "1"})
            return row

    async def _claim(self, user: str, key: str, record: KeyRecord) -> KeyRecord | None:
        """None once ``key`` is ours; else the record of the request that holds it, with
        its answer (ApiProblem 409 for another body, or while it is still in progress at
        the bound)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + KEY_WAIT_SECONDS
        pause = 0.05
        while True:
            held = await claim_key(self.db, user, key, record)
            if held is None:
                return None
            if held.fingerprint != record.fingerprint:
                raise ApiProblem(
                    409, "idempotency_conflict",
                    "This Idempotency-Key was used with a different request body.",
                    details={"id": held.asset_id, "import_job_id": held.import_name},
                )
            if held.response_code is not None:
                return held
            if loop.time() + pause > deadline:
                raise ApiProblem(
                    409, "in_progress",
                    "A request with this Idempotency-Key is still in progress; retry after "
                    "it has been answered.",
                    details={"id": held.asset_id, "import_job_id": held.import_name},
                    headers={"Retry-After": "1"},
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)

    async def record_answer(self, user: str, key: str, asset_id: str, code: int,
                            body: dict[str, Any] | None) -> None:
        """The first request's final answer (after waiting for the import), for replays."""
        async with self.db.connection() as conn:
            await complete_key(conn, user, key, asset_id, code=code, body=body)

    async def _release_quietly(self, user: str, key: str, asset_id: str) -> None:
        try:
            await release_key(self.db, user, key, asset_id)
        except Exception as error:  # it is taken over as stale later
            log.warning("could not release an Idempotency-Key",
                        extra={"error": str(error) or type(error).__name__})

    async def _create(self, body: Json) -> Json:
        async with kubernetes_errors():
            return await self.kube.request("POST", mediaimport_path(self.namespace), body=body)

    @staticmethod
    async def _record(conn: Any, created: Json, guessed_type: str | None) -> dict[str, Any]:
        """Write the new import's row; what the 202 answers from, as written.

        Without a declared type the row takes the one the 202 names (from the file name),
        so the asset and the type filter agree with the 202 until the probe says what the
        file is; the MediaImport still declares nothing, so the job judges the file as is.
        """
        mi = MediaImport.from_body(created)
        asset = row_for(mi)
        if asset.file_type is None:
            asset = dataclasses.replace(asset, file_type=guessed_type)
        row = await upsert_returning(conn, asset, ACCEPTED_COLUMNS)
        if row is None:
            raise RuntimeError(f"the row of {mi.ref.name} was not written")
        return row

    async def _delete_quietly(self, body: Json) -> None:
        meta = body["metadata"]
        try:
            await self.kube.request(
                "DELETE", mediaimport_path(self.namespace, meta["name"]),
                body={"preconditions": {"uid": meta["uid"]}, "propagationPolicy": "Background"},
            )
        except Exception as error:
            log.warning("could not delete a half-made import",
                        extra={"mediaimport": meta["name"], "error": str(error)})

    async def wait_for_outcome(self, user: str, asset_id: str, name: str, seconds: float
                               ) -> dict[str, Any] | None:
        """The asset's row once it is ready or failed, or as it is after ``seconds``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        with self.watch.subscribed(name) as subscription:
            row = await get_asset(self.db, user, asset_id, self.served)
            while row is not None and row["status"] == "uploading":
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                update = await subscription.next(remaining)
                if update is None:
                    row = await get_asset(self.db, user, asset_id, self.served)
                    break
                if update.type == DELETED or is_deleting(update.body):
                    # Deletion is final: the answer is the Cancelled failure now, not
                    # when the operator gets round to failing the row (nothing else
                    # would come to end the wait before its bound).
                    row = await get_asset(self.db, user, asset_id, self.served)
                    if row is not None and row["status"] == "uploading":
                        row = cancelled_row(row)
                elif job_status(update.body)["status"] in TERMINAL_JOB_STATUSES:
                    row = await get_asset(self.db, user, asset_id, self.served)
        return row

    async def progress_of(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """An uploading asset's progress, read from its MediaImport; None for a finished
        asset, before the first report, and when Kubernetes does not answer in time (the
        asset itself comes from Postgres and is answered all the same)."""
        name = import_name_of(row)
        if row.get("status") != "uploading" or name is None or not _NAME.match(name):
            return None
        if row.get("namespace") not in (None, self.namespace):
            # Another served namespace's import: the API reads MediaImports of its own only.
            return None
        try:
            body = await asyncio.wait_for(
                self.kube.get(mediaimport_path(self.namespace, name)), PROGRESS_READ_SECONDS)
        except (ApiError, aiohttp.ClientError, TimeoutError, OSError) as error:
            log.warning("could not read an import's progress",
                        extra={"mediaimport": name, "error": str(error) or type(error).__name__})
            return None
        return asset_progress(row, body)

    # -- imports by name ---------------------------------------------------------------
    async def get_owned(self, user: str, name: str) -> Json:
        """The user's MediaImport called ``name``; 404 when absent or another user's."""
        body = None
        if _NAME.match(name):
            async with kubernetes_errors():
                body = await self.kube.get(mediaimport_path(self.namespace, name))
        if body is None or (body.get("spec") or {}).get("userId") != user:
            raise ApiProblem(404, "not_found", f"No import named {name!r}.")
        return body

    async def cancel(self, user: str, name: str) -> Json:
        """Delete the user's MediaImport (the operator cleans up); its last state."""
        body = await self.get_owned(user, name)
        async with kubernetes_errors():
            try:
                await self.kube.request(
                    "DELETE", mediaimport_path(self.namespace, name),
                    body={"preconditions": {"uid": body["metadata"]["uid"]},
                          "propagationPolicy": "Background"},
                )
            except ApiError as error:
                if error.status not in (404, 409):  # 409: replaced by another of that name
                    raise
                raise ApiProblem(404, "not_found", f"No import named {name!r}.") from error
        return body

    # -- webhook deliveries ------------------------------------------------------------
    async def import_output(
        self, user: str, prediction: replicate.Prediction, index: int, url: str,
        context_metadata: dict[str, Any],
    ) -> tuple[str, str, bool]:
        """(asset id, import name, created) of one output; the same on a redelivery."""
        name = replicate.import_name(user, prediction.id, index)
        asset_id = replicate.asset_id(user, prediction.id, index)
        spec = MediaImportSpec.model_validate({
            "url": url, "userId": user, "assetId": asset_id,
            "metadata": {**context_metadata, **prediction.metadata},
        })
        async with kubernetes_errors():
            body, created = await self.kube.create(
                mediaimport_path(self.namespace), manifest(self.namespace, name, spec, "webhook")
            )
        existing = body.get("spec") or {}
        if existing.get("userId") != user or existing.get("assetId") != asset_id:
            raise ApiProblem(409, "conflict", f"A different import is named {name!r}.")
        mi = MediaImport.from_body(body)
        if created or mi.status.phase in (None, Phase.PENDING):
            outcome = await self.db.upsert(row_for(mi))
            if outcome is UpsertOutcome.CONFLICT:
                log.error("asset id of a webhook import is taken", extra={"asset_id": asset_id})
        if created:
            metrics.IMPORTS_CREATED.labels("webhook").inc()
        return asset_id, name, created
