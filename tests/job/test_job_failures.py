"""Every failure class through the real console script: exit code, exact reason and
retryability, and nothing left behind (no temp file, no object, no pending upload)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from mediaimport_dev.s3server import S3Server
from support.jobrun import JOB, JobRunner, bucket_contents
from support.media import MediaLibrary
from support.origin import Origin

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from .conftest import AssertFailed

FAST = ["--retries", "1"]


@pytest.mark.parametrize(
    ("path", "reason", "retryable"),
    [
        ("/status/401", "SourceForbidden", False),
        ("/status/403", "SourceForbidden", False),
        ("/status/404", "SourceNotFound", False),
        ("/status/410", "SourceNotFound", False),
        ("/status/400", "SourceRejected", False),
        ("/status/500", "SourceUnavailable", True),
        ("/status/503", "SourceUnavailable", True),
        ("/status/429?retry_after=3600", "SourceUnavailable", True),  # too long to wait
        ("/loop", "TooManyRedirects", False),
        ("/chain/11/h264.mp4", "TooManyRedirects", False),
        ("/redirect?to=ftp://127.0.0.2/h264.mp4", "InvalidURL", False),
        ("/redirect?to=file:///etc/passwd", "InvalidURL", False),
        ("/redirect?to=http://169.254.169.254/latest/meta-data/", "BlockedAddress", False),
        ("/redirect?to=http://[::1]:9/", "BlockedAddress", False),
        ("/redirect?to=http://100.64.0.1/", "BlockedAddress", False),
        ("/short/h264.mp4?extra=1000", "IncompleteBody", True),
        ("/files/page.html?type=video/mp4", "NotMedia", False),
        ("/files/random.bin", "NotMedia", False),
        ("/files/truncated.mp4", "NotMedia", False),
        ("/files/truncated_faststart.mp4", "NotMedia", False),
        ("/files/empty.bin", "NotMedia", False),
    ],
)
def test_origin_failures(
    path: str,
    reason: str,
    retryable: bool,
    media: MediaLibrary,
    origin: Origin,
    run_job: JobRunner,
    assert_failed: AssertFailed,
) -> None:
    for name in ("h264.mp4", "page.html", "random.bin", "truncated.mp4",
                 "truncated_faststart.mp4", "empty.bin"):  # fmt: skip
        origin.add(media.path(name))
    run = run_job(origin.url(path), *FAST, "--connect-timeout", "2")
    document = assert_failed(run, reason, retryable=retryable)
    assert "sig=" not in document["error"]["message"]


def test_redirect_to_a_refused_address_never_connects(
    origin: Origin, forbidden_origin: Origin, run_job: JobRunner, assert_failed: AssertFailed
) -> None:
    target = forbidden_origin.url("/files/secret")
    run = run_job(origin.url(f"/redirect?to={target}"))
    assert_failed(run, "BlockedAddress", retryable=False)
    assert forbidden_origin.hits("/files/secret") == 0


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "[::ffff:127.0.0.1]",
        "localhost",
        "[::1]",
        "0.0.0.0",
    ],
)
def test_refused_hosts(
    host: str, forbidden_origin: Origin, run_job: JobRunner, assert_failed: AssertFailed
) -> None:
    run = run_job(f"http://{host}:{forbidden_origin.port}/files/secret?sig=abc")
    document = assert_failed(run, "BlockedAddress", retryable=False)
    assert forbidden_origin.hits("/files/secret") == 0
    assert "sig=abc" not in document["error"]["message"]  # signed URLs' secrets stay out


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--max-bytes", "1000"], "TooLarge"),  # Content-Length says so: refused before the body
        (["--sha256", "0" * 64], "ChecksumMismatch"),
        (["--type", "image"], "TypeMismatch"),
        (["--type", "audio"], "TypeMismatch"),
    ],
)
def test_content_failures(
    args: list[str],
    reason: str,
    media: MediaLibrary,
    origin: Origin,
    run_job: JobRunner,
    assert_failed: AssertFailed,
) -> None:
    origin.add(media.path("h264.mp4"))
    assert_failed(run_job(origin.url("/files/h264.mp4"), *args), reason, retryable=False)


def test_audio_declared_as_video_is_a_mismatch(
    media: MediaLibrary, origin: Origin, run_job: JobRunner, assert_failed: AssertFailed
) -> None:
    origin.add(media.path("audio.mp3"))
    run = run_job(origin.url("/files/audio.mp3"), "--type", "video")
    document = assert_failed(run, "TypeMismatch", retryable=False)
    assert document["error"]["message"] == "declared type video but the file is an audio"


def test_endless_body_is_cut_at_max_bytes(
    origin: Origin, run_job: JobRunner, assert_failed: AssertFailed
) -> None:
    run = run_job(origin.url("/endless"), "--max-bytes", str(3 * 1024 * 1024))
    assert_failed(run, "TooLarge", retryable=False)


@pytest.mark.slow
def test_endless_body_with_streaming_upload_leaves_no_multipart_upload(
    origin: Origin, run_job: JobRunner, assert_failed: AssertFailed
) -> None:
    """Past 16 MiB the multipart upload has started; TooLarge must abort it."""
    run = run_job(origin.url("/endless"), "--name", "endless.mp4", "--max-bytes", str(40 * 1024**2))
    assert_failed(run, "TooLarge", retryable=False)
    assert "streaming s3://" in run.stderr


MiB = 1024 * 1024


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "counted"])
def test_a_file_larger_than_the_temporary_volume_is_too_large(
    announced: bool, origin: Origin, run_job: JobRunner, assert_failed: AssertFailed,
    tmp_path: Path,
) -> None:
    """Past the /tmp sizeLimit the kubelet would evict the pod, and the Job retries an
    eviction for ever: the job refuses such a file itself, as a permanent TooLarge."""
    # 64 MiB of the volume are kept for the thumbnail: 72 MiB leave 8 MiB for the file.
    tmp_limit = str(72 * MiB)
    if announced:
        origin.add(_zeros(tmp_path, 9 * MiB), "nine-mib.bin")
        run = run_job(origin.url("/files/nine-mib.bin"), "--tmp-limit", tmp_limit)
    else:
        run = run_job(origin.url("/endless"), "--tmp-limit", tmp_limit)
    document = assert_failed(run, "TooLarge", retryable=False)
    message = document["error"]["message"]
    assert f"the {8 * MiB} bytes the job's temporary volume has room for" in message
    assert f"--tmp-limit {72 * MiB}" in message


def test_the_smaller_of_max_bytes_and_the_volume_decides(
    origin: Origin, run_job: JobRunner, assert_failed: AssertFailed, tmp_path: Path
) -> None:
    origin.add(_zeros(tmp_path, 9 * MiB), "nine-mib.bin")
    run = run_job(origin.url("/files/nine-mib.bin"), "--tmp-limit", str(1024 * MiB),
                  "--max-bytes", str(MiB))
    document = assert_failed(run, "TooLarge", retryable=False)
    assert f"more than the limit of {MiB} bytes" in document["error"]["message"]


def _zeros(directory: Path, size: int) -> Path:
    path = directory / f"zeros-{size}.bin"
    path.write_bytes(bytes(size))
    return path


def test_a_temporary_volume_without_room_is_refused(
    run_job: JobRunner, assert_failed: AssertFailed
) -> None:
    run = run_job("https://cdn.example/x.mp4", "--tmp-limit", str(64 * MiB))
    document = assert_failed(run, "InvalidArgument", retryable=False)
    assert "--tmp-limit" in document["error"]["message"]


def test_drip_hits_the_deadline(
    origin: Origin, run_job: JobRunner, assert_failed: AssertFailed
) -> None:
    run = run_job(
        origin.url("/drip?delay=0.05"), "--download-timeout", "1.5", "--read-timeout", "1"
    )
    document = assert_failed(run, "DownloadTimeout", retryable=True)
    assert "within 1.5 s" in document["error"]["message"]


def test_drip_is_below_the_minimum_rate(
    origin: Origin, run_job: JobRunner, assert_failed: AssertFailed
) -> None:
    run = run_job(origin.url("/drip?delay=0.05"), "--min-rate-window", "1", "--min-rate", "1000")
    document = assert_failed(run, "DownloadTimeout", retryable=True)
    assert "below the minimum" in document["error"]["message"]


def test_connection_refused_is_retryable(
    run_job: JobRunner, assert_failed: AssertFailed, origin: Origin
) -> None:
    # A port on the allowed address with nobody listening.
    run = run_job(f"http://127.0.0.2:{_closed_port()}/x.mp4", *FAST)
    assert_failed(run, "SourceUnavailable", retryable=True)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.2", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        ([], "InvalidArgument"),
        (["--url", "http://127.0.0.2/x.mp4"], "InvalidArgument"),  # no bucket or prefix
        (
            ["--url", "ftp://127.0.0.2/x.mp4", "--bucket", "bucket", "--key-prefix", "a"],
            "InvalidURL",
        ),
        (
            [
                "--url",
                "http://127.0.0.2/x.mp4",
                "--bucket",
                "bucket",
                "--key-prefix",
                "a",
                "--thumbnail-width",
                "wide",
            ],
            "InvalidArgument",
        ),
    ],
)
def test_bad_arguments(argv: list[str], reason: str, run_job: JobRunner, tmp_path: object) -> None:
    result_file = run_job.tmp_path / "bad-args.json"
    run = run_job(None, raw=[JOB, *argv, "--result-file", str(result_file)])
    assert run.returncode == 2
    assert run.last_stdout_line == result_file.read_text()
    error = run.result_from(result_file)["error"]
    assert (error["reason"], error["retryable"]) == (reason, False)


@pytest.mark.parametrize("name", ["h264.mp4", "large.mov"])
def test_wrong_secret_key_fails_and_leaves_nothing(
    name: str,
    media: MediaLibrary,
    origin: Origin,
    run_job: JobRunner,
    s3_server: S3Server,
    s3: S3Client,
    s3_bucket: str,
    assert_failed: AssertFailed,
) -> None:
    """A signature mismatch is a configuration error: permanent, no retry fixes it."""
    origin.add(media.path(name))
    run = run_job(origin.url(f"/files/{name}"), env={"AWS_SECRET_ACCESS_KEY": "wrong-secret"})
    document = assert_failed(run, "UploadFailed", retryable=False)
    assert "SignatureDoesNotMatch" in document["error"]["message"]
    assert bucket_contents(s3, s3_bucket) == ([], [])
