"""The operator's work, independent of kopf: start imports, converge their status, record rows.

Level-triggered: every entry point re-reads the MediaImport, its Job and the
Job's pods and derives the status (``status.derive``), so it does not matter
which event arrives first, twice, or after a restart. Status writes carry the
resourceVersion they were computed from (optimistic concurrency): a concurrent
writer makes us re-read and derive again instead of overwriting newer state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from mediaimport_job.result import ReadyResult

from . import metrics
from .db import Database, DatabaseError, RowRejected, UpsertOutcome
from .jobs import (
    ANNOTATION_ASSET_ID,
    CONTROLLER_UID_LABEL,
    LABEL_IMPORT_NAME,
    LABEL_IMPORT_UID,
    ChannelGrant,
    build_job,
    job_name,
)
from .keyedlocks import KeyedLocks
from .kube import ApiError, Json, Kube, job_path, mediaimport_path, pods_path
from .lanes import Lane
from .model import KIND, RECORDED, SUCCEEDED, MediaImport, MediaImportStatus, Phase
from .records import RowStatus, row_for, row_status
from .retries import RetryQueue, Work
from .settings import Settings
from .status import (
    FINAL_RECORDED,
    POD_PROBLEM_REASONS,
    REASON_ASSET_ID_CONFLICT,
    REASON_DATABASE_UNAVAILABLE,
    REASON_RECORDING_DISABLED,
    REASON_ROW_REJECTED,
    REASON_ROW_UP_TO_DATE,
    Decision,
    Event,
    JobView,
    PodOutcome,
    Verdict,
    accepted_from_status,
    claimed_ready,
    derive,
    fail_without_job,
    latest_outcomes,
    needs_recording,
    pod_problem,
    result_status,
    secret_missing,
    succeeded_with_result,
    with_recorded,
)

log = logging.getLogger(__name__)

PostEvent = Callable[[Json, Event], None]
# Why a result the import's pod claims is not believed (None: every check passed).
JudgeResult = Callable[[MediaImport, ReadyResult], Awaitable[str | None]]
# The channel's URL and a credential for one import (None: the operator serves no channel).
GrantChannel = Callable[[MediaImport], ChannelGrant]
# Remove what a failed import's pods stored under its prefix (brokered pods cannot delete).
DiscardObjects = Callable[[MediaImport], Awaitable[int]]
_MAX_CONFLICT_RETRIES = 8
# Held by a finished import while its row is behind (see Reconciler._hold_for_row).
RECORD_FINALIZER = "mediaimport.dev/record"
_READ_AGAIN = object()


class RetryLater(Exception):  # noqa: N818 - a signal to the caller, not a bug
    """Nothing is wrong, but the work is not done yet; the caller should retry after ``delay``."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class Reconciler:
    settings: Settings
    kube: Kube
    db: Database | None
    post_event: PostEvent
    retries: RetryQueue = field(default_factory=lambda: RetryQueue(base=2.0, cap=120.0))
    clock: Callable[[], datetime] = utcnow
    judge: JudgeResult | None = None
    grant: GrantChannel | None = None
    discard: DiscardObjects | None = None
    # Whether the S3 Secret brokered uploads are signed with exists in a namespace.
    has_secret: Callable[[str], Awaitable[bool]] | None = None
    _locks: KeyedLocks = field(default_factory=KeyedLocks)
    _job_digests: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    # The latest bodies of live (not yet finished) MediaImports seen through kopf's watch,
    # cut to what the operator reads (``_essentials``): a Job event then needs no GET, and
    # the resync knows what to look at. A stale body only costs a 409 on the status write,
    # then a fresh read. Finished imports are not kept: memory follows the work in flight,
    # not the number of MediaImports in the cluster.
    _seen: dict[str, Json] = field(default_factory=dict)
    _in_flight: set[str] = field(default_factory=set)
    _background: set[asyncio.Future[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        metrics.IMPORT_LOCKS.set_function(lambda: len(self._locks))

    def observe(self, event_type: str | None, body: Json) -> None:
        """Remember the latest body of a live MediaImport (called for every watch event)."""
        meta = body.get("metadata", {})
        key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        if event_type == "DELETED" or _terminal_raw(body):
            kept = self._seen.get(key)
            # Only the object itself: another one may hold the name since (a listing after a
            # watch gap reports the predecessor deleted after its successor was seen).
            if kept is not None and kept["metadata"].get("uid") in (None, meta.get("uid")):
                del self._seen[key]
        else:
            self._seen[key] = _essentials(body)

    def latest(self, namespace: str, name: str) -> Json | None:
        """The latest body of a live MediaImport seen through the watch (None: finished,
        gone or unseen)."""
        return self._seen.get(f"{namespace}/{name}")

    def live(self) -> list[Json]:
        """The latest bodies of every live MediaImport seen."""
        return list(self._seen.values())

    def wants_start(self, event_type: str | None, body: Json) -> bool:
        uid = body.get("metadata", {}).get("uid", "")
        return wants_start(event_type, body, starting=uid in self._in_flight)

    # -- entry points ------------------------------------------------------------------
    async def start(self, body: Json) -> None:
        """A MediaImport appeared (or the operator restarted): make sure its import runs."""
        mi = MediaImport.from_body(body)
        if mi.deleting:
            return
        if mi.status.phase is not None and mi.status.phase.terminal:
            self._done(mi.ref.uid)
            if needs_recording(mi.status):
                await self.sync(mi.ref.namespace, mi.ref.name)
            return
        self._track(mi.ref.uid)
        async with self._lock(mi.ref.namespace, mi.ref.name):
            # The asset id is claimed (its row written) before the Job exists: a Job writes
            # under media/{user}/{asset id}/, and deletes what it wrote when it fails, so
            # only the import that holds the claim may have one.
            claim = await self._claim(mi)
            if claim is UpsertOutcome.CONFLICT:
                await self._fail_conflict(mi)
                return
            failed = claim if isinstance(claim, DatabaseError) else None
            if failed is not None and mi.asset_id != mi.ref.uid:
                # An asset id named in the spec may belong to another import: without the
                # claim, no Job. (The default, the import's own uid, is no one else's.)
                raise RetryLater(
                    f"asset id {mi.asset_id} cannot be claimed yet ({_first_line(str(failed))})",
                    delay=self.retries.delay(1),
                )
            job = await self._ensure_job(mi)
            written: RowStatus | None = "uploading" if claim is UpsertOutcome.WRITTEN else None
            # Just failed: the retry queue tries again, this write does not wait again.
            await self._sync(mi.ref.namespace, mi.ref.name, job=job, written=written, body=body,
                             db_error=failed)

    async def _claim(self, mi: MediaImport) -> UpsertOutcome | DatabaseError | None:
        """Write the uploading row of a new import (None: nothing to claim)."""
        if self.db is None or mi.status.phase is not None:
            return None
        try:
            outcome = await self.db.upsert(row_for(mi, mi.status))
        except DatabaseError as error:
            metrics.ROW_WRITES.labels(_row_error_label(error)).inc()
            log.warning(
                "the row could not be written; it is written later",
                extra={"mediaimport": mi.ref.name, "namespace": mi.ref.namespace,
                       "error": _first_line(str(error))},
            )
            return error
        metrics.ROW_WRITES.labels(outcome.value).inc()
        return outcome

    async def sync(
        self, namespace: str, name: str, *, job: Json | None = None, cached: bool = False
    ) -> None:
        """Converge one MediaImport's status (and row) with its Job."""
        async with self._lock(namespace, name):
            body = self.latest(namespace, name) if cached else None
            await self._sync(namespace, name, job=job, body=body)

    async def job_event(self, event_type: str | None, job: Json) -> None:
        """A Job of ours changed (or went away)."""
        meta = job.get("metadata", {})
        namespace = meta.get("namespace", "")
        owner = next(
            (
                ref
                for ref in meta.get("ownerReferences") or []
                if ref.get("controller") and ref.get("kind") == KIND
            ),
            None,
        )
        if owner is None:
            return
        if event_type == "DELETED":
            self._job_digests.pop(meta.get("uid", ""), None)
            body = await self.kube.get(mediaimport_path(namespace, owner["name"]))
            if body is None or body["metadata"]["uid"] != owner["uid"]:
                await self.cancelled(
                    asset_id=(meta.get("annotations") or {}).get(ANNOTATION_ASSET_ID),
                    import_uid=owner["uid"],
                )
                return
            mi = MediaImport.from_body(body)
            if not mi.deleting and not (mi.status.phase and mi.status.phase.terminal):
                # Someone deleted the Job of a running import: the sync creates it again.
                if mi.status.phase == Phase.IMPORTING:
                    await self.sync(namespace, owner["name"])
                else:
                    await self.start(body)
            return
        digest = _job_digest(job)
        key = meta.get("uid", "")
        if self._job_digests.get(key) == digest:
            return  # a change the import does not care about (e.g. the ready count)
        await self.sync(namespace, owner["name"], job=job, cached=True)
        self._job_digests[key] = digest

    async def pod_event(self, event_type: str | None, pod: Json) -> None:
        """A pod of one of our Jobs changed: converge its import when the pod's container
        ended with its result (seconds before the Job is Complete), or when the pod's
        trouble starting (a missing Secret, an image pull, scheduling) differs from what
        the status says. Most pod events change nothing of the kind and cost no request."""
        if event_type == "DELETED":
            return
        meta = pod.get("metadata", {})
        labels = meta.get("labels") or {}
        namespace, name = str(meta.get("namespace", "")), str(labels.get(LABEL_IMPORT_NAME, ""))
        body = self.latest(namespace, name) if name else None
        if body is None or body["metadata"].get("uid") != labels.get(LABEL_IMPORT_UID):
            return
        mi = MediaImport.from_body(body)
        if mi.status.phase is not None and mi.status.phase.terminal:
            return
        problem = pod_problem(pod, self.settings.s3_secret_name)
        shown = mi.status.condition(SUCCEEDED)
        if not succeeded_with_result(pod) and (problem.reason if problem else None) == (
            shown.reason if shown and shown.reason in POD_PROBLEM_REASONS else None
        ):
            return
        async with self._lock(namespace, name):
            await self._sync(namespace, name, body=body, check_pods=True)

    async def deleted(self, body: Json) -> None:
        """A MediaImport is gone: a row still uploading is failed as cancelled, and the row
        of a finished import that was behind is written from the deleted body."""
        mi = MediaImport.from_body(body)
        namespace, name = mi.ref.namespace, mi.ref.name
        self._done(mi.ref.uid)
        for work in (Work.START, Work.SYNC, Work.FINALIZER):
            self.retries.discard(work, namespace, name, uid=mi.ref.uid)
        if mi.status.phase is None or not mi.status.phase.terminal:
            await self.cancelled(asset_id=mi.asset_id, import_uid=mi.ref.uid)
            if mi.status.job_name and self.discard is not None:
                # A brokered pod cannot delete what it stored: now, and once its grace
                # period is over (a part in flight may land after the first round).
                await self._discard(mi)
                self._discard_later(mi, self.settings.job_termination_grace_period_seconds + 5)
            return
        if self.db is None or not needs_recording(mi.status):
            return
        try:
            await self.record_deleted(body)
        except DatabaseError as error:
            log.warning("the row of a deleted import is written later",
                        extra={"mediaimport": name, "namespace": namespace,
                               "error": _first_line(str(error))})
            self.retries.add(Work.RECORD_DELETED, namespace, name, mi.ref.uid,
                             body=_essentials(body))

    async def record_deleted(self, body: Json) -> None:
        """Write the row of a deleted, finished import from its last body (raises
        ``DatabaseError`` when it cannot be written yet)."""
        if self.db is None:
            return
        mi = MediaImport.from_body(body)
        if not needs_recording(mi.status):
            return
        try:
            outcome = await self.db.upsert(row_for(mi, mi.status))
        except DatabaseError as error:
            metrics.ROW_WRITES.labels(_row_error_label(error)).inc()
            raise
        metrics.ROW_WRITES.labels(outcome.value).inc()
        self.retries.discard(Work.RECORD_DELETED, mi.ref.namespace, mi.ref.name)
        self._database_back()
        log.info("row of a deleted import written",
                 extra={"mediaimport": mi.ref.name, "namespace": mi.ref.namespace,
                        "asset_id": mi.asset_id, "result": outcome.value})

    async def cancelled(self, *, asset_id: str | None, import_uid: str) -> None:
        if self.db is None or not asset_id:
            return
        try:
            if await self.db.cancel(asset_id, import_uid, self.clock()):
                log.info("row cancelled", extra={"asset_id": asset_id})
        except DatabaseError as error:
            # The orphan sweep finds the row once the database is back.
            log.warning("could not cancel the row yet", extra={"asset_id": asset_id,
                                                              "error": str(error)})

    async def sweep_orphans(self) -> int:
        """Fail rows still uploading whose MediaImport is gone (deleted while unobserved)."""
        if self.db is None:
            return 0
        cancelled = 0
        rows = await self.db.uploading()
        self._database_back()
        waiting = {entry.uid for entry in self.retries.pending(Work.RECORD_DELETED)}
        for asset_id, ref in rows:
            namespace, name, uid = ref.get("namespace"), ref.get("name"), ref.get("uid")
            if not (isinstance(namespace, str) and isinstance(name, str) and isinstance(uid, str)):
                continue
            if uid in waiting:
                continue  # written from the deleted import's last body instead
            if self.settings.namespaces and namespace not in self.settings.namespaces:
                continue
            body = await self.kube.get(mediaimport_path(namespace, name))
            gone = body is None or body["metadata"]["uid"] != uid
            if gone and await self.db.cancel(asset_id, uid, self.clock()):
                cancelled += 1
        return cancelled

    # -- internals ---------------------------------------------------------------------
    def _follow_row(self, mi: MediaImport, status: MediaImportStatus) -> None:
        """Queue the import for another try while its row is behind its status."""
        ref = mi.ref
        if self.db is not None and needs_recording(status):
            self.retries.add(Work.SYNC, ref.namespace, ref.name, ref.uid)
        else:
            self.retries.discard(Work.SYNC, ref.namespace, ref.name)

    async def _release_job(self, mi: MediaImport, job: Json) -> None:
        """The result is in the status now: let the TTL controller collect the Job."""
        if (job.get("spec") or {}).get("ttlSecondsAfterFinished") is not None:
            return
        meta = job["metadata"]
        patch = {"metadata": {"resourceVersion": meta.get("resourceVersion")},
                 "spec": {"ttlSecondsAfterFinished": self.settings.ttl_seconds_after_finished}}
        try:
            await self.kube.merge_patch(job_path(meta["namespace"], meta["name"]), patch)
        except ApiError as error:
            if error.not_found:
                return
            if not error.conflict:
                log.warning("could not set the TTL of a finished Job; retrying",
                            extra={"job": meta["name"], "namespace": meta["namespace"],
                                   "error": str(error)})
            # A newer version of the Job (or no answer): converge again later.
            self.retries.add(Work.SYNC, mi.ref.namespace, mi.ref.name, mi.ref.uid)

    def _database_back(self) -> None:
        """The database answered: rows waiting for it are due now, not after their pause."""
        self.retries.hurry(Work.SYNC)
        self.retries.hurry(Work.RECORD_DELETED)

    def _lock(self, namespace: str, name: str) -> AbstractAsyncContextManager[None]:
        return self._locks.hold(f"{namespace}/{name}")

    def _track(self, uid: str) -> None:
        self._in_flight.add(uid)
        metrics.IN_FLIGHT.set(len(self._in_flight))

    def _done(self, uid: str) -> None:
        self._in_flight.discard(uid)
        metrics.IN_FLIGHT.set(len(self._in_flight))

    async def _ensure_job(self, mi: MediaImport) -> Json:
        manifest = build_job(mi, self.settings, self.grant(mi) if self.grant else None)
        job, created = await self.kube.create(
            job_path(mi.ref.namespace), manifest, lane=Lane.CREATE
        )
        # Its ADDED event tells nothing new.
        self._job_digests.setdefault(job["metadata"].get("uid", ""), _job_digest(job))
        if created:
            metrics.JOBS_CREATED.inc()
            log.info("job created", extra={"mediaimport": mi.ref.name,
                                           "namespace": mi.ref.namespace,
                                           "job": manifest["metadata"]["name"]})
        return job

    async def _verdict(
        self, mi: MediaImport, view: JobView | None, outcomes: list[PodOutcome], *, stale: bool
    ) -> Verdict | object | None:
        """What decides a finished import's result: the one the channel checked and put
        into the status, else the pod's own copy, checked now. ``_READ_AGAIN`` when the
        body at hand may predate the channel's write (it came from the watch)."""
        if view is None:
            return None
        accepted = accepted_from_status(mi)
        if accepted is not None:
            return accepted
        claim = claimed_ready(view, outcomes)
        if claim is None:
            return None
        if stale:
            return _READ_AGAIN
        return await self._judge(mi, view, claim)

    async def _judge(self, mi: MediaImport, view: JobView, claim: PodOutcome) -> Verdict:
        """Check the Ready result in a pod's termination message (the channel's copy was
        not delivered): only the Job's own pod counts, and only a result whose objects
        pass the checks."""
        assert isinstance(claim.result, ReadyResult)
        if claim.owner_uid != view.uid:
            refusal = (f"pod {claim.name} carries the Job's labels but is not owned by "
                       f"Job {view.name}")
        elif self.judge is None:
            refusal = None
        else:
            refusal = await self.judge(mi, claim.result)
        if refusal is not None:
            metrics.INVALID_RESULTS.inc()
            log.warning("result refused", extra={"mediaimport": mi.ref.name,
                                                 "namespace": mi.ref.namespace,
                                                 "pod": claim.name, "reason": refusal})
            return Verdict(refusal=refusal)
        return Verdict(accepted=result_status(claim.result), media_type=claim.result.type)

    async def _job_of(
        self, mi: MediaImport, job: Json | None, body: Json
    ) -> tuple[Json | None, JobView | None]:
        """The import's Job (``job`` when it is the one), created again if a started
        import lost it."""
        expected = job_name(mi)
        if job is None or job.get("metadata", {}).get("name") != expected:
            job = await self.kube.get(job_path(mi.ref.namespace, expected))
        view = JobView.from_body(job) if job is not None else None
        if view is not None and view.owner_uid not in (None, mi.ref.uid):
            view = None  # a Job of a predecessor with the same name: not ours
        if view is None and mi.status.phase == Phase.IMPORTING and not mi.deleting:
            job = await self._recreate_job(mi, body)
            view = JobView.from_body(job)
        return job, view

    async def _recreate_job(self, mi: MediaImport, body: Json) -> Json:
        """The Job of a started import is gone (someone deleted it): create it again. A
        refusal (a quota, a timeout) is said in an Event and raised, so the caller's retry
        queue tries again with backoff; the phase stays Importing meanwhile."""
        log.info("the Job of a running import is gone; creating it again",
                 extra={"mediaimport": mi.ref.name, "namespace": mi.ref.namespace})
        try:
            return await self._ensure_job(mi)
        except Exception as error:
            self.post_event(body, Event(
                "Warning", "JobCreateFailed",
                f"Could not create the import's Job again ({_first_line(str(error))}); "
                "retrying with backoff."))
            raise

    async def _fail_conflict(self, mi: MediaImport) -> None:
        message = (
            f"Asset id {mi.asset_id} already belongs to another user or MediaImport; "
            "nothing was imported"
        )
        decision = fail_without_job(
            mi, reason=REASON_ASSET_ID_CONFLICT, message=message, now=self.clock()
        )
        status = with_recorded(
            decision.status, ok=False, reason=REASON_ASSET_ID_CONFLICT, message=message,
            now=self.clock(), generation=mi.ref.generation,
        )
        await self._write(mi, Decision(status, decision.events))

    async def _sync(
        self,
        namespace: str,
        name: str,
        *,
        job: Json | None = None,
        written: RowStatus | None = None,
        body: Json | None = None,
        db_error: DatabaseError | None = None,
        check_pods: bool = False,
    ) -> None:
        cached_body = body is not None
        for _ in range(_MAX_CONFLICT_RETRIES):
            if body is None:
                body = await self.kube.get(mediaimport_path(namespace, name))
                if body is None:
                    self.retries.discard(Work.SYNC, namespace, name)
                    return
            mi = MediaImport.from_body(body)
            job, view = await self._job_of(mi, job, body)
            outcomes = []
            waiting = None
            if view is not None and view.uid and (
                view.finished or view.failed > 0 or check_pods or _shows_pod_problem(mi)
            ):
                # The Job's own pods only: a Job deleted and created again under the same
                # name has a new uid, and its predecessor's pods say nothing about it.
                pods = await self.kube.list_items(
                    pods_path(namespace), labelSelector=f"{CONTROLLER_UID_LABEL}={view.uid}"
                )
                outcomes = latest_outcomes(pods)
                if not view.finished:
                    waiting = next((problem for pod in pods if (
                        problem := pod_problem(pod, self.settings.s3_secret_name))), None)
            verdict = await self._verdict(mi, view, outcomes, stale=cached_body)
            if verdict is _READ_AGAIN:
                body = job = None
                cached_body = False
                continue
            if (waiting is None and view is not None and not view.finished
                    and self.has_secret is not None and not await self.has_secret(namespace)):
                waiting = secret_missing(self.settings.s3_secret_name, namespace,
                                         "the operator cannot sign the import pod's uploads")
            decision = derive(mi, view, outcomes, now=self.clock(), waiting=waiting,
                              verdict=cast("Verdict | None", verdict))
            status = await self._record(mi, decision.status, written, db_error)
            decision = Decision(status, decision.events)
            try:
                written_body = await self._write(mi, decision)
            except ApiError as error:
                if error.conflict:
                    job = body = None  # re-read everything: someone else wrote first
                    continue
                if error.not_found:
                    return
                raise
            self._follow_row(mi, status)
            await self._hold_for_row(mi, status, written_body or body)
            if job is not None and view is not None and status.phase and status.phase.terminal:
                await self._release_job(mi, job)
            return
        raise RetryLater(f"status of {namespace}/{name} kept changing under us", delay=1.0)

    async def _record(
        self,
        mi: MediaImport,
        status: MediaImportStatus,
        written: RowStatus | None,
        db_error: DatabaseError | None = None,
    ) -> MediaImportStatus:
        """Bring the row up to date with ``status`` when it may be behind."""
        now = self.clock()
        generation = mi.ref.generation
        if self.db is None:
            return with_recorded(
                status, ok=False, reason=REASON_RECORDING_DISABLED,
                message="No database is configured; the asset is not recorded",
                now=now, generation=generation,
            )
        phase_changed = status.phase != mi.status.phase
        if not phase_changed and not needs_recording(mi.status):
            return status
        target = row_status(status.phase)
        if written == target:
            outcome: UpsertOutcome | None = UpsertOutcome.WRITTEN
        else:
            try:
                if db_error is not None and target == "uploading":
                    raise db_error
                outcome = await self.db.upsert(row_for(mi, status))
                metrics.ROW_WRITES.labels(outcome.value).inc()
            except DatabaseError as error:
                if error is not db_error:
                    metrics.ROW_WRITES.labels(_row_error_label(error)).inc()
                return with_recorded(
                    status, ok=False, **_not_recorded(error), now=now, generation=generation
                )
            self._database_back()
        if outcome is UpsertOutcome.CONFLICT:
            return with_recorded(
                status, ok=False, reason=REASON_ASSET_ID_CONFLICT,
                message=f"Asset id {mi.asset_id} belongs to another user or MediaImport",
                now=now, generation=generation,
            )
        return with_recorded(
            status, ok=True, reason=REASON_ROW_UP_TO_DATE,
            message=f"The media_assets row {mi.asset_id} is {target}",
            now=now, generation=generation,
        )

    async def _write(self, mi: MediaImport, decision: Decision) -> Json | None:
        """Write the status when it changed; the object as written (None: unchanged)."""
        new = decision.status.wire()
        if new == mi.status.wire():
            return None
        patch: dict[str, Any] = {
            "metadata": {"resourceVersion": mi.resource_version},
            "status": new,
        }
        written = await self.kube.merge_patch(
            mediaimport_path(mi.ref.namespace, mi.ref.name) + "/status", patch
        )
        old_phase, new_phase = mi.status.phase, decision.status.phase
        for event in decision.events:
            self.post_event(mi.ref.body, event)
        if new_phase != old_phase:
            log.info(
                "phase changed",
                extra={"mediaimport": mi.ref.name, "namespace": mi.ref.namespace,
                       "from": str(old_phase) if old_phase else None, "to": str(new_phase)},
            )
        if new_phase is not None and new_phase.terminal and new_phase != old_phase:
            self._done(mi.ref.uid)
            self._observe_terminal(decision.status)
            if new_phase == Phase.FAILED and decision.status.job_name:
                await self._discard(mi)
        return written

    async def _hold_for_row(self, mi: MediaImport, status: MediaImportStatus, body: Json) -> None:
        """A finished import whose row is not written yet (Postgres is down) keeps a
        finalizer: deleted meanwhile, it stays until its row is written from it. What the row
        needs then lives on the object, where a restarted operator finds it, not in memory."""
        meta = body.get("metadata") or {}
        finalizers = [str(f) for f in meta.get("finalizers") or []]
        want = (self.db is not None and status.phase is not None and status.phase.terminal
                and needs_recording(status))
        if want == (RECORD_FINALIZER in finalizers) or (want and mi.deleting):
            return
        kept = [f for f in finalizers if f != RECORD_FINALIZER]
        patch = {"metadata": {"finalizers": [*kept, RECORD_FINALIZER] if want else kept or None,
                              "resourceVersion": meta.get("resourceVersion")}}
        try:
            await self.kube.merge_patch(mediaimport_path(mi.ref.namespace, mi.ref.name), patch)
        except ApiError as error:
            if error.not_found:
                return
            if not error.conflict:
                raise
            # Changed meanwhile: the next sync (queued while the row is behind) sees it again.
            self.retries.add(Work.SYNC, mi.ref.namespace, mi.ref.name, mi.ref.uid)

    def _discard_later(self, mi: MediaImport, delay: float) -> None:
        def fire() -> None:
            task = asyncio.ensure_future(self._discard(mi))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

        asyncio.get_running_loop().call_later(delay, fire)

    async def _discard(self, mi: MediaImport) -> None:
        """Delete what the failed import's pods stored (in brokered mode they cannot):
        nothing half-written stays under the prefix. Only an import that ran a Job, i.e.
        held its asset id's claim, owns the prefix."""
        if self.discard is None:
            return
        try:
            deleted = await self.discard(mi)
        except Exception as error:  # a bucket lifecycle rule is the backstop
            log.warning("could not delete the objects of a failed import",
                        extra={"mediaimport": mi.ref.name, "namespace": mi.ref.namespace,
                               "error": f"{type(error).__name__}: {error}"})
            return
        if deleted:
            log.info("deleted the objects of a failed import",
                     extra={"mediaimport": mi.ref.name, "namespace": mi.ref.namespace,
                            "objects": deleted})

    def _observe_terminal(self, status: MediaImportStatus) -> None:
        outcome = metrics.OUTCOME_READY if status.phase == Phase.READY else metrics.OUTCOME_FAILED
        condition = status.condition("Succeeded")
        metrics.IMPORTS.labels(outcome, condition.reason if condition else "").inc()
        if status.start_time and status.completion_time:
            seconds = (status.completion_time - status.start_time).total_seconds()
            metrics.IMPORT_DURATION.labels(outcome).observe(max(0.0, seconds))


def wants_start(event_type: str | None, body: Json, *, starting: bool) -> bool:
    """Whether a watch event should (re)start its import: every object as it is listed
    (type None) or added, since ``start`` settles finished ones and resumes running ones;
    on a change, only one never started and not being started already.

    Reads the raw body: it runs on every watch event, and ``start`` parses the object
    anyway when it is called."""
    if body.get("metadata", {}).get("deletionTimestamp"):
        return False
    if event_type in (None, "ADDED"):
        # A finished one only when its row is behind (most of a cluster's MediaImports
        # are finished: they are not even parsed).
        return not _terminal_raw(body) or needs_recording_raw(body)
    return not (body.get("status") or {}).get("phase") and not starting


def _shows_pod_problem(mi: MediaImport) -> bool:
    condition = mi.status.condition(SUCCEEDED)
    return condition is not None and condition.reason in POD_PROBLEM_REASONS


def _terminal_raw(body: Json) -> bool:
    return (body.get("status") or {}).get("phase") in (Phase.READY, Phase.FAILED)


def needs_recording_raw(body: Json) -> bool:
    """``status.needs_recording`` of a raw body, without parsing it."""
    status = body.get("status") or {}
    recorded = next((c for c in status.get("conditions") or []
                     if isinstance(c, dict) and c.get("type") == RECORDED), None)
    if recorded is None:
        return bool(status.get("phase"))
    return recorded.get("status") != "True" and recorded.get("reason") not in FINAL_RECORDED


def _job_digest(job: Json) -> tuple[Any, ...]:
    """The parts of a Job's status that can change its import's status."""
    status = job.get("status") or {}
    conditions = tuple(
        sorted(
            (c.get("type"), c.get("status"))
            for c in status.get("conditions") or []
            if c.get("type") in ("Complete", "Failed")
        )
    )
    return (status.get("active"), status.get("succeeded"), status.get("failed"), conditions)


def _row_error_label(error: DatabaseError) -> str:
    return metrics.ROW_REJECTED if isinstance(error, RowRejected) else metrics.ROW_UNAVAILABLE


def _not_recorded(error: DatabaseError) -> dict[str, str]:
    """The Recorded=False reason and message for a row that could not be written."""
    detail = _first_line(str(error))
    if isinstance(error, RowRejected):
        return {"reason": REASON_ROW_REJECTED,
                "message": f"Postgres refused the row ({detail}); it is tried again later"}
    return {"reason": REASON_DATABASE_UNAVAILABLE,
            "message": f"Postgres is unavailable ({detail}); the row is written when it is back"}


def _essentials(body: Json) -> Json:
    """What the operator needs of a MediaImport body: no managedFields, annotations or
    labels (kopf's and kubectl's bookkeeping can be most of an object's size)."""
    meta = body.get("metadata") or {}
    kept = {key: meta[key] for key in _KEPT_METADATA if key in meta}
    essentials: Json = {"metadata": kept, "spec": body.get("spec") or {}}
    if body.get("status"):
        essentials["status"] = body["status"]
    return essentials


_KEPT_METADATA = ("name", "namespace", "uid", "resourceVersion", "generation",
                  "deletionTimestamp", "finalizers")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else "no answer"


__all__ = ["LABEL_IMPORT_UID", "Reconciler", "RetryLater"]
