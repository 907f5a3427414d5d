"""SIGTERM (the Job's deadline, a cancellation, a node drain) mid-import."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from mediaimport_dev.s3server import S3Server
from support.jobrun import JobRunner, bucket_contents
from support.media import MediaLibrary
from support.origin import Origin
from support.s3stall import StallingS3, is_upload_part

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


@pytest.mark.slow
def test_sigterm_while_s3_stops_answering_ends_within_the_grace_period(
    media: MediaLibrary,
    origin: Origin,
    run_job: JobRunner,
    s3: S3Client,
    s3_bucket: str,
    s3_server: S3Server,
) -> None:
    """The media object's parts hang (S3 stops answering UploadPart) while the job waits for
    the upload to complete; the thumbnail is already stored. SIGTERM comes and, as the
    kubelet does, SIGKILL follows after the grace period. By then the job must have
    aborted the upload, deleted the thumbnail and written its result document."""
    grace = 12
    origin.add(media.path("large.mov"), "grace.mov")
    with StallingS3(s3_server.endpoint_url, is_upload_part) as stalling:
        process, workdir, result_file = run_job.start(
            origin.url("/files/grace.mov"),
            env={"AWS_ENDPOINT_URL_S3": stalling.endpoint_url,
                 "MEDIAIMPORT_GRACE_PERIOD": str(grace)},
        )
        wait_for(lambda: any(key.endswith("/thumbnail.jpg")
                             for key in bucket_contents(s3, s3_bucket)[0]),
                 "the thumbnail to be stored while the parts hang")
        assert stalling.stalled, "no part upload was held"
        assert bucket_contents(s3, s3_bucket)[1], "no multipart upload in progress"
        process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()  # the kubelet's SIGKILL at the end of the grace period
        elapsed = time.monotonic() - sent
        run = run_job.finish(process, workdir, result_file, timeout=30)
    print(f"SIGTERM to exit: {elapsed:.2f} s (grace period {grace} s)")
    assert run.returncode == TERMINATED_EXIT, (round(elapsed, 2), run.stderr[-3000:])
    assert run.result["error"]["reason"] == "Terminated"
    assert run.last_stdout_line == run.result_text
    assert bucket_contents(s3, s3_bucket) == ([], [])
    assert run.leftovers == []
