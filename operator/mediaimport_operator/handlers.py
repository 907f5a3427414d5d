"""kopf adapters: thin handlers that parse, call the reconciler, and map errors to kopf's.

Everything is registered on a registry given by the caller (``register``), so
the settings (intervals, the deletion finalizer) are known before any handler
exists, and tests can build an operator without import-time side effects.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp
import kopf

from .db import Database, DatabaseUnavailable
from .jobs import MANAGED_BY
from .kube import ApiError, Json, Kube
from .model import GROUP, PLURAL, VERSION, MediaImport, MediaImportStatus, Phase
from .objects import ObjectStore
from .reconcile import Reconciler, RetryLater
from .settings import Settings
from .status import Event, needs_recording

log = logging.getLogger(__name__)

FINALIZER = "mediaimport.dev/finalizer"
ANNOTATION_PREFIX = "mediaimport.dev"
JOB_SELECTOR = {"app.kubernetes.io/managed-by": MANAGED_BY}
# What a later attempt may not meet again: the API server or the network, for a while.
TRANSIENT = (RetryLater, ApiError, OSError, TimeoutError, aiohttp.ClientError)


@dataclass
class Runtime:
    """What the handlers share; kept in kopf's memo."""

    settings: Settings
    kube: Kube
    db: Database | None
    reconciler: Reconciler
    objects: ObjectStore = field(default_factory=ObjectStore)
    background: list[asyncio.Task[None]] = field(default_factory=list)


class SpecDigestStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's last-handled configuration, with the spec replaced by its SHA-256.

    The spec is immutable, so no handler needs a field-level diff of it; and a
    copy of a large free-form ``spec.metadata`` in an annotation could push the
    object over the 256 KiB annotation limit, after which kopf could never record
    that it handled the object.
    """

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        essence = dict(super().build(body=body, extra_fields=extra_fields))
        spec = json.dumps(essence.get("spec") or {}, sort_keys=True, separators=(",", ":"))
        essence["spec"] = {"sha256": hashlib.sha256(spec.encode()).hexdigest()}
        return cast(kopf.BodyEssence, essence)


def post_event(body: Json, event: Event) -> None:
    """Events go through kopf's posting queue (rate-limited, non-blocking)."""
    kopf.event(cast(Any, body), type=event.type, reason=event.reason, message=event.message)


def build_runtime(settings: Settings) -> Runtime:
    kube = Kube(concurrency=settings.concurrency, timeout=settings.api_timeout)
    db = (
        Database(
            settings.database_url,
            pool_size=settings.database_pool_size,
            timeout=settings.database_timeout,
        )
        if settings.database_url
        else None
    )
    reconciler = Reconciler(settings=settings, kube=kube, db=db, post_event=post_event)
    return Runtime(settings=settings, kube=kube, db=db, reconciler=reconciler)


def register(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:  # noqa: PLR0915
    settings = runtime.settings
    rec = runtime.reconciler
    resource = (GROUP, VERSION, PLURAL)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A registry of our own gets no default login: use the kubernetes client's
        # loaders (kubeconfig or in-cluster), as kopf's default does.
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        ours = runtime.settings
        # Progress and the last handled spec live in our own annotations: the status
        # schema is strict (kopf's default status.kopf would be pruned), and the
        # names say whose they are.
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix=ANNOTATION_PREFIX
        )
        settings.persistence.diffbase_storage = SpecDigestStorage(
            prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
        )
        # A silent watch must not blind the operator: bounded on both ends.
        settings.watching.server_timeout = ours.watch_server_timeout
        settings.watching.client_timeout = ours.watch_client_timeout
        settings.watching.connect_timeout = ours.watch_connect_timeout
        # Only our Jobs, filtered by the API server rather than after the transfer.
        settings.watching.label_selectors["batch", "jobs"] = (
            f"app.kubernetes.io/managed-by={MANAGED_BY}"
        )
        settings.watching.label_selectors["", "v1", "pods"] = (
            f"app.kubernetes.io/managed-by={MANAGED_BY}"
        )
        settings.networking.request_timeout = ours.api_timeout
        settings.networking.connect_timeout = ours.watch_connect_timeout
        settings.posting.level = logging.getLevelName(ours.event_level)
        settings.posting.reporting_component = "mediaimport-operator"
        settings.posting.reporting_instance = ours.identity
        settings.execution.max_workers = ours.concurrency
        # High availability is the Lease's job (see leader.py), not kopf peering's.
        settings.peering.standalone = True
        if runtime.db is not None:
            try:
                await runtime.db.ensure_schema()
            except DatabaseUnavailable as error:
                log.warning("database unavailable at start; migrations run on first use",
                            extra={"error": str(error)})
        runtime.background.append(asyncio.create_task(_sweep_forever(runtime)))

    @kopf.on.cleanup(registry=registry)
    async def close(**_: Any) -> None:
        runtime.background.extend(retries)
        for task in runtime.background:
            task.cancel()
        for task in runtime.background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if runtime.db is not None:
            await runtime.db.close()
        await runtime.kube.close()

    retries: set[asyncio.Task[None]] = set()

    def later(delay: float, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` after ``delay`` seconds, as a task cancelled at clean-up."""

        async def run() -> None:
            await asyncio.sleep(delay)
            await work()

        task = asyncio.create_task(run())
        retries.add(task)
        task.add_done_callback(retries.discard)

    def retry_later(job: Json, attempt: int) -> None:
        """Event handlers are not retried by kopf: the last event of a finished Job must
        not be lost to one failed API call, so its import is converged again later."""
        meta = job.get("metadata", {})
        owner = next((r for r in meta.get("ownerReferences") or [] if r.get("controller")), None)
        if owner is None:
            return

        async def again() -> None:
            try:
                await rec.sync(meta.get("namespace", ""), owner["name"])
            except TRANSIENT as error:
                log.warning("job event retry failed", extra={"error": str(error),
                                                             "attempt": attempt})
                if attempt < 10:
                    retry_later(job, attempt + 1)

        later(min(60.0, 2.0**attempt), again)

    @kopf.on.event("batch", "v1", "jobs", labels=JOB_SELECTOR, registry=registry)
    async def job_changed(event: kopf.RawEvent, **_: Any) -> None:
        job = cast(Json, event["object"])
        try:
            await rec.job_event(event.get("type"), job)
        except TRANSIENT as error:
            log.warning("job event not handled; retrying", extra={"error": str(error)})
            retry_later(job, 1)

    @kopf.on.event("", "v1", "pods", labels=JOB_SELECTOR, registry=registry)
    async def pod_changed(event: kopf.RawEvent, **_: Any) -> None:
        # A pod that cannot start (missing Secret, image pull, scheduling) is reported now,
        # not when the Job's deadline passes; the Job itself does not tell.
        try:
            await rec.pod_event(event.get("type"), cast(Json, event["object"]))
        except TRANSIENT as error:
            log.warning("pod event not handled", extra={"error": str(error)})

    def start_later(namespace: str, name: str, uid: str, attempt: int, delay: float) -> None:
        """Start an import again after a failed attempt, from the latest body seen (a
        deleted or re-created import is left alone)."""

        async def again() -> None:
            body = rec.latest(namespace, name)
            if body is not None and body["metadata"].get("uid") == uid:
                await begin(body, attempt + 1)

        later(delay, again)

    async def begin(body: Json, attempt: int = 1) -> None:
        try:
            await rec.start(body)
        except TRANSIENT as error:
            delay = error.delay if isinstance(error, RetryLater) else min(60.0, 2.0**attempt)
            meta = body["metadata"]
            log.warning("import not started; retrying",
                        extra={"mediaimport": meta.get("name"), "namespace": meta.get("namespace"),
                               "error": str(error), "attempt": attempt, "delay_s": delay})
            message = f"Could not start the import ({error}); retrying in {delay:g}s."
            post_event(body, Event("Warning", "StartRetry", message))
            start_later(meta.get("namespace", ""), meta.get("name", ""), meta.get("uid", ""),
                        attempt, delay)

    # Imports are started from the watch events themselves rather than kopf's
    # on.create/on.resume: those record their progress in an annotation, one more write
    # (and one more watch event) per import, which in a burst of new imports delays the
    # Job creations that every import waits for. Starting is idempotent and
    # level-triggered, so the initial listing (type None) resumes whatever was running.
    @kopf.on.event(*resource, registry=registry)
    async def mediaimport_seen(event: kopf.RawEvent, **_: Any) -> None:
        kind = event.get("type")
        body = cast(Json, event["object"])
        rec.observe(kind, body)
        if kind == "DELETED":
            await rec.deleted(body)
        elif rec.wants_start(kind, body):
            await begin(body)

    def _behind(status: kopf.Status, **_: Any) -> bool:
        try:
            return needs_recording(MediaImportStatus.model_validate(dict(status)))
        except ValueError:
            return False

    @kopf.timer(
        *resource,
        id="record",
        interval=settings.record_retry_interval,
        initial_delay=settings.record_retry_interval,
        when=_behind,
        registry=registry,
    )
    async def record(name: str, namespace: str | None, **_: Any) -> None:
        # The row could not be written (Postgres down): converge again until it is.
        try:
            await rec.sync(namespace or "", name)
        except TRANSIENT as error:
            log.warning("record retry failed", extra={"error": str(error)})

    if settings.delete_objects_on_delete:

        @kopf.on.delete(*resource, id="delete-objects", registry=registry)
        async def delete_objects(body: kopf.Body, **_: Any) -> None:
            mi = MediaImport.from_body(_plain(body))
            result = mi.status.result
            if mi.status.phase != Phase.READY or result is None:
                await rec.cancelled(asset_id=mi.asset_id, import_uid=mi.ref.uid)
                return
            try:
                keys = await runtime.objects.delete(result)
            except Exception as error:
                raise kopf.TemporaryError(f"could not delete objects: {error}", delay=10) from error
            kopf.info(
                cast(Any, body),
                reason="ObjectsDeleted",
                message=f"Deleted {len(keys)} objects from s3://{result.bucket}.",
            )
            if runtime.db is not None:
                try:
                    await runtime.db.mark_deleted(mi.asset_id, mi.ref.uid)
                except DatabaseUnavailable as error:
                    raise kopf.TemporaryError(
                        f"database unavailable: {error}", delay=settings.record_retry_interval
                    ) from error


async def _sweep_forever(runtime: Runtime) -> None:
    """Rows of imports deleted while no operator watched (or the database was down)."""
    while True:
        try:
            cancelled = await runtime.reconciler.sweep_orphans()
            if cancelled:
                log.info("cancelled rows of deleted imports", extra={"rows": cancelled})
        except (DatabaseUnavailable, ApiError, OSError, TimeoutError) as error:
            log.info("orphan sweep postponed", extra={"error": str(error)})
        await asyncio.sleep(runtime.settings.orphan_sweep_interval)


def _plain(body: kopf.Body) -> Json:
    # kopf.Body is a read-only mapping over the raw object: its top level copied
    # gives plain dicts all the way down.
    return dict(body)
