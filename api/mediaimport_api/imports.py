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
from .store import ACCEPTED_COLUMNS, KeyRecord, claim_key, fingerprint, get_asset
from .validation import Source
from .views import TERMINAL_JOB_STATUSES, asset_progress, import_name_of, job_status
from .watch import DELETED, ImportWatch

log = logging.getLogger(__name__)

MANAGED_BY = "mediaimport-api"
LABEL_SOURCE = "mediaimport.dev/source"
# metadata.name rules of a MediaImport (a DNS subdomain, and the CRD's 63 characters).
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$")
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
    # A replayed import's whole row; a new one's ACCEPTED_COLUMNS (it is uploading).
    row: dict[str, Any]
    import_name: str
    replayed: bool = False


@dataclass
class Imports:
    kube: Kube
    db: Database
    namespace: str
    watch: ImportWatch

    # -- import-from-url ---------------------------------------------------------------
    async def create_from_url(self, user: str, source: Source, key: str | None) -> Created:
        await self.db.ensure_schema()
        asset_id = str(uuid.uuid4())
        name = url_import_name(asset_id)
        spec = MediaImportSpec.model_validate({
            "url": source.url, "userId": user, "type": source.type, "name": source.name,
            "assetId": asset_id, "metadata": source.metadata,
        })
        body = manifest(self.namespace, name, spec, "url")
        created: Json | None = None
        held: KeyRecord | None = None
        try:
            if key is None:
                created = await self._create(body)
                async with self.db.connection() as conn:  # one upsert: atomic by itself
                    row = await self._record(conn, created, source.guessed_type)
            else:
                # The key's claim, the MediaImport and the row in one transaction: a
                # concurrent request with the same key waits here for its outcome.
                record = KeyRecord(fingerprint(source.fingerprint()), asset_id, name)
                async with self.db.connection() as conn, conn.transaction():
                    held = await claim_key(conn, user, key, record)
                    if held is None:
                        created = await self._create(body)
                        row = await self._record(conn, created, source.guessed_type)
        except BaseException:
            if created is not None:
                await asyncio.shield(self._delete_quietly(created))
            raise
        if held is not None:
            if held.fingerprint != fingerprint(source.fingerprint()):
                raise ApiProblem(
                    409, "idempotency_conflict",
                    "This Idempotency-Key was used with a different request body.",
                    details={"id": held.asset_id, "import_job_id": held.import_name},
                )
            existing = await get_asset(self.db, user, held.asset_id)
            if existing is None:
                raise ApiProblem(409, "idempotency_conflict",
                                 "The import of this Idempotency-Key no longer exists.")
            return Created(existing, held.import_name, replayed=True)
        metrics.IMPORTS_CREATED.labels("url").inc()
        return Created(row, name)

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
            row = await get_asset(self.db, user, asset_id)
            while row is not None and row["status"] == "uploading":
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                update = await subscription.next(remaining)
                if update is None:
                    row = await get_asset(self.db, user, asset_id)
                    break
                if update.type == DELETED or job_status(update.body)["status"] in (
                    TERMINAL_JOB_STATUSES
                ):
                    row = await get_asset(self.db, user, asset_id)
        return row

    async def progress_of(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """An uploading asset's progress, read from its MediaImport; None for a finished
        asset, before the first report, and when Kubernetes does not answer in time (the
        asset itself comes from Postgres and is answered all the same)."""
        name = import_name_of(row)
        if row.get("status") != "uploading" or name is None or not _NAME.match(name):
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
