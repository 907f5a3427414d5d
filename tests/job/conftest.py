"""Fixtures for the job's tests: sample media, the misbehaving origin, and a runner
that starts the real ``mediaimport-job`` console script the way a pod would."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from mediaimport_dev.s3server import S3Server
from support.channel_server import ChannelServer, ImportChannel
from support.channel_server import serve as serve_channel
from support.jobrun import JobRun, JobRunner, bucket_contents
from support.media import MediaLibrary
from support.origin import Origin, serve

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> MediaLibrary:
    return MediaLibrary(tmp_path_factory.mktemp("media"))


@pytest.fixture(scope="session")
def origin() -> Iterator[Origin]:
    """The origin the job is allowed to reach (127.0.0.2/32 is allowed in every run)."""
    with serve("127.0.0.2") as server:
        yield server


@pytest.fixture(scope="session")
def forbidden_origin() -> Iterator[Origin]:
    """An origin on 127.0.0.1, which the job must refuse: its hit counter proves it."""
    with serve("127.0.0.1") as server:
        yield server


@pytest.fixture
def run_job(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> JobRunner:
    return JobRunner(s3_server, s3_bucket, tmp_path)


@pytest.fixture(scope="session")
def channel_server(s3_server: S3Server) -> Iterator[ChannelServer]:
    """The test channel (standing in for the operator's), signing for the S3 server."""
    with serve_channel(s3_server) as server:
        yield server


@pytest.fixture
def channel(channel_server: ChannelServer, s3_bucket: str) -> ImportChannel:
    """One import on the test channel: its prefix is run_job's default."""
    return channel_server.register(s3_bucket, "media/user-1/asset-1")


@pytest.fixture
def s3(s3_server: S3Server) -> S3Client:
    return s3_server.client()


AssertFailed = Callable[..., dict[str, Any]]


@pytest.fixture
def assert_failed(s3: S3Client, s3_bucket: str) -> AssertFailed:
    """Check a failed run: exit code, reason, retryable, and that nothing was left behind."""

    def check(
        run: JobRun, reason: str, *, retryable: bool, exit_code: int | None = None
    ) -> dict[str, Any]:
        expected_exit = exit_code if exit_code is not None else (1 if retryable else 2)
        assert run.returncode == expected_exit, run.stderr
        document = run.result
        assert document["status"] == "failed"
        assert document["error"]["reason"] == reason, document
        assert document["error"]["retryable"] is retryable
        assert document["error"]["message"]
        assert run.last_stdout_line == run.result_text
        assert run.leftovers == []
        assert bucket_contents(s3, s3_bucket) == ([], [])
        return document

    return check
