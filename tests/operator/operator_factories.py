"""Builders of MediaImport, Job and pod bodies for the operator's unit tests."""

from __future__ import annotations

import json
from typing import Any

from mediaimport_job.result import (
    ErrorInfo,
    FailedResult,
    FailureReason,
    MediaInfo,
    ReadyResult,
    render,
)
from mediaimport_operator.status import (
    JobView,
    Verdict,
    claimed_ready,
    latest_outcomes,
    result_status,
)

UID = "6f1c2a52-3b7e-4f0e-9d1a-2b8f5c7e9a01"
ASSET = "0b6f2a9e-8a4c-4f7e-9c1d-3e5f7a9b1c2d"


def mi_body(
    name: str = "sunset",
    *,
    spec: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    uid: str = UID,
) -> dict[str, Any]:
    return {
        "apiVersion": "mediaimport.dev/v1alpha1",
        "kind": "MediaImport",
        "metadata": {
            "name": name,
            "namespace": "media",
            "uid": uid,
            "generation": 1,
            "resourceVersion": "42",
        },
        "spec": {
            "url": "https://replicate.delivery/pbxt/abc/out.mp4?token=secret",
            "userId": "user-1",
            **(spec or {}),
        },
        "status": status or {},
    }


def ready_result(**media: Any) -> ReadyResult:
    return ReadyResult(
        type="video",
        bucket="media-bucket",
        key=f"media/user-1/{UID}/out.mp4",
        thumbnailKey=f"media/user-1/{UID}/thumbnail.jpg",
        name="out.mp4",
        size=2_500_000,
        sha256="ab" * 32,
        contentType="video/mp4",
        media=MediaInfo(
            **{
                "duration": 4.0,
                "width": 640,
                "height": 360,
                "frameRate": 30.0,
                "codec": "h264",
                "bitrate": 5_000_000,
                "format": "mp4",
                **media,
            }
        ),
    )


def failed_result(
    reason: FailureReason = FailureReason.SOURCE_NOT_FOUND,
    message: str = "the source answered 404 Not Found",
    retryable: bool = False,
) -> FailedResult:
    return FailedResult(error=ErrorInfo(reason=reason, message=message, retryable=retryable))


def job_body(
    name: str = "mi-sunset-0123456789",
    *,
    active: int = 0,
    succeeded: int = 0,
    failed: int = 0,
    condition: tuple[str, str, str] | None = None,
    owner_uid: str = UID,
) -> dict[str, Any]:
    status: dict[str, Any] = {"active": active, "succeeded": succeeded, "failed": failed}
    if condition is not None:
        type_, reason, message = condition
        status["conditions"] = [
            {
                "type": type_,
                "status": "True",
                "reason": reason,
                "message": message,
                "lastTransitionTime": "2026-11-24T10:00:30Z",
            }
        ]
        if type_ == "Complete":
            status["completionTime"] = "2026-11-24T10:00:30Z"
    return {
        "metadata": {
            "name": name,
            "namespace": "media",
            "uid": "job-uid",
            "ownerReferences": [
                {"kind": "MediaImport", "name": "sunset", "uid": owner_uid, "controller": True}
            ],
        },
        "spec": {"backoffLimit": 3, "activeDeadlineSeconds": 1800},
        "status": status,
    }


def pod_body(
    name: str,
    *,
    phase: str,
    exit_code: int,
    message: str | ReadyResult | FailedResult = "",
    finished: str = "2026-11-24T10:00:20Z",
) -> dict[str, Any]:
    text = render(message) if not isinstance(message, str) else message
    return {
        "metadata": {"name": name, "namespace": "media"},
        "status": {
            "phase": phase,
            "containerStatuses": [
                {
                    "name": "import",
                    "state": {
                        "terminated": {
                            "exitCode": exit_code,
                            "message": text,
                            "finishedAt": finished,
                        }
                    },
                }
            ],
        },
    }


def as_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def checked(job: dict[str, Any] | None, pods: list[dict[str, Any]]) -> Verdict | None:
    """The verdict on the Ready result the pods claim, as if it had passed every check
    (the checks themselves are the reconciler's and the channel's, tested on their own)."""
    view = JobView.from_body(job) if job is not None else None
    claim = claimed_ready(view, latest_outcomes(pods))
    if claim is None or not isinstance(claim.result, ReadyResult):
        return None
    return Verdict(accepted=result_status(claim.result), media_type=claim.result.type)
