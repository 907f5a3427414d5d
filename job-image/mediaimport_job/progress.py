"""Progress of one import: a tracker the steps update, and a thread that reports it.

The steps (download, upload, probe, thumbnail) only set numbers on a ``Tracker``
(cheap, thread-safe, never blocking); a ``Reporter`` thread sends a ``ProgressReport``
to the channel at most once per ``REPORT_INTERVAL_S`` and at once on a phase change.
A report that cannot be sent is logged and dropped: progress never fails an import.

The overall percent weighs the transfer (bytes downloaded and uploaded, which overlap)
most, then the probe and the rendering; it never goes backwards, and it is None while
the size is unknown (no Content-Length) and the download still runs. ffmpeg's
``-progress`` output (``FfmpegProgress``) feeds the rendering phase.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from .errors import JobError

if TYPE_CHECKING:
    from .channel import ChannelClient
    from .channel_protocol import ProgressReport

log = logging.getLogger(__name__)

Phase = Literal["downloading", "probing", "rendering", "uploading", "finishing"]
PHASES: tuple[Phase, ...] = ("downloading", "probing", "rendering", "uploading", "finishing")
REPORT_INTERVAL_S = 1.0  # channel_protocol.REPORT_INTERVAL_S (a test keeps them equal)
REPORT_BUDGET_S = 3.0  # one report's retries; the next one carries newer numbers anyway
# Shares of the overall percent.
TRANSFER_SHARE = 90.0
PROBE_SHARE = 3.0
RENDER_SHARE = 5.0
RUNNING_CAP = 99.0  # 100 only once everything is stored
SPEED_WINDOW_S = 5.0


def _now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Tracker:
    """The numbers of one import; every method is thread-safe and cheap."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.phase: Phase = "downloading"
        self.bytes_downloaded = 0
        self.bytes_total: int | None = None
        self.bytes_uploaded = 0
        self.upload_total: int | None = None  # bytes the run uploads (media + thumbnail)
        self.probed = False
        self.rendered = 0.0  # fraction of the rendering done
        self.stored = False
        self._percent: float | None = None
        self._samples: deque[tuple[float, int]] = deque()
        self.version = 0  # bumped on every change
        self.phase_version = 0  # bumped on every phase change

    # -- updates from the steps ------------------------------------------------------

    def set_phase(self, phase: Phase) -> None:
        with self._lock:
            # Phases only move forward (a background store may report late).
            if PHASES.index(phase) <= PHASES.index(self.phase):
                return
            self.phase = phase
            self._samples.clear()
            self.phase_version += 1
            self._bump()
            self._changed.notify_all()

    def expect_download(self, total: int | None) -> None:
        with self._lock:
            self.bytes_total = total
            self._bump()

    def downloaded(self, offset: int) -> None:
        with self._lock:
            self.bytes_downloaded = offset
            if self.phase == "downloading":
                self._sample(offset)
            self._bump()

    def download_restarted(self) -> None:
        with self._lock:
            self.bytes_downloaded = 0
            self._samples.clear()
            self._bump()

    def download_done(self, size: int) -> None:
        """The file is complete: its size is the upload's size too (so far)."""
        with self._lock:
            self.bytes_downloaded = size
            self.bytes_total = size
            self.upload_total = max(size, self.bytes_uploaded)
            self._bump()

    def expect_upload(self, total: int) -> None:
        with self._lock:
            self.upload_total = max(total, self.bytes_uploaded)
            self._bump()

    def uploaded(self, count: int) -> None:
        with self._lock:
            self.bytes_uploaded += count
            if self.phase == "uploading":
                self._sample(self.bytes_uploaded)
            self._bump()

    def upload_restarted(self, count: int) -> None:
        """Bytes counted as uploaded that will be sent again (an upload started over)."""
        with self._lock:
            self.bytes_uploaded = max(0, self.bytes_uploaded - count)
            self._bump()

    def probe_done(self) -> None:
        with self._lock:
            self.probed = True
            self._bump()

    def render_fraction(self, fraction: float) -> None:
        with self._lock:
            self.rendered = max(self.rendered, min(1.0, max(0.0, fraction)))
            self._bump()

    def done(self) -> None:
        with self._lock:
            self.stored = True
            self._bump()

    # -- reading -----------------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        """The report's fields (``ProgressReport`` without ``attempt``)."""
        with self._lock:
            percent = self._overall()
            if percent is not None:
                # Never backwards: an upload started over, a size learned late.
                percent = max(percent, self._percent or 0.0)
                self._percent = percent
            speed = self._speed()
            return {
                "phase": self.phase,
                "bytesDownloaded": self.bytes_downloaded,
                "bytesTotal": self.bytes_total,
                "bytesUploaded": self.bytes_uploaded,
                "percent": None if percent is None else round(percent, 1),
                "speed": None if speed is None else round(speed, 1),
                "eta": self._eta(speed),
                "updatedAt": _now_rfc3339(),
            }

    def wait_for_phase(self, seen: int, timeout: float, stop: threading.Event) -> None:
        """Wait up to ``timeout`` s for a phase change after ``seen`` (or ``stop``)."""
        with self._changed:
            self._changed.wait_for(
                lambda: self.phase_version != seen or stop.is_set(), timeout=timeout
            )

    def wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # -- internals (under the lock) -------------------------------------------------------

    def _bump(self) -> None:
        self.version += 1

    def _sample(self, value: int) -> None:
        now = self._clock()
        self._samples.append((now, value))
        while len(self._samples) > 2 and now - self._samples[0][0] > SPEED_WINDOW_S:
            self._samples.popleft()

    def _speed(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (start, first), (end, last) = self._samples[0], self._samples[-1]
        if end - start <= 0:
            return None
        return max(0.0, (last - first) / (end - start))

    def _eta(self, speed: float | None) -> float | None:
        if not speed:
            return None
        if self.phase == "downloading" and self.bytes_total is not None:
            left = self.bytes_total - self.bytes_downloaded
        elif self.phase == "uploading" and self.upload_total is not None:
            left = self.upload_total - self.bytes_uploaded
        else:
            return None
        return round(max(0.0, left / speed), 1)

    def _overall(self) -> float | None:
        if self.stored:
            return 100.0
        total = self.bytes_total
        if total is None:
            return None  # no Content-Length and still downloading
        download = min(1.0, self.bytes_downloaded / total) if total else 1.0
        upload_total = self.upload_total if self.upload_total is not None else total
        upload = min(1.0, self.bytes_uploaded / upload_total) if upload_total else 0.0
        percent = TRANSFER_SHARE * (download + upload) / 2
        percent += PROBE_SHARE if self.probed else 0.0
        percent += RENDER_SHARE * self.rendered
        return min(RUNNING_CAP, percent)


class Reporter:
    """Sends the tracker's reports to the channel on a daemon thread."""

    def __init__(
        self,
        tracker: Tracker,
        channel: ChannelClient,
        *,
        interval: float = REPORT_INTERVAL_S,
        attempt: int = 1,
    ) -> None:
        self.tracker = tracker
        self.channel = channel
        self.interval = interval
        self.attempt = attempt
        self.sent = 0
        self.failed = 0
        self._stop = threading.Event()
        self._send_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def start(self) -> Reporter:
        self._thread.start()
        return self

    def stop(self, *, final: bool = True, timeout: float = REPORT_BUDGET_S) -> None:
        """End the thread; with ``final`` send the last state once more (in order: before
        the result)."""
        self._stop.set()
        self.tracker.wake()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if final:
            self._send()

    def _run(self) -> None:
        tracker = self.tracker
        seen_version = -1
        seen_phase = tracker.phase_version
        last_sent = time.monotonic()  # the first report comes an interval in
        while not self._stop.is_set():
            phase_changed = tracker.phase_version != seen_phase
            due = time.monotonic() - last_sent >= self.interval
            if (phase_changed or due) and tracker.version != seen_version:
                seen_version, seen_phase = tracker.version, tracker.phase_version
                self._send()
                last_sent = time.monotonic()
                continue
            # Byte counts do not wake this thread (they change a thousand times a second);
            # a phase change and stop do.
            until_due = self.interval - (time.monotonic() - last_sent)
            tracker.wait_for_phase(seen_phase, max(0.01, until_due), self._stop)

    def _send(self) -> None:
        from .channel_protocol import PROGRESS, ProgressReport  # noqa: PLC0415 - pydantic

        with self._send_lock:
            try:
                report: ProgressReport = ProgressReport.model_validate(
                    {**self.tracker.snapshot(), "attempt": self.attempt}
                )
                self.channel.call(PROGRESS, report, budget=REPORT_BUDGET_S)
            except JobError as exc:
                self.failed += 1
                log.warning("progress report not sent: %s", exc.message)
            except Exception:
                self.failed += 1
                log.exception("progress report not sent")
            else:
                self.sent += 1


class FfmpegProgress:
    """Reads ffmpeg's ``-progress`` output (``key=value`` lines, a block per update ending
    in ``progress=continue`` or ``progress=end``) and reports the fraction done.

    ``duration`` is the output's expected length in seconds; without one only the end
    counts. ``out_time_us`` starts negative on some inputs (an edit list, a seek before
    the first frame) and may be ``N/A``: both count as 0.
    """

    def __init__(self, duration: float | None, on_fraction: Callable[[float], None]) -> None:
        self.duration = duration if duration and duration > 0 else None
        self.on_fraction = on_fraction
        self.out_time = 0.0
        self.ended = False

    def feed(self, line: str) -> None:
        key, _, value = line.strip().partition("=")
        if key == "out_time_us":
            with contextlib.suppress(ValueError):
                self.out_time = max(self.out_time, int(value) / 1e6)
        elif key == "progress":
            if value == "end":
                self.ended = True
                self.on_fraction(1.0)
            elif self.duration is not None:
                self.on_fraction(min(1.0, self.out_time / self.duration))
