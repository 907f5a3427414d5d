"""Job, pods and the job's result document → MediaImport status (pure).

The status is level-triggered: ``derive`` computes it from what exists now, so
running it twice, late, or after a restart converges on the same answer. A
terminal phase (Ready, Failed) is never left again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlsplit

from mediaimport_job.result import FailedResult, FailureReason, ReadyResult, parse
from pydantic import ValidationError

from .model import (
    RECORDED,
    SUCCEEDED,
    Condition,
    ConditionStatus,
    MediaImport,
    MediaImportStatus,
    MediaInfoStatus,
    MediaType,
    Phase,
    ProgressStatus,
    ResultStatus,
)

# Succeeded condition reasons of our own (failures from the job use FailureReason values).
REASON_PENDING = "Pending"
REASON_JOB_CREATED = "JobCreated"
REASON_JOB_MISSING = "JobMissing"
REASON_RETRYING = "Retrying"
REASON_IMPORTED = "Imported"
REASON_DEADLINE = "DeadlineExceeded"
REASON_BACKOFF = "BackoffLimitExceeded"
REASON_POD_FAILURE_POLICY = "PodFailurePolicy"
REASON_RESULT_UNAVAILABLE = "ResultUnavailable"
REASON_JOB_FAILED = "JobFailed"
REASON_ASSET_ID_CONFLICT = "AssetIdConflict"
REASON_INVALID_RESULT = "InvalidResult"
# Succeeded=Unknown reasons while the Job's pod cannot start (it would wait for its deadline).
REASON_S3_SECRET_MISSING = "S3SecretMissing"  # noqa: S105 - a reason, not a secret
REASON_POD_CONFIG_ERROR = "PodConfigError"
REASON_IMAGE_PULL_FAILED = "ImagePullFailed"
REASON_UNSCHEDULABLE = "Unschedulable"
POD_PROBLEM_REASONS = frozenset(
    {REASON_S3_SECRET_MISSING, REASON_POD_CONFIG_ERROR, REASON_IMAGE_PULL_FAILED,
     REASON_UNSCHEDULABLE}
)
_IMAGE_PULL_WAITING = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})
# Recorded condition reasons.
REASON_ROW_UP_TO_DATE = "RowUpToDate"
REASON_DATABASE_UNAVAILABLE = "DatabaseUnavailable"
REASON_ROW_REJECTED = "RowRejected"
REASON_RECORDING_DISABLED = "RecordingDisabled"
# Recorded=False reasons that another try cannot change.
FINAL_RECORDED = (REASON_ASSET_ID_CONFLICT, REASON_RECORDING_DISABLED)


@dataclass(frozen=True)
class JobView:
    """The parts of a batch/v1 Job that decide an import's state."""

    name: str
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    complete: bool = False
    failed_reason: str | None = None
    failed_message: str | None = None
    finished_at: datetime | None = None
    active_deadline_seconds: int | None = None
    backoff_limit: int | None = None
    uid: str | None = None
    owner_uid: str | None = None

    @property
    def finished(self) -> bool:
        return self.complete or self.failed_reason is not None

    @property
    def attempts(self) -> int:
        return self.active + self.succeeded + self.failed

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> JobView:
        meta = body.get("metadata", {})
        spec = body.get("spec", {})
        status = body.get("status") or {}
        complete = False
        failed_reason: str | None = None
        failed_message: str | None = None
        finished_at: datetime | None = None
        for cond in status.get("conditions") or []:
            if cond.get("status") != "True":
                continue
            if cond.get("type") == "Complete":
                complete = True
                finished_at = _time(cond.get("lastTransitionTime"))
            elif cond.get("type") == "Failed":
                failed_reason = cond.get("reason") or REASON_JOB_FAILED
                failed_message = cond.get("message") or ""
                finished_at = _time(cond.get("lastTransitionTime"))
        if complete and status.get("completionTime"):
            finished_at = _time(status["completionTime"])
        owner_uid = next(
            (ref.get("uid") for ref in meta.get("ownerReferences") or [] if ref.get("controller")),
            None,
        )
        return cls(
            name=meta.get("name", ""),
            active=int(status.get("active") or 0),
            succeeded=int(status.get("succeeded") or 0),
            failed=int(status.get("failed") or 0),
            complete=complete,
            failed_reason=failed_reason,
            failed_message=failed_message,
            finished_at=finished_at,
            active_deadline_seconds=spec.get("activeDeadlineSeconds"),
            backoff_limit=spec.get("backoffLimit"),
            uid=meta.get("uid"),
            owner_uid=owner_uid,
        )


@dataclass(frozen=True)
class PodOutcome:
    """One finished pod: its exit code and the job's result document (if it left one)."""

    name: str
    phase: str
    exit_code: int | None
    finished_at: datetime | None
    result: ReadyResult | FailedResult | None
    raw_message: str = ""
    # The uid of the pod's controller (its Job). Labels say nothing: anyone who may create
    # pods can copy them.
    owner_uid: str | None = None

    @property
    def succeeded(self) -> bool:
        """The container exited 0 with a Ready result document: the import is done.

        The kubelet reports the container's end about two seconds before the Job is
        Complete (one PLEG relist to stop the pod and another to write its phase, then the
        Job controller's one-second batching), and nothing after it can change the result:
        the objects are in S3 and the Job, which runs one pod to one completion, only
        follows.
        """
        return self.exit_code == 0 and isinstance(self.result, ReadyResult)

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> PodOutcome | None:
        status = body.get("status") or {}
        phase = status.get("phase", "")
        terminated: dict[str, Any] | None = None
        for container in status.get("containerStatuses") or []:
            state = container.get("state") or {}
            terminated = state.get("terminated") or (container.get("lastState") or {}).get(
                "terminated"
            )
            if terminated:
                break
        if phase not in ("Succeeded", "Failed") and terminated is None:
            return None
        message = (terminated or {}).get("message") or ""
        meta = body.get("metadata", {})
        return cls(
            name=meta.get("name", ""),
            owner_uid=next((ref.get("uid") for ref in meta.get("ownerReferences") or []
                            if ref.get("controller")), None),
            phase=phase,
            exit_code=(terminated or {}).get("exitCode"),
            finished_at=_time((terminated or {}).get("finishedAt")),
            result=parse_result(message),
            raw_message=message,
        )


def parse_result(message: str) -> ReadyResult | FailedResult | None:
    """The result document in a termination message, or None (absent, cut, or log text)."""
    text = message.strip()
    if not text:
        return None
    # FallbackToLogsOnError may leave log lines; the document is the last line.
    for candidate in (text, text.splitlines()[-1]):
        try:
            return parse(candidate)
        except (ValidationError, ValueError):
            continue
    return None


def latest_outcomes(pods: Iterable[dict[str, Any]]) -> list[PodOutcome]:
    """Finished pods, most recent first."""
    outcomes = [o for o in (PodOutcome.from_body(p) for p in pods) if o is not None]
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(outcomes, key=lambda o: (o.finished_at or epoch, o.name), reverse=True)


@dataclass(frozen=True)
class Verdict:
    """What the operator concluded about the result an import's pod claims.

    ``accepted`` passed every check (the pod is the Job's, the bucket is the configured
    one, every key lies under the import's prefix, the objects exist with the sizes
    claimed); ``refusal`` says why a claim was not believed. Neither: nothing to judge.
    """

    accepted: ResultStatus | None = None
    refusal: str | None = None
    media_type: MediaType | None = None


def accepted_from_status(mi: MediaImport) -> Verdict | None:
    """The result the channel already checked and put into the status, if any."""
    result = mi.status.result
    if result is None:
        return None
    family = result.content_type.split("/", 1)[0]
    media_type = mi.status.type or mi.spec.type
    if media_type is None and family in ("video", "image", "audio"):
        media_type = cast("MediaType", family)
    return Verdict(accepted=result, media_type=media_type)


def result_status(ready: ReadyResult) -> ResultStatus:
    """A result document's wire form in the status (what the checks then compare)."""
    return ResultStatus(
        bucket=ready.bucket,
        key=ready.key,
        thumbnailKey=ready.thumbnailKey,
        name=ready.name,
        size=ready.size,
        sha256=ready.sha256,
        contentType=ready.contentType,
        media=MediaInfoStatus.model_validate(ready.media.model_dump()),
    )


def claimed_ready(job: JobView | None, outcomes: Sequence[PodOutcome]) -> PodOutcome | None:
    """The pod whose Ready result decides the import: one that exited 0 with a Ready
    document, or, once the Job is Complete, the latest with a Ready document."""
    succeeded = next((o for o in outcomes if o.succeeded), None)
    if succeeded is not None or job is None or not job.complete:
        return succeeded
    return next((o for o in outcomes if isinstance(o.result, ReadyResult)), None)


@dataclass(frozen=True)
class PodProblem:
    """Why a pod of the Job cannot start; the kubelet keeps trying, so it may clear."""

    reason: str
    message: str


def secret_missing(s3_secret_name: str, namespace: str, consequence: str) -> PodProblem:
    """The S3 Secret the import needs is not in its namespace (the pod cannot start with
    it, or, brokered, the operator cannot sign the pod's uploads with it)."""
    return PodProblem(
        REASON_S3_SECRET_MISSING,
        f'The S3 Secret "{s3_secret_name}" does not exist in namespace {namespace}: '
        f"{consequence} until it does (keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
        "AWS_REGION, optionally AWS_ENDPOINT_URL_S3)",
    )


def pod_problem(pod: dict[str, Any], s3_secret_name: str) -> PodProblem | None:
    """What keeps ``pod`` from starting (a missing Secret, an image that cannot be pulled,
    no node that fits), or None. Without this the import would wait for its deadline."""
    status = pod.get("status") or {}
    if status.get("phase") not in (None, "Pending"):
        return None
    namespace = pod.get("metadata", {}).get("namespace", "")
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason, message = waiting.get("reason"), str(waiting.get("message") or "")
        if reason == "CreateContainerConfigError":
            if s3_secret_name and f'secret "{s3_secret_name}" not found' in message:
                return secret_missing(s3_secret_name, namespace, "the import pod cannot start")
            return PodProblem(
                REASON_POD_CONFIG_ERROR, f"The import pod cannot start: {message or reason}"
            )
        if reason in _IMAGE_PULL_WAITING:
            return PodProblem(
                REASON_IMAGE_PULL_FAILED,
                f"The job image cannot be pulled ({reason}): {message or 'no detail'}",
            )
    for condition in status.get("conditions") or []:
        if (condition.get("type"), condition.get("status"), condition.get("reason")) == (
            "PodScheduled", "False", "Unschedulable"
        ):
            detail = condition.get("message") or "no node fits it"
            return PodProblem(
                REASON_UNSCHEDULABLE, f"The import pod cannot be scheduled: {detail}"
            )
    return None


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    status: MediaImportStatus
    events: list[Event] = field(default_factory=list)

    @property
    def phase(self) -> Phase:
        return self.status.phase or Phase.PENDING


def set_condition(
    conditions: Sequence[Condition],
    *,
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> tuple[Condition, ...]:
    """Replace one condition; lastTransitionTime moves only when its status changes."""
    old = next((c for c in conditions if c.type == type_), None)
    since = old.last_transition_time if old is not None and old.status == status else now
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=_sentence(message),
        lastTransitionTime=since,
        observedGeneration=generation,
    )
    others = [c for c in conditions if c.type != type_]
    # Succeeded first: it is the summary people and tools look for.
    return tuple(sorted([*others, new], key=lambda c: (c.type != SUCCEEDED, c.type)))


def derive(
    mi: MediaImport,
    job: JobView | None,
    outcomes: Sequence[PodOutcome],
    *,
    now: datetime,
    waiting: PodProblem | None = None,
    verdict: Verdict | None = None,
) -> Decision:
    """The status ``mi`` should have given its Job, the Job's finished pods, what keeps
    its current pod from starting (``waiting``) and what the checks made of the result
    its pod claims (``verdict``: only an accepted result makes an import Ready)."""
    old = mi.status
    if old.phase is not None and old.phase.terminal:
        return Decision(old)
    base = old.model_copy(
        update={
            "observed_generation": mi.ref.generation,
            "asset_id": mi.asset_id,
            "type": old.type or mi.spec.type,
        }
    )
    if job is None:
        if old.phase == Phase.IMPORTING:
            return _job_missing(base, mi, now)
        return _pending(base, mi, now)
    base = base.model_copy(
        update={
            "job_name": job.name,
            "start_time": old.start_time or now,
            # The Job's first pod is on its way as soon as the Job exists.
            "attempts": max(job.attempts, old.attempts or 0, 1),
        }
    )
    if job.complete or any(o.succeeded for o in outcomes):
        return _complete(base, mi, job, outcomes, now, verdict=verdict)
    if job.failed_reason is not None:
        return _failed(base, mi, job, outcomes, now)
    return _running(base, mi, job, outcomes, now, waiting=waiting)


def succeeded_with_result(pod: dict[str, Any]) -> bool:
    """Whether ``pod``'s container exited 0 with a Ready result document."""
    outcome = PodOutcome.from_body(pod)
    return outcome is not None and outcome.succeeded


def _pending(base: MediaImportStatus, mi: MediaImport, now: datetime) -> Decision:
    status = _with_succeeded(
        base,
        mi,
        phase=Phase.PENDING,
        condition=ConditionStatus.UNKNOWN,
        reason=REASON_PENDING,
        message="Waiting for the import Job to be created",
        now=now,
    )
    return Decision(status)


def _job_missing(base: MediaImportStatus, mi: MediaImport, now: datetime) -> Decision:
    """A started import whose Job is gone (deleted by someone): it is created again, and
    the phase does not go back to Pending meanwhile."""
    status = _with_succeeded(
        base,
        mi,
        phase=Phase.IMPORTING,
        condition=ConditionStatus.UNKNOWN,
        reason=REASON_JOB_MISSING,
        message="The import's Job is gone; it is being created again",
        now=now,
    )
    return Decision(status)


def _running(
    base: MediaImportStatus,
    mi: MediaImport,
    job: JobView,
    outcomes: Sequence[PodOutcome],
    now: datetime,
    *,
    waiting: PodProblem | None = None,
) -> Decision:
    events: list[Event] = []
    previous = mi.status.condition(SUCCEEDED)
    if waiting is not None:
        # Said at once, not at the deadline; the kubelet keeps trying, so it may clear.
        reason, message = waiting.reason, waiting.message
        if previous is None or previous.reason != reason:
            events.append(Event("Warning", reason, _sentence(message)))
    elif job.failed > 0:
        last = outcomes[0] if outcomes else None
        cause = _describe_failure(last)
        total = (job.backoff_limit or 0) + 1
        reason = REASON_RETRYING
        message = (
            f"Attempt {job.failed} of up to {total} failed ({cause}); the Job retries it"
        )
        # The message starts with the failure count: another count is another failure
        # (the cause may be filled in later, when the pod's status arrives).
        if previous is None or not previous.message.startswith(f"Attempt {job.failed} of"):
            events.append(Event("Warning", "AttemptFailed", _sentence(message)))
    else:
        reason = REASON_JOB_CREATED
        message = f"Created Job {job.name} to import from {_host(mi.spec.url)}"
    status = _with_succeeded(
        base,
        mi,
        phase=Phase.IMPORTING,
        condition=ConditionStatus.UNKNOWN,
        reason=reason,
        message=message,
        now=now,
    )
    if mi.status.phase in (None, Phase.PENDING):
        events.insert(
            0, Event("Normal", REASON_JOB_CREATED, _sentence(f"Created Job {job.name}"))
        )
    return Decision(status, events)


def _complete(
    base: MediaImportStatus,
    mi: MediaImport,
    job: JobView,
    outcomes: Sequence[PodOutcome],
    now: datetime,
    *,
    verdict: Verdict | None,
) -> Decision:
    succeeded = next((o for o in outcomes if o.succeeded), None)
    if verdict is not None and verdict.refusal is not None:
        return _finish_failed(
            base, mi, now=now, reason=REASON_INVALID_RESULT,
            message=f"The import pod's result was refused: {verdict.refusal}",
        )
    result = verdict.accepted if verdict is not None else None
    if result is None:
        return _finish_failed(
            base,
            mi,
            now=job.finished_at or now,
            reason=REASON_RESULT_UNAVAILABLE,
            message=(
                f"Job {job.name} completed but its pod left no readable result document "
                "in its termination message"
            ),
        )
    media_type = (verdict.media_type if verdict else None) or mi.spec.type or "video"
    name = result.name or result.key.rsplit("/", 1)[-1]
    message = (
        f"Imported {media_type} {name} ({human_size(result.size)}) "
        f"to s3://{result.bucket}/{result.key}"
    )
    finished = job.finished_at or (succeeded.finished_at if succeeded else None) or now
    status = _with_succeeded(
        base.model_copy(
            update={
                "result": result,
                "type": media_type,
                "completion_time": finished,
                "progress": final_progress(base.progress),
            }
        ),
        mi,
        phase=Phase.READY,
        condition=ConditionStatus.TRUE,
        reason=REASON_IMPORTED,
        message=message,
        now=now,
    )
    return Decision(status, [Event("Normal", REASON_IMPORTED, _sentence(message))])


def final_progress(last: ProgressStatus | None) -> ProgressStatus:
    """A Ready import's progress: the last report, completed (100 %, finishing)."""
    if last is None:
        return ProgressStatus(summary="100%", phase="finishing", percent=100.0)
    total = last.bytes_total if last.bytes_total is not None else last.bytes_downloaded
    return last.model_copy(
        update={"summary": "100%", "phase": "finishing", "percent": 100.0, "eta": 0.0,
                "bytes_downloaded": total, "bytes_total": total}
    )


def _failed(
    base: MediaImportStatus,
    mi: MediaImport,
    job: JobView,
    outcomes: Sequence[PodOutcome],
    now: datetime,
) -> Decision:
    job_reason = job.failed_reason or REASON_JOB_FAILED
    attempts = max(job.attempts, 1)
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    last = next((o for o in outcomes if isinstance(o.result, FailedResult)), None)
    document = last.result if last is not None and isinstance(last.result, FailedResult) else None
    if job_reason == REASON_DEADLINE:
        # The pod was stopped at the deadline: its own "Terminated" result is a consequence.
        deadline = job.active_deadline_seconds
        reason = REASON_DEADLINE
        message = (
            f"The import did not finish within its deadline of {deadline} s "
            f"(activeDeadlineSeconds) and was stopped after {tries}"
        )
    elif document is not None and document.error.reason != FailureReason.TERMINATED:
        reason = str(document.error.reason)
        message = f"{_sentence(document.error.message)} The import failed after {tries}"
    else:
        reason = job_reason
        detail = job.failed_message or "the Job failed"
        message = f"{_sentence(detail)} The import failed after {tries}"
    return _finish_failed(base, mi, now=job.finished_at or now, reason=reason, message=message)


def _finish_failed(
    base: MediaImportStatus, mi: MediaImport, *, now: datetime, reason: str, message: str
) -> Decision:
    status = _with_succeeded(
        # A result the channel checked before the Job gave up is not the import's: a failed
        # import has none (its objects are discarded).
        base.model_copy(update={"completion_time": now, "result": None}),
        mi,
        phase=Phase.FAILED,
        condition=ConditionStatus.FALSE,
        reason=reason,
        message=message,
        now=now,
    )
    return Decision(status, [Event("Warning", reason, _sentence(message))])


def fail_without_job(mi: MediaImport, *, reason: str, message: str, now: datetime) -> Decision:
    """A MediaImport that cannot start at all (e.g. its asset id belongs to another import)."""
    if mi.status.phase is not None and mi.status.phase.terminal:
        return Decision(mi.status)
    base = mi.status.model_copy(
        update={
            "observed_generation": mi.ref.generation,
            "asset_id": mi.asset_id,
            "type": mi.status.type or mi.spec.type,
            "attempts": mi.status.attempts or 0,
        }
    )
    return _finish_failed(base, mi, now=now, reason=reason, message=message)


def _with_succeeded(
    status: MediaImportStatus,
    mi: MediaImport,
    *,
    phase: Phase,
    condition: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
) -> MediaImportStatus:
    conditions = set_condition(
        status.conditions,
        type_=SUCCEEDED,
        status=condition,
        reason=reason,
        message=message,
        now=now,
        generation=mi.ref.generation,
    )
    return status.model_copy(update={"phase": phase, "conditions": conditions})


def with_recorded(
    status: MediaImportStatus,
    *,
    ok: bool,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> MediaImportStatus:
    conditions = set_condition(
        status.conditions,
        type_=RECORDED,
        status=ConditionStatus.TRUE if ok else ConditionStatus.FALSE,
        reason=reason,
        message=message,
        now=now,
        generation=generation,
    )
    return status.model_copy(update={"conditions": conditions})


def needs_recording(status: MediaImportStatus) -> bool:
    """True when the row may be behind the status (and another try can help)."""
    recorded = status.condition(RECORDED)
    if recorded is None:
        return status.phase is not None
    return recorded.status != ConditionStatus.TRUE and recorded.reason not in FINAL_RECORDED


def _describe_failure(outcome: PodOutcome | None) -> str:
    if outcome is None:
        return "the pod failed"
    if isinstance(outcome.result, FailedResult):
        return f"{outcome.result.error.reason}: {outcome.result.error.message.rstrip('.')}"
    if outcome.exit_code is not None:
        return f"exit code {outcome.exit_code}"
    return "the pod failed"


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or "the source"
    except ValueError:
        return "the source"


def _sentence(text: str) -> str:
    """A message as the API conventions want it: a sentence (capitalised, full stop)."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - loop always returns


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
