"""Which progress reports become ``status.progress`` writes (pure: no I/O, no clock).

The job reports about once a second; the API server gets at most one write per import
every ``STATUS_INTERVAL_S``, and one at once whenever the phase changes (the step a user
waits on is what matters most). A report that arrives too soon is kept as the import's
pending one and written when the interval is up, unless a newer write made it moot, so
the last report before a pause is not lost. Within one attempt the percent never goes
backwards; a report of an older attempt (a pod the Job already replaced) is ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from mediaimport_job.channel_protocol import STATUS_INTERVAL_S, ProgressReport

from .model import ProgressStatus

# An import that has not reported for this long is forgotten (it ended, or its pod died).
IDLE_S = 600.0
ImportKey = tuple[str, str, str]  # namespace, name, uid


def summary(percent: float | None, phase: str) -> str:
    """The PROGRESS column: whole percents rounded down (never "100%" before it is), or
    the phase while the percent is unknowable."""
    return f"{math.floor(percent)}%" if percent is not None else phase


def report_time(text: str) -> str:
    """``updatedAt`` as the CRD's date-time takes it (UTC, milliseconds); ValueError if the
    text is no RFC 3339 time with a zone."""
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError("updatedAt needs a time zone (e.g. Z)")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def progress_status(report: ProgressReport, percent: float | None) -> ProgressStatus:
    """``status.progress`` for a report, with the percent as clamped."""
    fields = report.model_dump()
    fields.update(percent=percent, summary=summary(percent, report.phase),
                  updatedAt=report_time(report.updatedAt))
    return ProgressStatus.model_validate(fields)


@dataclass
class _Track:
    attempt: int
    seen_at: float
    percent: float | None = None  # the highest reported in this attempt
    phase: str | None = None  # the phase last written
    written_at: float | None = None
    pending: ProgressStatus | None = None
    flush_due: bool = False


@dataclass(frozen=True)
class Decision:
    """What to do with a report: ``write`` it now, or call ``ProgressGate.flush`` after
    ``flush_in`` seconds; neither when there is nothing to do now."""

    write: ProgressStatus | None = None
    flush_in: float | None = None


class ProgressGate:
    def __init__(self, *, interval: float = STATUS_INTERVAL_S, idle: float = IDLE_S) -> None:
        self.interval, self.idle = interval, idle
        self._tracks: dict[ImportKey, _Track] = {}
        self._pruned_at = 0.0

    def __len__(self) -> int:
        return len(self._tracks)

    def offer(self, key: ImportKey, report: ProgressReport, now: float) -> Decision:
        """Take a report of import ``key`` at ``now`` (monotonic seconds)."""
        self._prune(now)
        track = self._tracks.get(key)
        if track is not None and report.attempt < track.attempt:
            return Decision()  # a replaced pod's late word
        if track is None or report.attempt > track.attempt:
            track = self._tracks[key] = _Track(attempt=report.attempt, seen_at=now)
        track.seen_at = now
        percent = report.percent
        if track.percent is not None and (percent is None or percent < track.percent):
            percent = track.percent
        track.percent = percent
        status = progress_status(report, percent)
        if (track.written_at is None or report.phase != track.phase
                or now - track.written_at >= self.interval):
            self._written(track, status, now)
            return Decision(write=status)
        track.pending = status
        if track.flush_due:
            return Decision()
        track.flush_due = True
        return Decision(flush_in=track.written_at + self.interval - now)

    def flush(self, key: ImportKey, now: float) -> ProgressStatus | None:
        """The report held back for ``key``, now due (None: a later write made it moot)."""
        track = self._tracks.get(key)
        if track is None:
            return None
        track.flush_due = False
        status = track.pending
        if status is not None:
            self._written(track, status, now)
        return status

    def forget(self, key: ImportKey) -> None:
        self._tracks.pop(key, None)

    @staticmethod
    def _written(track: _Track, status: ProgressStatus, now: float) -> None:
        track.written_at, track.phase, track.pending = now, status.phase, None

    def _prune(self, now: float) -> None:
        if now - self._pruned_at < self.idle / 10:
            return
        self._pruned_at = now
        for key in [k for k, t in self._tracks.items() if now - t.seen_at > self.idle]:
            del self._tracks[key]


class WriteBudget:
    """A token bucket: at most ``rate`` writes a second on average, ``rate`` at once."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._tokens = rate
        self._at: float | None = None

    def take(self, now: float) -> bool:
        if self._at is not None:
            self._tokens = min(self.rate, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
