"""kopf adapters: thin handlers that parse, call the reconciler, and map errors to kopf's.

Everything is registered on a registry given by the caller (``register``), so
the settings (intervals, the deletion finalizer) are known before any handler
exists, and tests can build an operator without import-time side effects.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp
import kopf

from . import metrics
from .db import Database, DatabaseError
from .jobs import MANAGED_BY
from .kube import ApiError, Fenced, Json, Kube
from .model import GROUP, PLURAL, VERSION, MediaImport, Phase
from .objects import ObjectStore
from .reconcile import Reconciler, RetryLater
from .retries import RetryQueue, Work
from .settings import Settings
from .status import Event
from .supervisor import Supervisor, repeat

log = logging.getLogger(__name__)

FINALIZER = "mediaimport.dev/finalizer"
ANNOTATION_PREFIX = "mediaimport.dev"
JOB_SELECTOR = {"app.kubernetes.io/managed-by": MANAGED_BY}
# What a later attempt may not meet again: the API server or the network, for a while.
TRANSIENT = (RetryLater, ApiError, OSError, TimeoutError, aiohttp.ClientError, Fenced)
# The background loops that run while kopf does (the Lease's runs longer: see main.py).
SWEEP_LOOP = "orphan-sweep"
RETRY_LOOP = "retries"
RESYNC_LOOP = "resync"
# Errors of the outside world: logged without a traceback.
EXPECTED = (*TRANSIENT, DatabaseError)


@dataclass
class Runtime:
    """What the handlers share; kept in kopf's memo."""

    settings: Settings
    kube: Kube
    db: Database | None
    reconciler: Reconciler
    supervisor: Supervisor
    objects: ObjectStore = field(default_factory=ObjectStore)


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
    """Events go through kopf's posting queue (rate-limited, non-blocking), which is known
    in the context of a kopf handler (see ``in_handler_context``)."""
    try:
        kopf.event(cast(Any, body), type=event.type, reason=event.reason, message=event.message)
    except LookupError:  # outside any handler's context: the event is lost, not the work
        log.warning("event not posted outside a handler's context",
                    extra={"reason": event.reason, "event_message": event.message})


def build_runtime(settings: Settings, supervisor: Supervisor) -> Runtime:
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
    retries = RetryQueue(base=settings.record_retry_interval, cap=settings.retry_max_interval)
    reconciler = Reconciler(settings=settings, kube=kube, db=db, post_event=post_event,
                            retries=retries)
    return Runtime(settings=settings, kube=kube, db=db, reconciler=reconciler,
                   supervisor=supervisor)


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
            except DatabaseError as error:
                log.warning("database unavailable at start; migrations run on first use",
                            extra={"error": str(error)})
        loops = {
            SWEEP_LOOP: (sweep, ours.orphan_sweep_interval),
            RETRY_LOOP: (in_handler_context(retry_due), min(1.0, ours.record_retry_interval)),
            RESYNC_LOOP: (in_handler_context(resync), ours.resync_interval),
        }
        for name, (work, interval) in loops.items():
            runtime.supervisor.start(name, functools.partial(
                repeat, name, work, interval, expected=EXPECTED))

    async def sweep() -> None:
        """Rows of imports deleted while no operator watched (or the database was down)."""
        cancelled = await rec.sweep_orphans()
        if cancelled:
            log.info("cancelled rows of deleted imports", extra={"rows": cancelled})

    # kopf's event queue is known in its handlers' context only: the background loops'
    # work runs in a copy of the first handler's context, so that it can post Events.
    handler_context: list[contextvars.Context] = []

    def remember_context() -> None:
        if not handler_context:
            handler_context.append(contextvars.copy_context())

    def in_handler_context(
        work: Callable[[], Coroutine[Any, Any, None]],
    ) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            if handler_context:
                await asyncio.create_task(work(), context=handler_context[0])
            else:
                await work()

        return run

    async def retry_due() -> None:
        """Whatever the retry queue holds whose time has come (see retries.py)."""
        for work in Work:
            metrics.RETRY_QUEUE.labels(work.value).set(len(rec.retries.pending(work)))
        for entry in rec.retries.take_due():
            try:
                if entry.work is Work.START:
                    body = rec.latest(entry.namespace, entry.name)
                    if body is not None and body["metadata"].get("uid") == entry.uid:
                        await begin(body, entry.attempt)
                elif entry.work is Work.SYNC:
                    await rec.sync(entry.namespace, entry.name)
                elif entry.body is not None:
                    await rec.record_deleted(entry.body)
            except Exception as error:  # every failure is retried, none ends the round
                log.warning("retry failed; trying again later",
                            extra={"work": entry.work.value, "mediaimport": entry.name,
                                   "namespace": entry.namespace, "attempt": entry.attempt,
                                   "error": f"{type(error).__name__}: {error}"},
                            exc_info=not isinstance(error, EXPECTED))
                rec.retries.add(entry.work, entry.namespace, entry.name, entry.uid,
                                attempt=entry.attempt + 1, body=entry.body)

    async def resync() -> None:
        """Converge every live import again, in case a watch event was missed."""
        for body in rec.live():
            meta = body["metadata"]
            if not (body.get("status") or {}).get("phase"):
                # Never started, and not being started (or queued to be) either.
                if rec.wants_start("MODIFIED", body):
                    await begin(body)
                continue
            try:
                await rec.sync(meta["namespace"], meta["name"], cached=True)
            except Exception as error:  # queued, and the resync goes on
                log.warning("resync of an import failed; retrying",
                            extra={"mediaimport": meta["name"], "namespace": meta["namespace"],
                                   "error": f"{type(error).__name__}: {error}"})
                rec.retries.add(Work.SYNC, meta["namespace"], meta["name"], meta["uid"])

    @kopf.on.cleanup(registry=registry)
    async def close(**_: Any) -> None:
        await runtime.supervisor.stop(SWEEP_LOOP, RETRY_LOOP, RESYNC_LOOP)
        if runtime.db is not None:
            await runtime.db.close()
        await runtime.kube.close()

    @kopf.on.event("batch", "v1", "jobs", labels=JOB_SELECTOR, registry=registry)
    async def job_changed(event: kopf.RawEvent, **_: Any) -> None:
        remember_context()
        job = cast(Json, event["object"])
        try:
            await rec.job_event(event.get("type"), job)
        except Exception as error:
            # Event handlers are not retried by kopf: the last event of a finished Job
            # must not be lost to one failed call, so its import is converged again later.
            log.warning("job event not handled; retrying",
                        extra={"error": f"{type(error).__name__}: {error}"},
                        exc_info=not isinstance(error, EXPECTED))
            meta = job.get("metadata", {})
            owner = next((r for r in meta.get("ownerReferences") or []
                          if r.get("controller")), None)
            if owner is not None:
                rec.retries.add(Work.SYNC, meta.get("namespace", ""), owner["name"],
                                owner.get("uid", ""))

    @kopf.on.event("", "v1", "pods", labels=JOB_SELECTOR, registry=registry)
    async def pod_changed(event: kopf.RawEvent, **_: Any) -> None:
        # A pod that cannot start (missing Secret, image pull, scheduling) is reported now,
        # not when the Job's deadline passes; the Job itself does not tell.
        remember_context()
        try:
            await rec.pod_event(event.get("type"), cast(Json, event["object"]))
        except Exception as error:  # the resync and the Job's own events converge it later
            log.warning("pod event not handled",
                        extra={"error": f"{type(error).__name__}: {error}"},
                        exc_info=not isinstance(error, EXPECTED))

    async def begin(body: Json, attempt: int = 1) -> None:
        try:
            await rec.start(body)
        except Exception as error:
            delay = rec.retries.delay(attempt)
            if isinstance(error, RetryLater):
                delay = max(delay, error.delay)
            meta = body["metadata"]
            log.warning("import not started; retrying",
                        extra={"mediaimport": meta.get("name"), "namespace": meta.get("namespace"),
                               "error": f"{type(error).__name__}: {error}", "attempt": attempt,
                               "delay_s": delay},
                        exc_info=not isinstance(error, EXPECTED))
            message = f"Could not start the import ({error}); retrying in {delay:g}s."
            post_event(body, Event("Warning", "StartRetry", message))
            rec.retries.add(Work.START, meta.get("namespace", ""), meta.get("name", ""),
                            meta.get("uid", ""), attempt=attempt + 1, delay=delay)

    # Imports are started from the watch events themselves rather than kopf's
    # on.create/on.resume: those record their progress in an annotation, one more write
    # (and one more watch event) per import, which in a burst of new imports delays the
    # Job creations that every import waits for. Starting is idempotent and
    # level-triggered, so the initial listing (type None) resumes whatever was running.
    @kopf.on.event(*resource, registry=registry)
    async def mediaimport_seen(event: kopf.RawEvent, **_: Any) -> None:
        remember_context()
        kind = event.get("type")
        body = cast(Json, event["object"])
        rec.observe(kind, body)
        if kind == "DELETED":
            await rec.deleted(body)
        elif rec.wants_start(kind, body):
            await begin(body)

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
                except DatabaseError as error:
                    raise kopf.TemporaryError(
                        f"database unavailable: {error}", delay=settings.record_retry_interval
                    ) from error


def _plain(body: kopf.Body) -> Json:
    # kopf.Body is a read-only mapping over the raw object: its top level copied
    # gives plain dicts all the way down.
    return dict(body)
