"""The downloader in-process against the real origin, with a recorded clock-free sleep."""

from __future__ import annotations

import hashlib
import ipaddress
from pathlib import Path

import pytest
from mediaimport_job.download import (
    BACKOFF_CAP,
    DownloadLimits,
    backoff_delay,
    download,
    parse_retry_after,
)
from mediaimport_job.errors import JobError
from mediaimport_job.netguard import AddressPolicy, GuardedPoolManager
from mediaimport_job.urls import redact
from support.media import MediaLibrary
from support.origin import Origin


class RecordingSink:
    def __init__(self) -> None:
        self.expected: list[int | None] = []
        self.offsets: list[int] = []
        self.restarts = 0

    def expect(self, size: int | None) -> None:
        self.expected.append(size)

    def written(self, offset: int) -> None:
        self.offsets.append(offset)

    def restart(self) -> None:
        self.restarts += 1


@pytest.fixture
def http() -> GuardedPoolManager:
    return GuardedPoolManager(AddressPolicy((ipaddress.ip_network("127.0.0.2/32"),)))


def test_retry_after_is_honoured(
    media: MediaLibrary, origin: Origin, http: GuardedPoolManager, tmp_path: Path
) -> None:
    origin.add(media.path("image.png"), "retry-after.png")
    slept: list[float] = []
    result = download(
        origin.url("/flaky/retry-after.png?code=429&fail=1&retry_after=7"),
        tmp_path / "source",
        http,
        DownloadLimits(max_bytes=10**9),
        sleep=slept.append,
    )
    assert slept == [7.0]
    assert result.sha256 == hashlib.sha256(media.path("image.png").read_bytes()).hexdigest()


def test_resume_and_restart_are_reported_to_the_sink(
    media: MediaLibrary, origin: Origin, http: GuardedPoolManager, tmp_path: Path
) -> None:
    data = media.path("h264.mp4").read_bytes()
    origin.add(media.path("h264.mp4"), "sink-resume.mp4")
    origin.add(media.path("h264.mp4"), "sink-restart.mp4")
    limits = DownloadLimits(max_bytes=10**9)

    resumed = RecordingSink()
    download(origin.url("/drop/sink-resume.mp4?after=30000"), tmp_path / "a", http, limits,
             resumed, sleep=lambda _: None)  # fmt: skip
    assert (resumed.expected, resumed.restarts, resumed.offsets[-1]) == ([len(data)], 0, len(data))
    assert (tmp_path / "a").read_bytes() == data

    restarted = RecordingSink()
    download(origin.url("/drop-norange/sink-restart.mp4?after=30000"), tmp_path / "b", http,
             limits, restarted, sleep=lambda _: None)  # fmt: skip
    assert restarted.restarts == 1 and (tmp_path / "b").read_bytes() == data


def test_retries_without_progress_are_bounded(
    origin: Origin, http: GuardedPoolManager, tmp_path: Path
) -> None:
    slept: list[float] = []
    with pytest.raises(JobError) as error:
        download(origin.url("/status/502"), tmp_path / "s", http,
                 DownloadLimits(max_bytes=10, retries=3), sleep=slept.append)  # fmt: skip
    assert error.value.reason == "SourceUnavailable" and error.value.retryable
    assert len(slept) == 3 and all(0 <= delay <= BACKOFF_CAP for delay in slept)
    assert origin.hits("/status/502") >= 4


def test_backoff_grows_exponentially_with_full_jitter() -> None:
    assert [backoff_delay(n, rng=lambda: 1.0) for n in (1, 2, 3, 10)] == [
        0.5,
        1.0,
        2.0,
        BACKOFF_CAP,
    ]
    assert backoff_delay(3, rng=lambda: 0.0) == 0.0


def test_retry_after_parsing() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_redact_drops_secrets() -> None:
    assert redact("https://u:p@cdn.example:8443/a/b.mp4?X-Amz-Signature=s#f") == (
        "https://cdn.example:8443/a/b.mp4"
    )
    assert redact("http://[::1]:80/x?t=1") == "http://[::1]:80/x"
    # Unparsable ports still lose the query and the credentials.
    assert redact("https://u:p@cdn.example:bad/a.mp4?token=s") == "https://cdn.example:bad/a.mp4"
