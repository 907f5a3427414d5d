"""The job through the per-import channel: brokered uploads with no S3 credential in the
pod, progress reports, the result posted before the termination message, and what the job
does when the channel is down or refuses (a test channel server standing in for the
operator's, against the real S3 server; the real console script)."""

from __future__ import annotations

import hashlib
import itertools
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from mediaimport_dev.ports import free_port
from mediaimport_dev.s3server import S3Server
from mediaimport_job.progress import PHASES
from support.channel_server import ChannelServer, ImportChannel, reports
from support.jobrun import JobRun, JobRunner, bucket_contents
from support.media import MediaLibrary
from support.origin import Origin

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PREFIX = "media/user-1/asset-1"
NO_AWS = ("AWS_",)


def brokered(
    run_job: JobRunner, channel: ImportChannel, url: str, *args: str, **env: str
) -> JobRun:
    """Run the job as the operator's brokered pod would: the channel, no AWS_* at all."""
    run = run_job(url, *args, env={**channel.env(), **env}, unset=NO_AWS)
    assert not [name for name in run_job.last_env if name.startswith("AWS_")]
    assert channel.token not in run.stderr and channel.token not in run.stdout
    return run


def stored(s3: S3Client, bucket: str, key: str) -> tuple[bytes, str, dict[str, str]]:
    answer = s3.get_object(Bucket=bucket, Key=key)
    return answer["Body"].read(), answer["ContentType"], answer["Metadata"]


def assert_ready_and_posted(run: JobRun, channel: ImportChannel) -> dict[str, Any]:
    assert run.returncode == 0, run.stderr
    document = run.result
    assert document["status"] == "ready"
    assert run.leftovers == []
    assert channel.results == [document]  # the same document, posted before exit
    return document


def assert_progress_sane(channel: ImportChannel) -> list[dict[str, Any]]:
    seen = reports(channel)
    assert seen, "no progress report arrived"
    order = [PHASES.index(report["phase"]) for report in seen]
    assert order == sorted(order), [report["phase"] for report in seen]
    percents = [report["percent"] for report in seen if report["percent"] is not None]
    assert percents == sorted(percents)
    assert seen[-1]["phase"] == "finishing" and seen[-1]["percent"] == 100
    uploaded = [report["bytesUploaded"] for report in seen]
    assert uploaded == sorted(uploaded)
    for report in seen:
        assert report["updatedAt"].endswith("Z")
    return seen


def test_a_small_file_goes_up_in_one_presigned_put(
    media: MediaLibrary, origin: Origin, run_job: JobRunner, channel: ImportChannel,
    s3: S3Client, s3_bucket: str,
) -> None:  # fmt: skip
    source = media.path("h264.mp4")
    origin.add(source, "brokered-small.mp4")
    run = brokered(run_job, channel, origin.url("/files/brokered-small.mp4"))
    document = assert_ready_and_posted(run, channel)

    data = source.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert document["key"] == f"{PREFIX}/brokered-small.mp4"
    body, content_type, metadata = stored(s3, s3_bucket, document["key"])
    assert body == data and content_type == "video/mp4" and metadata == {"sha256": digest}
    thumb, thumb_type, thumb_meta = stored(s3, s3_bucket, f"{PREFIX}/thumbnail.jpg")
    assert thumb[:3] == b"\xff\xd8\xff" and thumb_type == "image/jpeg"
    assert thumb_meta == {"sha256": hashlib.sha256(thumb).hexdigest()}
    assert channel.count("uploads/put", 200) == 2  # the media file and the thumbnail
    assert channel.count("uploads/multipart") == 0
    assert bucket_contents(s3, s3_bucket)[1] == []
    assert channel.results[0]["thumbnailKey"] == f"{PREFIX}/thumbnail.jpg"
    seen = assert_progress_sane(channel)
    assert seen[-1]["bytesDownloaded"] == len(data)
    assert seen[-1]["bytesUploaded"] == len(data) + len(thumb)


def test_a_large_file_streams_up_in_parts_presigned_in_batches(
    media: MediaLibrary, origin: Origin, run_job: JobRunner, channel: ImportChannel,
    s3: S3Client, s3_bucket: str,
) -> None:  # fmt: skip
    source = media.path("large.mov")
    assert source.stat().st_size > 16 * 1024 * 1024
    origin.add(source, "brokered-large.mov")
    run = brokered(run_job, channel, origin.url("/files/brokered-large.mov"))
    document = assert_ready_and_posted(run, channel)

    data = source.read_bytes()
    body, content_type, metadata = stored(s3, s3_bucket, document["key"])
    assert body == data and content_type == "video/quicktime"
    assert metadata == {"sha256": hashlib.sha256(data).hexdigest()}
    head = s3.head_object(Bucket=s3_bucket, Key=document["key"])
    parts = -(-len(data) // (5 * 1024 * 1024))
    assert head["ContentLength"] == len(data)
    assert channel.count("uploads/multipart", 200) == 1
    assert channel.count("uploads/parts", 200) == 1  # one batch signs every part
    assert channel.count("uploads/complete", 200) == 1
    assert channel.count("uploads/put", 200) == 1  # the thumbnail
    assert parts > 1 and bucket_contents(s3, s3_bucket)[1] == []
    assert_progress_sane(channel)


def test_botocore_is_never_loaded_in_brokered_mode(
    media: MediaLibrary, origin: Origin, channel: ImportChannel, s3_server: S3Server,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The job in-process (``cli.execute``), then the modules it loaded: no boto at all."""
    origin.add(media.path("large.mov"), "no-boto.mov")  # multipart: every brokered path
    code = (
        "import sys\n"
        "from mediaimport_job import cli\n"
        "result, code, _ = cli.execute(sys.argv[1:])\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 'botocore', "
        "'s3transfer'})\n"
        "print(result.status, code, loaded)\n"
    )
    env = {
        "PATH": "/usr/bin:/bin:" + str(Path(sys.executable).parent),
        "TMPDIR": str(tmp_path),
        **channel.env(),
    }
    out = subprocess.run(
        [sys.executable, "-c", code, "--url", origin.url("/files/no-boto.mov"),
         "--bucket", channel.bucket, "--key-prefix", PREFIX, "--allow-network", "127.0.0.2/32",
         "--result-file", str(tmp_path / "result.json")],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "ready 0 []", out.stderr
    assert channel.results and channel.results[0]["status"] == "ready"


@pytest.mark.slow
def test_a_slow_origin_reports_progress_as_it_goes(
    media: MediaLibrary, origin: Origin, run_job: JobRunner, channel: ImportChannel,
) -> None:  # fmt: skip
    source = media.path("large.mov")
    origin.add(source, "brokered-paced.mov")
    size = source.stat().st_size
    rate = size / 4  # about four seconds of download
    run = brokered(run_job, channel, origin.url(f"/paced/brokered-paced.mov?rate={rate:.0f}"))
    assert_ready_and_posted(run, channel)
    seen = assert_progress_sane(channel)
    downloading = [report for report in seen if report["phase"] == "downloading"]
    assert len(downloading) >= 3, seen
    assert all(report["bytesTotal"] == size for report in downloading)
    assert len({report["percent"] for report in downloading}) >= 3
    assert any(report["speed"] and report["eta"] is not None for report in downloading)
    assert [report["phase"] for report in seen][-4:] == [
        "probing",
        "rendering",
        "uploading",
        "finishing",
    ] or set(PHASES) <= {report["phase"] for report in seen}
    # At most one report a second, besides the ones a phase change sends at once.
    times = [at for at, report in channel.progress if report["phase"] == "downloading"]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap >= 0.9 for gap in gaps), gaps


def test_progress_without_a_content_length_has_no_percent_until_the_end(
    media: MediaLibrary, origin: Origin, run_job: JobRunner, channel: ImportChannel,
) -> None:  # fmt: skip
    source = media.path("large.mov")
    origin.add(source, "brokered-nolength.mov")
    rate = source.stat().st_size / 3
    url = origin.url(f"/paced/brokered-nolength.mov?rate={rate:.0f}&length=0")
    run = brokered(run_job, channel, url)
    assert_ready_and_posted(run, channel)
    seen = assert_progress_sane(channel)
    downloading = [report for report in seen if report["phase"] == "downloading"]
    assert downloading, seen
    assert all(r["bytesTotal"] is None and r["percent"] is None for r in downloading)


def test_the_channel_down_fails_as_channel_unavailable_within_the_budget(
    media: MediaLibrary, origin: Origin, run_job: JobRunner, channel: ImportChannel,
    s3: S3Client, s3_bucket: str,
) -> None:  # fmt: skip
    origin.add(media.path("h264.mp4"), "channel-down.mp4")
    env = {
        **channel.env(),
        "MEDIAIMPORT_CHANNEL_URL": f"http://127.0.0.1:{free_port('127.0.0.1')}/v1/imports/d/x",
        "MEDIAIMPORT_CHANNEL_BUDGET": "2",
    }
    started = time.monotonic()
    run = run_job(origin.url("/files/channel-down.mp4"), env=env, unset=NO_AWS)
    elapsed = time.monotonic() - started
    assert run.returncode == 1, run.stderr
    error = run.result["error"]
    assert error["reason"] == "ChannelUnavailable" and error["retryable"] is True
    assert "within 2 s" in error["message"] and "attempts" in error["message"]
    # 2 s for the upload's request, 3 s at most for posting the failure; start-up and the
    # probe besides.
    assert elapsed < 12, elapsed
    assert run.leftovers == []
    assert bucket_contents(s3, s3_bucket) == ([], [])
    assert channel.token not in run.stderr


def test_a_channel_that_answers_503_is_retried_on_new_connections(
    media: MediaLibrary, origin: Origin, run_job: JobRunner, channel: ImportChannel,
) -> None:  # fmt: skip
    origin.add(media.path("h264.mp4"), "channel-503.mp4")
    channel.fail("uploads/put", 503, times=2, reason="LeaderChanging", retry_after="0")
    run = brokered(run_job, channel, origin.url("/files/channel-503.mp4"))
    assert_ready_and_posted(run, channel)
    puts = [r for r in channel.requests if r.endpoint == "uploads/put"]
    assert [r.status for r in puts][:3] == [503, 503, 200]
    assert len({r.client_port for r in puts[:3]}) == 3  # a new connection each time


def test_a_result_the_operator_refuses_fails_as_invalid_result(
    media: MediaLibrary, origin: Origin, run_job: JobRunner, channel: ImportChannel,
    s3: S3Client, s3_bucket: str,
) -> None:  # fmt: skip
    origin.add(media.path("h264.mp4"), "refused-result.mp4")
    channel.fail("result", 422, reason="InvalidResult", message="the key is not yours")
    run = brokered(run_job, channel, origin.url("/files/refused-result.mp4"))
    assert run.returncode == 2, run.stderr
    error = run.result["error"]
    assert error["reason"] == "InvalidResult" and error["retryable"] is False
    assert "the key is not yours" in error["message"]
    assert run.leftovers == []
    # The failure is posted too; the objects are the operator's to delete (the pod cannot).
    assert channel.results[-1]["status"] == "failed"
    assert bucket_contents(s3, s3_bucket)[1] == []


@pytest.mark.parametrize(
    ("status", "reason"), [(403, "CredentialExpired"), (409, "ImportFinished")]
)
def test_a_refusal_of_the_channel_is_a_permanent_failure(
    status: int, reason: str, media: MediaLibrary, origin: Origin, run_job: JobRunner,
    channel: ImportChannel, s3: S3Client, s3_bucket: str,
) -> None:  # fmt: skip
    origin.add(media.path("large.mov"), f"refused-{status}.mov")
    channel.fail("uploads/multipart", status, reason=reason, message="no more writes")
    run = brokered(run_job, channel, origin.url(f"/files/refused-{status}.mov"))
    assert run.returncode == 2, run.stderr
    error = run.result["error"]
    assert error["reason"] == "ChannelRefused" and error["retryable"] is False
    assert f"({status} {reason})" in error["message"] and "no more writes" in error["message"]
    assert run.leftovers == []
    objects, uploads = bucket_contents(s3, s3_bucket)
    # Nothing of the media file; a thumbnail stored meanwhile is the operator's to delete.
    assert uploads == [] and set(objects) <= {f"{PREFIX}/thumbnail.jpg"}


def test_another_imports_credential_is_refused(
    media: MediaLibrary, origin: Origin, run_job: JobRunner, channel: ImportChannel,
    channel_server: ChannelServer, s3_bucket: str,
) -> None:  # fmt: skip
    other = channel_server.register(s3_bucket, "media/user-2/asset-9")
    origin.add(media.path("h264.mp4"), "other-credential.mp4")
    env = {**channel.env(), "MEDIAIMPORT_CHANNEL_TOKEN": other.token}
    run = run_job(origin.url("/files/other-credential.mp4"), env=env, unset=NO_AWS)
    assert run.returncode == 2, run.stderr
    assert run.result["error"]["reason"] == "ChannelRefused"
    assert "(403 Forbidden)" in run.result["error"]["message"]
    assert other.token not in run.stderr and channel.results == []


def test_a_key_outside_the_prefix_is_refused_by_the_channel(
    media: MediaLibrary, origin: Origin, run_job: JobRunner, channel: ImportChannel,
    s3: S3Client, s3_bucket: str,
) -> None:  # fmt: skip
    """The pod asks to write elsewhere (here: its --key-prefix is not the import's)."""
    origin.add(media.path("h264.mp4"), "elsewhere.mp4")
    run = run_job(
        origin.url("/files/elsewhere.mp4"), env=channel.env(), unset=NO_AWS,
        prefix="media/user-2/asset-9",
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert "KeyOutsidePrefix" in run.result["error"]["message"]
    assert bucket_contents(s3, s3_bucket) == ([], [])


def test_credentials_mode_still_reports_through_the_channel(
    media: MediaLibrary, origin: Origin, run_job: JobRunner, channel: ImportChannel,
    s3: S3Client, s3_bucket: str,
) -> None:  # fmt: skip
    """``MEDIAIMPORT_STORAGE=credentials``: S3 with the pod's keys, progress and result to
    the channel."""
    origin.add(media.path("h264.mp4"), "credentials.mp4")
    env = {**channel.env(), "MEDIAIMPORT_STORAGE": "credentials"}
    run = run_job(origin.url("/files/credentials.mp4"), env=env)
    document = assert_ready_and_posted(run, channel)
    _, _, metadata = stored(s3, s3_bucket, document["key"])
    assert set(metadata) == {"sha256", "attempt"}  # written by the job's own client
    assert metadata["attempt"] == channel.pod_uid
    assert channel.count("uploads/put") == 0
    assert_progress_sane(channel)
