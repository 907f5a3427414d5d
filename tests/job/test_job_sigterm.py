"""SIGTERM (the Job's deadline, a cancellation, a node drain) mid-import."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from support.jobrun import JobRunner, bucket_contents
from support.media import MediaLibrary
from support.origin import Origin

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from .conftest import AssertFailed

TERMINATED_EXIT = 143


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll until ``condition`` holds (a readiness wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_during_a_dripping_download(
    origin: Origin, run_job: JobRunner, assert_failed: AssertFailed
) -> None:
    before = origin.hits("/drip")
    process, workdir, result_file = run_job.start(origin.url("/drip?delay=0.2"))
    wait_for(lambda: origin.hits("/drip") > before, "the job to reach the origin")
    wait_for(lambda: any((workdir / "tmp").rglob("source")), "the download to begin")
    process.send_signal(signal.SIGTERM)
    run = run_job.finish(process, workdir, result_file, timeout=60)
    document = assert_failed(run, "Terminated", retryable=True, exit_code=TERMINATED_EXIT)
    assert "SIGTERM" in document["error"]["message"]


@pytest.mark.slow
def test_sigterm_with_a_multipart_upload_in_flight_aborts_it(
    media: MediaLibrary,
    origin: Origin,
    run_job: JobRunner,
    s3: S3Client,
    s3_bucket: str,
    assert_failed: AssertFailed,
) -> None:
    """20 MiB arrive, so parts are uploading; then the origin stalls and SIGTERM comes."""
    origin.add(media.path("large.mov"), "stall.mov")
    process, workdir, result_file = run_job.start(
        origin.url(f"/stall/stall.mov?after={20 * 1024 * 1024}")
    )
    wait_for(lambda: bucket_contents(s3, s3_bucket)[1] != [], "the multipart upload to start")
    process.send_signal(signal.SIGTERM)
    run = run_job.finish(process, workdir, result_file, timeout=60)
    assert_failed(run, "Terminated", retryable=True, exit_code=TERMINATED_EXIT)
    assert "aborted the multipart upload" in run.stderr
