"""kopf adapters: the Jobs' and pods' watches, start-up and clean-up.

kopf watches the operator's Jobs and their pods (a few per live import). The MediaImports
are watched by the operator itself (``informer``, ``imports``): kopf would list them all at
every start and keep a memory of each. Everything is registered on a registry given by the
caller (``register``), so the settings are known before any handler exists, and tests can
build an operator without import-time side effects.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
import kopf

from .channel import ChannelServer
from .db import Database, DatabaseError
from .events import EventPoster
from .imports import Imports, loops
from .jobs import MANAGED_BY, ChannelGrant
from .kube import ApiError, Fenced, Json, Kube
from .model import MediaImport
from .reconcile import Reconciler, RetryLater
from .retries import RetryQueue, Work
from .settings import Settings
from .storage import Scope, SecretPresence, Storage
from .supervisor import Supervisor, repeat
from .verify import ResultVerifier

log = logging.getLogger(__name__)

JOB_SELECTOR = {"app.kubernetes.io/managed-by": MANAGED_BY}
# What a later attempt may not meet again: the API server or the network, for a while.
TRANSIENT = (RetryLater, ApiError, OSError, TimeoutError, aiohttp.ClientError, Fenced)
# The background loops that run while kopf does (the Lease's runs longer: see main.py).
SWEEP_LOOP = "orphan-sweep"
RETRY_LOOP = "retries"
RESYNC_LOOP = "resync"
# Errors of the outside world: logged without a traceback.
EXPECTED = (*TRANSIENT, DatabaseError)
# How long queued work on MediaImports may go on once kopf stops, and Events be posted.
_STOP_GRACE_S = 2.0


@dataclass
class Runtime:
    """What the handlers share; kept in kopf's memo."""

    settings: Settings
    kube: Kube
    db: Database | None
    reconciler: Reconciler
    supervisor: Supervisor
    poster: EventPoster
    imports: Imports
    channel: ChannelServer | None = None


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
    poster = EventPoster(kube, component="mediaimport-operator", instance=settings.identity,
                         level=logging.getLevelName(settings.event_level))
    retries = RetryQueue(base=settings.record_retry_interval, cap=settings.retry_max_interval)
    channel = ChannelServer.from_settings(settings) if settings.channel_keys_dir else None
    # Results are checked against the stored objects whichever way they arrive.
    storage = channel.storage if channel else Storage.from_settings(settings, kube)
    verifier = channel.verifier if channel else ResultVerifier(storage, settings)
    reconciler = Reconciler(settings=settings, kube=kube, db=db, post_event=poster.post,
                            retries=retries, judge=verifier.refusal)
    if channel is not None:
        reconciler.grant = functools.partial(_grant, channel)
        channel.yield_to = kube.lanes.creating
    if settings.storage_access == "brokered":
        # Brokered pods cannot delete: what a failed import stored goes with the operator.
        reconciler.discard = functools.partial(_discard, storage, settings)
        if settings.s3_secret_name:
            reconciler.has_secret = SecretPresence(kube, settings.s3_secret_name).exists
    imports = Imports(settings=settings, kube=kube, db=db, rec=reconciler, poster=poster,
                      expected=EXPECTED)
    return Runtime(settings=settings, kube=kube, db=db, reconciler=reconciler,
                   supervisor=supervisor, poster=poster, imports=imports, channel=channel)


def _grant(channel: ChannelServer, mi: MediaImport) -> ChannelGrant:
    return ChannelGrant(url=channel.import_url(mi), token=channel.credential_for(mi))


async def _discard(storage: Storage, settings: Settings, mi: MediaImport) -> int:
    return await storage.delete_prefix(Scope.of(mi, settings))


def _configure_kopf(settings: kopf.OperatorSettings, ours: Settings) -> None:
    # A silent watch must not blind the operator: bounded on both ends.
    settings.watching.server_timeout = ours.watch_server_timeout
    settings.watching.client_timeout = ours.watch_client_timeout
    settings.watching.connect_timeout = ours.watch_connect_timeout
    # Only our Jobs and their pods, filtered by the API server rather than after the
    # transfer; listed in pages, like the MediaImports.
    settings.watching.label_selectors["batch", "jobs"] = (
        f"app.kubernetes.io/managed-by={MANAGED_BY}"
    )
    settings.watching.label_selectors["", "v1", "pods"] = (
        f"app.kubernetes.io/managed-by={MANAGED_BY}"
    )
    settings.watching.chunk_size = ours.list_page_size
    settings.networking.request_timeout = ours.api_timeout
    settings.networking.connect_timeout = ours.watch_connect_timeout
    settings.posting.level = logging.getLevelName(ours.event_level)
    settings.posting.reporting_component = "mediaimport-operator"
    settings.posting.reporting_instance = ours.identity
    settings.execution.max_workers = ours.concurrency
    # High availability is the Lease's job (see leader.py), not kopf peering's.
    settings.peering.standalone = True


def register(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    rec = runtime.reconciler
    imports = runtime.imports

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A registry of our own gets no default login: use the kubernetes client's
        # loaders (kubeconfig or in-cluster), as kopf's default does.
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        ours = runtime.settings
        _configure_kopf(settings, ours)
        if runtime.db is not None:
            try:
                await runtime.db.ensure_schema()
            except DatabaseError as error:
                log.warning("database unavailable at start; migrations run on first use",
                            extra={"error": str(error)})
        # The MediaImports' watches and the Events' poster: tasks that run for ever, and
        # are restarted by the supervisor should one end anyway.
        for name, run in loops(imports).items():
            runtime.supervisor.start(name, run)
        repeated = {
            SWEEP_LOOP: (sweep, ours.orphan_sweep_interval),
            RETRY_LOOP: (imports.retry_due, min(1.0, ours.record_retry_interval)),
            RESYNC_LOOP: (imports.resync, ours.resync_interval),
        }
        for name, (work, interval) in repeated.items():
            runtime.supervisor.start(name, functools.partial(
                repeat, name, work, interval, expected=EXPECTED))

    async def sweep() -> None:
        """Rows of imports deleted while no operator watched (or the database was down)."""
        cancelled = await rec.sweep_orphans()
        if cancelled:
            log.info("cancelled rows of deleted imports", extra={"rows": cancelled})

    @kopf.on.cleanup(registry=registry)
    async def close(**_: Any) -> None:
        supervisor = runtime.supervisor
        await supervisor.stop(SWEEP_LOOP, RETRY_LOOP, RESYNC_LOOP,
                              *(n for n in loops(imports) if n != "events"))
        await imports.stop(_STOP_GRACE_S)
        await supervisor.stop("events")
        await runtime.poster.flush(_STOP_GRACE_S)
        if runtime.db is not None:
            await runtime.db.close()
        await runtime.kube.close()

    @kopf.on.event("batch", "v1", "jobs", labels=JOB_SELECTOR, registry=registry)
    async def job_changed(event: kopf.RawEvent, **_: Any) -> None:
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
        try:
            await rec.pod_event(event.get("type"), cast(Json, event["object"]))
        except Exception as error:  # the resync and the Job's own events converge it later
            log.warning("pod event not handled",
                        extra={"error": f"{type(error).__name__}: {error}"},
                        exc_info=not isinstance(error, EXPECTED))
