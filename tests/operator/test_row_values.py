"""MediaImport status → media_assets row values, without a database."""

from __future__ import annotations

from datetime import UTC, datetime

from mediaimport_operator.model import MediaImport
from mediaimport_operator.records import default_name, row_for
from mediaimport_operator.status import JobView, derive, latest_outcomes
from operator_factories import (
    ASSET,
    UID,
    checked,
    failed_result,
    job_body,
    mi_body,
    pod_body,
    ready_result,
)

NOW = datetime(2026, 11, 24, 10, 0, 5, tzinfo=UTC)
USER_METADATA = {"prompt": "a sunset", "model": "wan-2.1", "aiGenerated": True,
                 "source_url": "https://forged.example/"}


def _mi(status=None):
    return MediaImport.from_body(
        mi_body(status=status, spec={"assetId": ASSET, "metadata": USER_METADATA})
    )


def test_uploading_row_on_creation() -> None:
    row = row_for(_mi())
    assert row.id == ASSET
    assert row.user_id == "user-1"
    assert row.status == "uploading"
    assert row.name == "out.mp4"
    assert row.file_metadata is not None
    assert row.file_metadata["prompt"] == "a sunset"
    assert row.file_metadata["aiGenerated"] is True
    # The operator's keys win over user keys of the same name.
    assert row.file_metadata["source_url"].startswith("https://replicate.delivery/")
    # The signed URL's query token is not stored (the job's logs leave it out too).
    assert row.file_metadata["source_url"] == "https://replicate.delivery/pbxt/abc/out.mp4"
    assert row.file_metadata["mediaimport"] == {"namespace": "media", "name": "sunset",
                                                "uid": UID}
    assert row.import_uid == UID


def test_ready_row_uses_the_seed_key_names() -> None:
    importing = derive(_mi(), JobView.from_body(job_body(active=1)), [], now=NOW).status
    pods = [pod_body("p", phase="Succeeded", exit_code=0, message=ready_result())]
    done = job_body(succeeded=1, condition=("Complete", "", ""))
    ready = derive(
        _mi(importing.wire()),
        JobView.from_body(done),
        latest_outcomes(pods),
        now=NOW,
        verdict=checked(done, pods),
    ).status
    row = row_for(_mi(ready.wire()))
    assert row.status == "ready"
    assert row.file_type == "video"
    assert row.file_size == 2_500_000
    assert row.checksum == "ab" * 32
    assert row.s3_key is not None and row.s3_key.endswith("/out.mp4")
    assert row.thumbnail_s3_key is not None and row.thumbnail_s3_key.endswith("/thumbnail.jpg")
    meta = row.file_metadata or {}
    for key, value in {"duration": 4.0, "width": 640, "height": 360, "frame_rate": 30.0,
                       "codec": "h264", "bitrate": 5_000_000, "format": "mp4"}.items():
        assert meta[key] == value
    assert meta["imported_at"] == "2026-11-24T10:00:30Z"
    assert "error" not in meta
    assert "frameRate" not in meta


def test_failed_row_carries_the_error() -> None:
    importing = derive(_mi(), JobView.from_body(job_body(active=1)), [], now=NOW).status
    pods = [pod_body("p", phase="Failed", exit_code=2, message=failed_result())]
    failed = derive(
        _mi(importing.wire()),
        JobView.from_body(job_body(failed=1, condition=("Failed", "PodFailurePolicy", ""))),
        latest_outcomes(pods),
        now=NOW,
    ).status
    row = row_for(_mi(failed.wire()))
    assert row.status == "failed"
    assert (row.file_metadata or {})["error"]["reason"] == "SourceNotFound"
    assert row.s3_key is None


def test_default_name_from_the_url() -> None:
    assert default_name("https://x.example/a/b/My%20Clip.mp4?sig=1") == "My Clip.mp4"
    assert default_name("https://x.example/") == "media"
