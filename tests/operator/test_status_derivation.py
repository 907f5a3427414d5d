"""Job + pods + result document → MediaImport status, without a cluster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from mediaimport_job.result import FailureReason
from mediaimport_operator.model import MediaImport, Phase
from mediaimport_operator.status import (
    JobView,
    derive,
    latest_outcomes,
    needs_recording,
    parse_result,
    with_recorded,
)
from operator_factories import (
    UID,
    checked,
    failed_result,
    job_body,
    mi_body,
    pod_body,
    ready_result,
)

NOW = datetime(2026, 11, 24, 10, 0, 5, tzinfo=UTC)


def _derive(mi_status: dict | None, job: dict | None, pods: list[dict] | None = None,
            now: datetime = NOW, spec: dict | None = None):
    mi = MediaImport.from_body(mi_body(status=mi_status, spec=spec))
    view = JobView.from_body(job) if job is not None else None
    return derive(mi, view, latest_outcomes(pods or []), now=now,
                  verdict=checked(job, pods or []))


def _succeeded(status):
    return status.condition("Succeeded")


def test_new_job_means_importing_with_job_created() -> None:
    decision = _derive(None, job_body(active=1), spec={"type": "video"})
    status = decision.status
    assert status.phase == Phase.IMPORTING
    assert status.job_name == "mi-sunset-0123456789"
    assert status.asset_id == UID
    assert status.type == "video"
    assert status.start_time == NOW
    assert status.attempts == 1
    assert status.observed_generation == 1
    cond = _succeeded(status)
    assert (cond.status, cond.reason) == ("Unknown", "JobCreated")
    assert cond.message.endswith(".") and "replicate.delivery" in cond.message
    assert "token=secret" not in cond.message  # signed URLs stay out of messages
    assert [e.reason for e in decision.events] == ["JobCreated"]
    wire = status.wire()
    assert wire["phase"] == "Importing"
    assert wire["startTime"] == "2026-11-24T10:00:05Z"
    assert wire["conditions"][0]["lastTransitionTime"] == "2026-11-24T10:00:05Z"


def test_complete_job_makes_the_import_ready_with_the_result() -> None:
    first = _derive(None, job_body(active=1)).status.wire()
    pods = [pod_body("p1", phase="Succeeded", exit_code=0, message=ready_result())]
    later = NOW + timedelta(seconds=30)
    decision = _derive(first, job_body(succeeded=1, condition=("Complete", "", "")), pods, later)
    status = decision.status
    assert status.phase == Phase.READY
    assert status.type == "video"
    assert status.attempts == 1
    assert status.completion_time == datetime(2026, 11, 24, 10, 0, 30, tzinfo=UTC)
    assert status.result is not None
    assert status.result.key.endswith("/out.mp4")
    wire = status.wire()
    assert wire["result"]["media"] == {
        "duration": 4.0, "width": 640, "height": 360, "frameRate": 30.0,
        "codec": "h264", "bitrate": 5_000_000, "format": "mp4",
    }
    assert wire["result"]["thumbnailKey"].endswith("/thumbnail.jpg")
    cond = _succeeded(status)
    assert (cond.status, cond.reason) == ("True", "Imported")
    assert cond.last_transition_time == later
    assert "2.4 MiB" in cond.message
    assert [e.reason for e in decision.events] == ["Imported"]


def test_last_transition_time_only_moves_when_the_status_changes() -> None:
    first = _derive(None, job_body(active=1)).status.wire()
    again = _derive(first, job_body(active=1), now=NOW + timedelta(seconds=9))
    assert _succeeded(again.status).last_transition_time == NOW
    assert again.status.wire() == first
    assert again.events == []


def test_permanent_failure_takes_the_reason_from_the_result_document() -> None:
    first = _derive(None, job_body(active=1)).status.wire()
    pods = [pod_body("p1", phase="Failed", exit_code=2, message=failed_result())]
    job = job_body(failed=1, condition=("Failed", "PodFailurePolicy", "Container import ..."))
    decision = _derive(first, job, pods)
    status = decision.status
    assert status.phase == Phase.FAILED
    cond = _succeeded(status)
    assert (cond.status, cond.reason) == ("False", "SourceNotFound")
    assert cond.message == (
        "The source answered 404 Not Found. The import failed after 1 attempt."
    )
    assert status.attempts == 1
    assert decision.events[0].type == "Warning"


def test_backoff_limit_uses_the_last_attempts_document() -> None:
    first = _derive(None, job_body(active=1)).status.wire()
    unavailable = failed_result(FailureReason.SOURCE_UNAVAILABLE, "HTTP 500 after 3 tries", True)
    pods = [
        pod_body(f"p{i}", phase="Failed", exit_code=1, message=unavailable,
                 finished=f"2026-11-24T10:00:0{i}Z")
        for i in range(4)
    ]
    job = job_body(failed=4, condition=("Failed", "BackoffLimitExceeded", "Job has reached..."))
    status = _derive(first, job, pods).status
    cond = _succeeded(status)
    assert cond.reason == "SourceUnavailable"
    assert "after 4 attempts" in cond.message
    assert status.attempts == 4


def test_job_condition_reason_when_there_is_no_document() -> None:
    first = _derive(None, job_body(active=1)).status.wire()
    pods = [pod_body("p1", phase="Failed", exit_code=137, message="Killed\n")]
    job = job_body(failed=4, condition=("Failed", "BackoffLimitExceeded", "Job has reached the "
                                         "specified backoff limit"))
    cond = _succeeded(_derive(first, job, pods).status)
    assert cond.reason == "BackoffLimitExceeded"
    assert cond.message.startswith("Job has reached the specified backoff limit.")


def test_deadline_exceeded_wins_over_the_terminated_document() -> None:
    first = _derive(None, job_body(active=1)).status.wire()
    pods = [pod_body("p1", phase="Failed", exit_code=143,
                     message=failed_result(FailureReason.TERMINATED, "stopped by SIGTERM", True))]
    job = job_body(failed=1, condition=("Failed", "DeadlineExceeded", "Job was active longer"))
    cond = _succeeded(_derive(first, job, pods).status)
    assert cond.reason == "DeadlineExceeded"
    assert "1800 s" in cond.message


def test_retry_in_progress_is_reported_once_per_failure() -> None:
    first = _derive(None, job_body(active=1)).status.wire()
    unavailable = failed_result(FailureReason.SOURCE_UNAVAILABLE, "HTTP 500", True)
    pods = [pod_body("p1", phase="Failed", exit_code=1, message=unavailable)]
    retrying = _derive(first, job_body(active=1, failed=1), pods)
    cond = _succeeded(retrying.status)
    assert (cond.status, cond.reason) == ("Unknown", "Retrying")
    assert cond.last_transition_time == NOW  # still Unknown: no transition
    assert retrying.status.attempts == 2
    assert [e.reason for e in retrying.events] == ["AttemptFailed"]
    again = _derive(retrying.status.wire(), job_body(active=1, failed=1), pods)
    assert again.events == []


def test_terminal_status_is_never_left() -> None:
    first = _derive(None, job_body(active=1)).status.wire()
    pods = [pod_body("p1", phase="Succeeded", exit_code=0, message=ready_result())]
    ready = _derive(first, job_body(succeeded=1, condition=("Complete", "", "")), pods).status
    # A stale Job event (or a Job recreated by someone) must not pull it back.
    after = _derive(ready.wire(), job_body(active=1))
    assert after.status.phase == Phase.READY
    assert after.events == []


def test_complete_without_a_result_document_fails_clearly() -> None:
    first = _derive(None, job_body(active=1)).status.wire()
    pods = [pod_body("p1", phase="Succeeded", exit_code=0, message="")]
    cond = _succeeded(_derive(first, job_body(succeeded=1, condition=("Complete", "", "")),
                              pods).status)
    assert cond.reason == "ResultUnavailable"


def test_a_container_that_ended_with_its_result_makes_the_import_ready_before_the_job() -> None:
    """The kubelet reports the container's end (with its termination message) about 2 s
    before the Job is Complete (a PLEG relist to stop the pod, then the Job controller's
    1 s batching): the result is final once the container exited 0 with it."""
    first = _derive(None, job_body(active=1)).status.wire()
    pods = [pod_body("p1", phase="Running", exit_code=0, message=ready_result(),
                     finished="2026-11-24T10:00:07Z")]
    decision = _derive(first, job_body(active=1), pods, NOW + timedelta(seconds=3))
    status = decision.status
    assert status.phase == Phase.READY
    assert status.completion_time == datetime(2026, 11, 24, 10, 0, 7, tzinfo=UTC)
    assert status.result is not None and status.result.key.endswith("/out.mp4")
    assert (_succeeded(status).status, _succeeded(status).reason) == ("True", "Imported")
    assert [e.reason for e in decision.events] == ["Imported"]


@pytest.mark.parametrize(
    ("exit_code", "message"),
    [
        (0, ""),  # no document yet: the Job's end decides (ResultUnavailable)
        (1, failed_result()),  # a failed attempt: the Job may retry it
        (1, ready_result()),  # a document but a failing exit: not a success to act on
    ],
)
def test_a_running_job_is_not_decided_by_a_pod_without_a_successful_result(
    exit_code: int, message: object
) -> None:
    first = _derive(None, job_body(active=1)).status.wire()
    pods = [pod_body("p1", phase="Running", exit_code=exit_code, message=message)]
    status = _derive(first, job_body(active=1), pods).status
    assert status.phase == Phase.IMPORTING


def test_no_job_is_pending() -> None:
    status = _derive(None, None).status
    assert status.phase == Phase.PENDING
    assert _succeeded(status).status == "Unknown"


def test_result_document_after_log_lines() -> None:
    text = "downloading...\n" + ready_result().model_dump_json()
    assert parse_result(text) is not None
    assert parse_result("not json") is None
    assert parse_result("") is None


def test_recorded_condition_and_retry_need() -> None:
    status = _derive(None, job_body(active=1)).status
    assert needs_recording(status)
    down = with_recorded(status, ok=False, reason="DatabaseUnavailable", message="down",
                         now=NOW, generation=1)
    assert needs_recording(down)
    assert [c.type for c in down.conditions] == ["Succeeded", "Recorded"]
    up = with_recorded(down, ok=True, reason="RowUpToDate", message="ok", now=NOW, generation=1)
    assert not needs_recording(up)
    conflict = with_recorded(status, ok=False, reason="AssetIdConflict", message="taken",
                             now=NOW, generation=1)
    assert not needs_recording(conflict)


def test_a_started_import_whose_job_is_gone_never_goes_back_to_pending() -> None:
    importing = _derive(None, job_body(active=1)).status
    assert importing.phase == Phase.IMPORTING
    after = _derive(importing.wire(), None, now=NOW + timedelta(seconds=30)).status
    assert after.phase == Phase.IMPORTING
    cond = _succeeded(after)
    assert (cond.status, cond.reason) == ("Unknown", "JobMissing")
    assert cond.message == "The import's Job is gone; it is being created again."


def test_a_failed_import_keeps_no_result_the_channel_put_in_its_status() -> None:
    first = _derive(None, job_body(active=1)).status.wire()
    first["result"] = {"bucket": "b", "key": "media/user-1/a/clip.mp4", "size": 3,
                       "sha256": "0" * 64, "contentType": "video/mp4"}
    job = job_body(failed=4, condition=("Failed", "BackoffLimitExceeded", "too many"))
    status = _derive(first, job).status
    assert status.phase == Phase.FAILED
    assert status.result is None and "result" not in status.wire()
