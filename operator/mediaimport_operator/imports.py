"""What the operator does with each MediaImport it sees, outside kopf.

The operator's own watch (``informer.Informer``) hands every MediaImport here, as listed at
start or changed later. Most need nothing — a cluster's MediaImports are mostly finished —
and are not even parsed; the others get their work queued, one object at a time
(``serial.Serial``): an import never started is started, a deleted one cancelled or recorded,
the finalizer of an import whose objects go with it added or, once it is being deleted, its
objects deleted and the finalizer removed. The retry queue's due work and the periodic resync
come through here too.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from . import metrics
from .db import Database, DatabaseError
from .events import EventPoster
from .informer import Informer
from .kube import ApiError, Json, Kube, mediaimport_path
from .model import MediaImport, Phase
from .objects import ObjectStore
from .reconcile import RECORD_FINALIZER, Reconciler, RetryLater
from .retries import Work
from .serial import Serial
from .settings import Settings
from .status import Event

log = logging.getLogger(__name__)

FINALIZER = "mediaimport.dev/finalizer"
SERIAL_PER_LANE = 64  # imports worked on at once, per ordinary API lane (1,024 by default)
_MAX_CONFLICTS = 5


def _key(body: Json) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _finalizers(body: Json) -> list[str]:
    return [str(f) for f in (body.get("metadata") or {}).get("finalizers") or []]


@dataclass
class Imports:
    settings: Settings
    kube: Kube
    db: Database | None
    rec: Reconciler
    poster: EventPoster
    objects: ObjectStore = field(default_factory=ObjectStore)
    expected: tuple[type[Exception], ...] = ()  # errors logged without a traceback
    serial: Serial = field(init=False)
    informers: list[Informer] = field(init=False)

    def __post_init__(self) -> None:
        # A bound on the imports worked on at once (~20 KB each while queued: its body, a
        # task), far above a burst's: an import holds its slot from its Job's creation to
        # its status write, which waits while creations go first (lanes.py), so a bound
        # near the lanes' would hold later imports' Job creations behind earlier status
        # writes. Beyond it (a listing of thousands of live imports after an outage) the
        # watch waits instead of every import becoming a task at once.
        self.serial = Serial(limit=SERIAL_PER_LANE * self.settings.concurrency)
        namespaces: Iterable[str | None] = self.settings.namespaces or [None]
        self.informers = [
            Informer(self.kube, namespace, handle=self.seen, known=self.rec.live,
                     page_size=self.settings.list_page_size,
                     timeout_seconds=self.settings.watch_server_timeout)
            for namespace in namespaces
        ]

    def listed(self) -> bool:
        """Every MediaImport was listed once (and handed over) since the start."""
        return all(informer.listed.is_set() for informer in self.informers)

    # -- the watch ---------------------------------------------------------------------
    async def seen(self, kind: str | None, body: Json) -> None:
        """One MediaImport as listed (``kind`` None) or watched: remember it while it is
        live, and queue what it needs. Reads the raw body: this runs for every object."""
        rec = self.rec
        rec.observe(kind, body)
        key = _key(body)
        if kind == "DELETED":
            await self.serial.submit(key, functools.partial(rec.deleted, body))
            return
        if rec.wants_start(kind, body):
            await self.serial.submit(key, functools.partial(self._start_if_wanted, kind, body))
        if self._finalizer_due(body):
            await self.serial.submit(key, functools.partial(self.tend_finalizer, body))

    async def _start_if_wanted(self, kind: str | None, body: Json) -> None:
        # Asked again when its turn comes: an earlier event's work may have started it.
        if self.rec.wants_start(kind, body):
            await self.begin(body)

    async def begin(self, body: Json, attempt: int = 1) -> None:
        """Start an import (claim, Job, status); a failure queues it to be tried again."""
        rec = self.rec
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
                        exc_info=not isinstance(error, self.expected))
            message = f"Could not start the import ({error}); retrying in {delay:g}s."
            self.poster.post(body, Event("Warning", "StartRetry", message))
            rec.retries.add(Work.START, meta.get("namespace", ""), meta.get("name", ""),
                            meta.get("uid", ""), attempt=attempt + 1, delay=delay)

    # -- deleting stored objects with their import (delete_objects_on_delete) ----------
    def _finalizer_due(self, body: Json) -> bool:
        """Whether the finalizer must be added (objects go with their import), or its work
        done (the import is being deleted: with the setting off, only its removal)."""
        meta = body.get("metadata") or {}
        held = FINALIZER in _finalizers(body)
        if meta.get("deletionTimestamp"):
            return held or RECORD_FINALIZER in _finalizers(body)
        if not self.settings.delete_objects_on_delete or held:
            return False
        return (body.get("status") or {}).get("phase") != Phase.FAILED  # a failed one has none

    async def tend_finalizer(self, body: Json, attempt: int = 1) -> None:
        """Bring the finalizer in line with ``body``; a failure is tried again later."""
        meta = body["metadata"]
        try:
            await self._tend_finalizer(body)
        except Exception as error:
            log.warning("finalizer work failed; retrying",
                        extra={"mediaimport": meta.get("name"), "namespace": meta.get("namespace"),
                               "error": f"{type(error).__name__}: {error}"},
                        exc_info=not isinstance(error, (*self.expected, DatabaseError)))
            self.rec.retries.add(Work.FINALIZER, meta.get("namespace", ""), meta.get("name", ""),
                                 meta.get("uid", ""), attempt=attempt + 1)

    async def _tend_finalizer(self, body: Json) -> None:
        objects_deleted = False
        for _ in range(_MAX_CONFLICTS):
            if not self._finalizer_due(body):
                return
            meta = body["metadata"]
            deleting = bool(meta.get("deletionTimestamp"))
            if deleting and self.settings.delete_objects_on_delete and not objects_deleted:
                await self._delete_objects(body)
                objects_deleted = True
            if deleting and RECORD_FINALIZER in _finalizers(body):
                # The row the import held on for, from its last status (raises while
                # Postgres is still down: tried again later).
                await self.rec.record_deleted(body)
            if deleting:  # both of ours go; the API server deletes the object then
                finalizers = [f for f in _finalizers(body)
                              if f not in (FINALIZER, RECORD_FINALIZER)]
            else:
                finalizers = [*(f for f in _finalizers(body) if f != FINALIZER), FINALIZER]
            patch = {"metadata": {"finalizers": finalizers or None,
                                  "resourceVersion": meta.get("resourceVersion")}}
            try:
                await self.kube.merge_patch(
                    mediaimport_path(meta["namespace"], meta["name"]), patch)
            except ApiError as error:
                if error.not_found:
                    return
                if not error.conflict:
                    raise
            else:
                return
            fresh = await self.kube.get(mediaimport_path(meta["namespace"], meta["name"]))
            if fresh is None or fresh["metadata"].get("uid") != meta.get("uid"):
                return
            body = fresh
        raise RetryLater("the MediaImport kept changing under us", delay=1.0)

    async def _delete_objects(self, body: Json) -> None:
        mi = MediaImport.from_body(body)
        result = mi.status.result
        if mi.status.phase != Phase.READY or result is None:
            await self.rec.cancelled(asset_id=mi.asset_id, import_uid=mi.ref.uid)
            return
        keys = await self.objects.delete(result)  # idempotent: again after a failure
        self.poster.post(mi.ref.body, Event(
            "Normal", "ObjectsDeleted", f"Deleted {len(keys)} objects from s3://{result.bucket}."))
        if self.db is not None:
            await self.db.mark_deleted(mi.asset_id, mi.ref.uid)

    # -- the background loops' work ----------------------------------------------------
    async def retry_due(self) -> None:
        """Whatever the retry queue holds whose time has come (see retries.py)."""
        rec = self.rec
        for work in Work:
            metrics.RETRY_QUEUE.labels(work.value).set(len(rec.retries.pending(work)))
        for entry in rec.retries.take_due():
            try:
                if entry.work is Work.START:
                    body = rec.latest(entry.namespace, entry.name)
                    if body is not None and body["metadata"].get("uid") == entry.uid:
                        await self.begin(body, entry.attempt)
                elif entry.work is Work.SYNC:
                    await rec.sync(entry.namespace, entry.name)
                elif entry.work is Work.FINALIZER:
                    body = await self.kube.get(mediaimport_path(entry.namespace, entry.name))
                    if body is not None and body["metadata"].get("uid") == entry.uid:
                        await self._tend_finalizer(body)
                elif entry.body is not None:
                    await rec.record_deleted(entry.body)
            except Exception as error:  # every failure is retried, none ends the round
                log.warning("retry failed; trying again later",
                            extra={"work": entry.work.value, "mediaimport": entry.name,
                                   "namespace": entry.namespace, "attempt": entry.attempt,
                                   "error": f"{type(error).__name__}: {error}"},
                            exc_info=not isinstance(error, (*self.expected, DatabaseError)))
                rec.retries.add(entry.work, entry.namespace, entry.name, entry.uid,
                                attempt=entry.attempt + 1, body=entry.body)

    async def resync(self) -> None:
        """Converge every live import again, in case a watch event was missed."""
        rec = self.rec
        for body in rec.live():
            meta = body["metadata"]
            if not (body.get("status") or {}).get("phase"):
                # Never started, and not being started (or queued to be) either.
                if rec.wants_start("MODIFIED", body):
                    await self.begin(body)
                continue
            try:
                await rec.sync(meta["namespace"], meta["name"], cached=True)
            except Exception as error:  # queued, and the resync goes on
                log.warning("resync of an import failed; retrying",
                            extra={"mediaimport": meta["name"], "namespace": meta["namespace"],
                                   "error": f"{type(error).__name__}: {error}"})
                rec.retries.add(Work.SYNC, meta["namespace"], meta["name"], meta["uid"])

    async def stop(self, grace: float) -> None:
        """Let queued work finish for up to ``grace`` seconds, then cancel what is left."""
        try:
            await asyncio.wait_for(self.serial.idle(), grace)
        except TimeoutError:
            await self.serial.cancel()


def loops(imports: Imports) -> dict[str, Callable[[], Awaitable[None]]]:
    """The long-running tasks of the MediaImport side (each watched by the supervisor)."""
    found: dict[str, Callable[[], Awaitable[None]]] = {"events": imports.poster.run}
    for informer in imports.informers:
        found[f"watch-{informer.namespace or 'all'}"] = informer.run
    return found
