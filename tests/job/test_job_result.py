"""The result document always fits Kubernetes' 4096-byte termination message."""

from __future__ import annotations

from mediaimport_job.errors import JobError
from mediaimport_job.result import (
    TERMINATION_MESSAGE_LIMIT,
    FailedResult,
    FailureReason,
    MediaInfo,
    ReadyResult,
    parse,
    render,
)


def test_long_error_messages_are_shortened_to_fit() -> None:
    failure = JobError(FailureReason.NOT_MEDIA, "é" * 10_000, retryable=False).to_result()
    text = render(failure)
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    parsed = parse(text)
    assert isinstance(parsed, FailedResult) and parsed.error.reason == "NotMedia"
    assert parsed.error.message.endswith("(truncated)")


def test_ready_document_round_trips_compactly() -> None:
    ready = ReadyResult(
        type="video",
        bucket="media",
        key="media/u/a/" + "n" * 200,
        thumbnailKey="media/u/a/thumbnail.jpg",
        name="n" * 200,
        size=1,
        sha256="0" * 64,
        contentType="video/mp4",
        media=MediaInfo(
            duration=1.0, width=2, height=2, frameRate=25.0, codec="h264", bitrate=1, format="mp4"
        ),
    )
    text = render(ready)
    assert "\n" not in text and len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    assert parse(text) == ready
