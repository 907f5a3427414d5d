"""Progress: the tracker's numbers, ffmpeg's -progress output, and the reporter and the
channel client against the test channel (standing in for the operator's)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from mediaimport_dev.ports import free_port
from mediaimport_job import thumbnail, tools
from mediaimport_job.brokered import PartUrls
from mediaimport_job.channel import ChannelClient
from mediaimport_job.channel_protocol import (
    ABORT,
    MULTIPART,
    PROGRESS,
    AbortRequest,
    MultipartCreated,
    MultipartRequest,
    ProgressReport,
)
from mediaimport_job.config import Channel, Secret
from mediaimport_job.errors import JobError
from mediaimport_job.progress import FfmpegProgress, Reporter, Tracker
from mediaimport_job.reasons import FailureReason
from support.channel_server import ImportChannel, reports
from support.media import MediaLibrary


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def client(channel: ImportChannel, *, url: str | None = None, budget: float = 5.0) -> ChannelClient:
    return ChannelClient(
        Channel(url=url or channel.url, token=Secret(channel.token), budget=budget,
                pod_name=channel.pod_name, pod_uid=channel.pod_uid)
    )  # fmt: skip


def part_number(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["partNumber"][0])


def report(phase: str = "downloading") -> ProgressReport:
    return ProgressReport(phase=phase, updatedAt="2026-01-01T00:00:00.000Z")  # type: ignore[arg-type]


# -- the tracker --------------------------------------------------------------------------


def test_percent_is_unknown_without_a_size_and_never_goes_backwards() -> None:
    clock = Clock()
    tracker = Tracker(clock)
    tracker.expect_download(None)
    tracker.downloaded(1000)
    assert tracker.snapshot()["percent"] is None
    tracker.download_done(4000)  # the end of the body tells the size
    first = tracker.snapshot()["percent"]
    assert first == 45.0  # the download half of the transfer
    tracker.uploaded(4000)
    assert tracker.snapshot()["percent"] == 90.0
    tracker.upload_restarted(4000)  # an upload started over: the percent stays
    assert tracker.snapshot()["percent"] == 90.0
    tracker.probe_done()
    tracker.render_fraction(0.5)
    tracker.uploaded(4000)
    assert tracker.snapshot()["percent"] == 95.5
    tracker.done()
    assert tracker.snapshot()["percent"] == 100.0


def test_speed_and_eta_follow_the_current_phase() -> None:
    clock = Clock()
    tracker = Tracker(clock)
    tracker.expect_download(10_000_000)
    tracker.downloaded(0)
    clock.now += 2
    tracker.downloaded(4_000_000)
    snapshot = tracker.snapshot()
    assert snapshot["speed"] == 2_000_000 and snapshot["eta"] == 3.0
    assert snapshot["bytesTotal"] == 10_000_000 and snapshot["phase"] == "downloading"
    tracker.set_phase("probing")
    assert tracker.snapshot()["speed"] is None and tracker.snapshot()["eta"] is None
    tracker.set_phase("downloading")  # phases only move forward
    assert tracker.phase == "probing"


@pytest.mark.parametrize(
    ("lines", "duration", "expected"),
    [
        (["out_time_us=-23220", "progress=continue"], 10.0, [0.0]),
        (["out_time_us=N/A", "progress=continue"], 10.0, [0.0]),
        (["out_time_us=2500000", "progress=continue", "out_time_us=5000000",
          "progress=continue", "progress=end"], 10.0, [0.25, 0.5, 1.0]),
        (["out_time_us=40000", "progress=continue", "progress=end"], None, [1.0]),
    ],
)  # fmt: skip
def test_ffmpeg_progress_lines(
    lines: list[str], duration: float | None, expected: list[float]
) -> None:
    seen: list[float] = []
    parser = FfmpegProgress(duration, seen.append)
    for line in lines:
        parser.feed(line + "\n")
    assert seen == expected


def test_the_thumbnail_reports_ffmpeg_progress(media: MediaLibrary, tmp_path: Path) -> None:
    seen: list[float] = []
    thumbnail.render(
        media.path("h264.mp4"), tmp_path / "t.jpg", width=64, at=0.5, duration=2.0, stream=0,
        on_fraction=seen.append,
    )  # fmt: skip
    assert seen and seen[-1] == 1.0
    assert (tmp_path / "t.jpg").stat().st_size > 0


def test_a_tool_with_progress_is_killed_at_its_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        tools.run_with_progress(["sleep", "30"], 0.5, lambda _line: None)
    assert time.monotonic() - started < 5


# -- the reporter -------------------------------------------------------------------------


def test_the_reporter_sends_on_phase_changes_and_at_most_each_interval(
    channel: ImportChannel,
) -> None:
    tracker = Tracker()
    reporter = Reporter(tracker, client(channel), interval=0.5).start()
    tracker.expect_download(1000)
    for offset in range(0, 1001, 10):  # a hundred updates in 1 s: two or three reports
        tracker.downloaded(offset)
        time.sleep(0.01)
    tracker.set_phase("probing")  # at once
    deadline = time.monotonic() + 5
    while not any(r["phase"] == "probing" for r in reports(channel)):
        assert time.monotonic() < deadline, reports(channel)
        time.sleep(0.01)
    tracker.set_phase("finishing")
    tracker.done()
    reporter.stop(final=True)
    seen = reports(channel)
    downloading = [r for r in seen if r["phase"] == "downloading"]
    assert 1 <= len(downloading) <= 4, seen
    assert seen[-1]["phase"] == "finishing" and seen[-1]["percent"] == 100.0
    assert reporter.failed == 0 and reporter.sent == len(seen)


def test_a_reporter_without_a_channel_logs_and_carries_on(channel: ImportChannel) -> None:
    down = client(channel, url=f"http://127.0.0.1:{free_port()}/v1/imports/a/b", budget=0.3)
    tracker = Tracker()
    reporter = Reporter(tracker, down, interval=0.1).start()
    tracker.set_phase("probing")
    time.sleep(0.5)
    reporter.stop(final=True)
    assert reporter.failed >= 1 and reporter.sent == 0


# -- the channel client -------------------------------------------------------------------


def test_the_client_gives_up_within_its_budget_as_channel_unavailable(
    channel: ImportChannel,
) -> None:
    down = client(channel, url=f"http://127.0.0.1:{free_port()}/v1/imports/a/b", budget=1.5)
    started = time.monotonic()
    with pytest.raises(JobError) as caught:
        down.call(PROGRESS, report())
    assert time.monotonic() - started < 2.5
    assert caught.value.reason is FailureReason.CHANNEL_UNAVAILABLE and caught.value.retryable
    assert down.requests >= 2
    assert channel.token not in caught.value.message


def test_429_is_retried_after_the_time_asked(channel: ImportChannel) -> None:
    channel.fail(PROGRESS, 429, times=1, retry_after="1")
    started = time.monotonic()
    client(channel).call(PROGRESS, report())
    elapsed = time.monotonic() - started
    assert [r.status for r in channel.requests] == [429, 200], channel.requests
    assert elapsed >= 1.0, elapsed


def test_an_answer_that_is_not_the_model_is_an_unavailable_channel(
    channel: ImportChannel,
) -> None:
    with pytest.raises(JobError) as caught:
        client(channel).call(PROGRESS, report(), MultipartCreated)  # progress answers {}
    assert caught.value.reason is FailureReason.CHANNEL_UNAVAILABLE
    assert "not a MultipartCreated" in caught.value.message


def test_a_malformed_credential_is_refused_for_good(channel: ImportChannel) -> None:
    bad = ChannelClient(
        Channel(url=channel.url, token=Secret(""), budget=5, pod_name="p", pod_uid="u")
    )
    with pytest.raises(JobError) as caught:
        bad.call(PROGRESS, report())
    assert caught.value.reason is FailureReason.CHANNEL_REFUSED
    assert not caught.value.retryable and "(401 Unauthorized)" in caught.value.message


def test_part_urls_come_in_batches_fetched_ahead(channel: ImportChannel) -> None:
    """250 parts: three requests of at most 100, the next batch fetched from the middle of
    the current one, never one request per part."""
    channel_client = client(channel)
    key = "media/user-1/asset-1/batches.bin"
    created = channel_client.call(MULTIPART, MultipartRequest(key=key), MultipartCreated)
    assert created is not None
    urls = PartUrls(channel_client, key, created.uploadId, parts=250)
    try:
        assert part_number(urls.get(1)) == 1
        assert channel.count("uploads/parts") == 1
        urls.get(51)  # the second half: the next batch is fetched in the background
        deadline = time.monotonic() + 5
        while channel.count("uploads/parts") < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        for number in range(52, 251):
            assert part_number(urls.get(number)) == number
        assert channel.count("uploads/parts", 200) == 3 and urls.fetches == 3
        with pytest.raises(JobError, match="no URL for part 251"):
            urls.get(251)  # beyond the parts announced: none is signed
    finally:
        urls.close()
        channel_client.call(ABORT, AbortRequest(key=key, uploadId=created.uploadId))
