"""A Job's pod that cannot start → a Succeeded=Unknown reason and a Warning, at once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from mediaimport_operator.model import MediaImport
from mediaimport_operator.status import JobView, PodProblem, derive, pod_problem
from operator_factories import job_body, mi_body

NOW = datetime(2026, 11, 24, 10, 0, 5, tzinfo=UTC)
SECRET = "mediaimport-s3"


def _waiting_pod(reason: str, message: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "mi-sunset-0123456789-abcde", "namespace": "media"},
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {"name": "import", "state": {"waiting": {"reason": reason, "message": message}}}
            ],
        },
    }


def test_a_missing_s3_secret_is_named_with_its_namespace() -> None:
    problem = pod_problem(
        _waiting_pod("CreateContainerConfigError", f'secret "{SECRET}" not found'), SECRET
    )
    assert problem is not None
    assert problem.reason == "S3SecretMissing"
    assert f'"{SECRET}" does not exist in namespace media' in problem.message


@pytest.mark.parametrize(
    ("reason", "message", "expected"),
    [
        ("CreateContainerConfigError", 'secret "other" not found', "PodConfigError"),
        ("ErrImagePull", "pull access denied", "ImagePullFailed"),
        ("ImagePullBackOff", "Back-off pulling image", "ImagePullFailed"),
        ("InvalidImageName", "couldn't parse image name", "ImagePullFailed"),
    ],
)
def test_other_reasons_a_pod_cannot_start(reason: str, message: str, expected: str) -> None:
    problem = pod_problem(_waiting_pod(reason, message), SECRET)
    assert problem is not None
    assert problem.reason == expected
    assert message in problem.message


def test_an_unschedulable_pod() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "media"},
        "status": {"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient ephemeral-storage."}]},
    }
    problem = pod_problem(pod, SECRET)
    assert problem == PodProblem(
        "Unschedulable",
        "The import pod cannot be scheduled: "
        "0/3 nodes are available: 3 Insufficient ephemeral-storage.",
    )


@pytest.mark.parametrize(
    "pod",
    [
        _waiting_pod("ContainerCreating", ""),
        {"metadata": {"name": "p"}, "status": {"phase": "Running"}},
        {"metadata": {"name": "p"}, "status": {}},
    ],
)
def test_a_pod_on_its_way_is_no_problem(pod: dict[str, Any]) -> None:
    assert pod_problem(pod, SECRET) is None


def test_the_status_says_why_and_a_warning_is_posted_once() -> None:
    mi = MediaImport.from_body(mi_body())
    job = JobView.from_body(job_body(active=1))
    waiting = PodProblem("S3SecretMissing", 'The S3 Secret "mediaimport-s3" does not exist')
    first = derive(mi, job, [], now=NOW, waiting=waiting)
    (condition,) = [c for c in first.status.conditions if c.type == "Succeeded"]
    assert (condition.status, condition.reason) == ("Unknown", "S3SecretMissing")
    assert condition.message == 'The S3 Secret "mediaimport-s3" does not exist.'
    assert first.status.phase == "Importing"
    assert [(e.type, e.reason) for e in first.events] == [
        ("Normal", "JobCreated"), ("Warning", "S3SecretMissing")]

    again = derive(MediaImport.from_body(mi_body(status=first.status.wire())), job, [],
                   now=NOW, waiting=waiting)
    assert again.events == []  # the same trouble is not posted twice

    cleared = derive(MediaImport.from_body(mi_body(status=first.status.wire())), job, [],
                     now=NOW)
    (condition,) = [c for c in cleared.status.conditions if c.type == "Succeeded"]
    assert condition.reason == "JobCreated"
