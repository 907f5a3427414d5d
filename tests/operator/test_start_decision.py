"""Which MediaImport watch events start (or resume) an import, without a cluster."""

from __future__ import annotations

import pytest
from mediaimport_operator.reconcile import wants_start
from operator_factories import mi_body

IMPORTING = {"phase": "Importing", "jobName": "mi-sunset-0123456789"}
READY = {"phase": "Ready"}


def _mi(status: dict | None = None, *, deleting: bool = False) -> dict:
    body = mi_body(status=status)
    if deleting:
        body["metadata"]["deletionTimestamp"] = "2026-11-24T10:00:00Z"
    return body


@pytest.mark.parametrize("event_type", [None, "ADDED"])
@pytest.mark.parametrize("status", [None, IMPORTING, READY])
def test_listed_or_added_objects_are_started_whatever_their_phase(event_type, status) -> None:
    # start() resumes a running import and settles a finished one's row.
    assert wants_start(event_type, _mi(status), starting=False) is True


def test_a_change_to_an_import_never_started_starts_it() -> None:
    assert wants_start("MODIFIED", _mi(), starting=False) is True


def test_a_change_while_it_is_being_started_does_not_start_it_twice() -> None:
    assert wants_start("MODIFIED", _mi(), starting=True) is False


@pytest.mark.parametrize("status", [IMPORTING, READY])
def test_a_change_to_a_started_import_is_left_to_the_job_events(status) -> None:
    assert wants_start("MODIFIED", _mi(status), starting=False) is False


@pytest.mark.parametrize("event_type", [None, "ADDED", "MODIFIED"])
def test_an_import_being_deleted_is_never_started(event_type) -> None:
    assert wants_start(event_type, _mi(deleting=True), starting=False) is False


RECORDED_TRUE = {"type": "Recorded", "status": "True", "reason": "RowUpToDate",
                 "message": "The row is ready.", "lastTransitionTime": "2026-11-24T10:00:00Z"}
BEHIND = {**RECORDED_TRUE, "status": "False", "reason": "DatabaseUnavailable"}


@pytest.mark.parametrize("event_type", [None, "ADDED"])
def test_a_listed_finished_import_whose_row_is_written_is_left_alone(event_type) -> None:
    done = _mi({"phase": "Ready", "conditions": [RECORDED_TRUE]})
    assert wants_start(event_type, done, starting=False) is False
    behind = _mi({"phase": "Ready", "conditions": [BEHIND]})
    assert wants_start(event_type, behind, starting=False) is True
