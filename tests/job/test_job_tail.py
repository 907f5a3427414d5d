"""The tail of a run, in-process: the upload is completed on a background thread while the
thumbnail is rendered, so a failure there must still leave nothing behind."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from mediaimport_dev.s3server import S3Server
from mediaimport_job import pipeline, thumbnail, upload
from mediaimport_job.config import parse_settings
from mediaimport_job.errors import JobError
from mediaimport_job.reasons import FailureReason
from mediaimport_job.upload import ClientPromise, DirectStorage, make_client
from support.jobrun import bucket_contents
from support.media import MediaLibrary
from support.origin import Origin

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@pytest.fixture
def s3_env(s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


def _wait_for(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.usefixtures("s3_env")
@pytest.mark.parametrize("when", ["at once", "after the object appeared"])
def test_a_thumbnail_failure_during_the_background_store_leaves_nothing(
    when: str,
    media: MediaLibrary,
    origin: Origin,
    s3: S3Client,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    origin.add(media.path("large.mov"), "tail.mov")  # > 16 MiB: a streamed multipart upload
    settings = parse_settings(
        ["--url", origin.url("/files/tail.mov"), "--bucket", s3_bucket,
         "--key-prefix", "media/u/tail", "--allow-network", "127.0.0.2/32"]
    )  # fmt: skip

    def failing_render(*_args: object, **_kwargs: object) -> Path:
        if when != "at once":
            _wait_for(lambda: bucket_contents(s3, s3_bucket)[0] != [], "the media object")
        raise JobError(FailureReason.NOT_MEDIA, "no frame (test)", retryable=False)

    monkeypatch.setattr(thumbnail, "render", failing_render)
    workdir = tmp_path / "work"
    workdir.mkdir()
    clients = ClientPromise(lambda: make_client(settings.upload_concurrency))
    storage = DirectStorage(clients, s3_bucket)
    with pytest.raises(JobError, match=r"no frame \(test\)"):
        pipeline.run(settings, pipeline.Workspace(workdir), storage)
    assert bucket_contents(s3, s3_bucket) == ([], [])


@pytest.mark.usefixtures("s3_env")
def test_metadata_of_an_object_above_the_copy_limit_is_set_by_a_managed_copy(
    s3: S3Client, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above 5 GiB CopyObject refuses: the job's botocore client copies in parts (limit shrunk)."""
    body = bytes(range(256)) * (48 * 1024)  # 12 MiB
    s3.put_object(Bucket=s3_bucket, Key="big.bin", Body=body)
    monkeypatch.setattr(upload, "MAX_COPY_OBJECT", 5 * 1024 * 1024)
    upload.replace_metadata(
        make_client(2), s3_bucket, "big.bin",
        size=len(body), content_type="video/mp4", sha256="ab" * 32,
    )  # fmt: skip
    head = s3.head_object(Bucket=s3_bucket, Key="big.bin")
    assert head["ContentType"] == "video/mp4"
    assert head["Metadata"] == {"sha256": "ab" * 32, "attempt": upload.ATTEMPT}
    assert head["ContentLength"] == len(body)
    assert head["ETag"].endswith('-3"')  # three UploadPartCopy parts of 5 MiB
    assert s3.get_object(Bucket=s3_bucket, Key="big.bin")["Body"].read() == body
