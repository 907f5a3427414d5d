"""Which progress reports become status.progress writes: at most one per import every
STATUS_INTERVAL_S, at once on a phase change, the last held-back report written when its
time comes, and a percent that never goes backwards within an attempt."""

from __future__ import annotations

from typing import Any

import pytest
from mediaimport_job.channel_protocol import STATUS_INTERVAL_S, ProgressReport
from mediaimport_operator.progress import ProgressGate, WriteBudget, report_time, summary

KEY = ("media", "sunset", "uid-1")
OTHER = ("media", "sunrise", "uid-2")


def report(phase: str = "downloading", percent: float | None = 10.0, **fields: Any
           ) -> ProgressReport:
    return ProgressReport.model_validate({"phase": phase, "percent": percent,
                                          "updatedAt": "2026-12-07T10:00:00Z", **fields})


def test_the_summary_is_whole_percents_or_the_phase() -> None:
    assert summary(42.9, "downloading") == "42%"
    assert summary(99.99, "uploading") == "99%"
    assert summary(100.0, "finishing") == "100%"
    assert summary(None, "probing") == "probing"


def test_the_first_report_is_written_with_the_wire_names() -> None:
    gate = ProgressGate()
    decision = gate.offer(KEY, report(bytesDownloaded=5, bytesTotal=50, speed=2.5e6, eta=3.0,
                                      updatedAt="2026-12-07T11:00:00.123456+01:00"), 0.0)
    assert decision.write is not None
    assert decision.write.wire() == {
        "summary": "10%", "phase": "downloading", "bytesDownloaded": 5, "bytesTotal": 50,
        "bytesUploaded": 0, "percent": 10.0, "speed": 2.5e6, "eta": 3.0, "attempt": 1,
        "updatedAt": "2026-12-07T10:00:00.123Z",
    }


def test_reports_within_the_interval_wait_and_the_last_one_is_flushed() -> None:
    gate = ProgressGate()
    assert gate.offer(KEY, report(percent=10), 0.0).write is not None
    held = gate.offer(KEY, report(percent=20), 0.5)
    assert held.write is None and held.flush_in == pytest.approx(STATUS_INTERVAL_S - 0.5)
    again = gate.offer(KEY, report(percent=30), 1.0)
    assert again.write is None and again.flush_in is None  # a flush is already due
    flushed = gate.flush(KEY, STATUS_INTERVAL_S)
    assert flushed is not None and flushed.percent == 30
    assert gate.flush(KEY, STATUS_INTERVAL_S + 1) is None  # nothing new held back
    # Another import is not held back by this one.
    assert gate.offer(OTHER, report(percent=5), 1.0).write is not None


def test_a_report_after_the_interval_is_written_at_once() -> None:
    gate = ProgressGate()
    gate.offer(KEY, report(percent=10), 0.0)
    assert gate.offer(KEY, report(percent=20), STATUS_INTERVAL_S).write is not None


def test_a_phase_change_is_written_at_once_and_makes_a_held_report_moot() -> None:
    gate = ProgressGate()
    gate.offer(KEY, report(percent=10), 0.0)
    assert gate.offer(KEY, report(percent=20), 0.5).flush_in is not None
    changed = gate.offer(KEY, report("probing", percent=80), 0.6)
    assert changed.write is not None and changed.write.phase == "probing"
    assert gate.flush(KEY, 2.0) is None


def test_the_percent_never_goes_backwards_within_an_attempt() -> None:
    gate = ProgressGate(interval=0)
    gate.offer(KEY, report(percent=50), 0.0)
    lower = gate.offer(KEY, report(percent=30), 1.0).write
    assert lower is not None and (lower.percent, lower.summary) == (50, "50%")
    unknown = gate.offer(KEY, report("probing", percent=None), 2.0).write
    assert unknown is not None and unknown.percent == 50
    retry = gate.offer(KEY, report(percent=5, attempt=2), 3.0).write
    assert retry is not None and (retry.percent, retry.attempt) == (5, 2)  # a new attempt
    assert gate.offer(KEY, report(percent=90, attempt=1), 4.0).write is None  # the old pod


def test_a_report_without_a_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="zone"):
        report_time("2026-12-07T10:00:00")
    with pytest.raises(ValueError):
        report_time("yesterday")


def test_idle_imports_are_forgotten() -> None:
    gate = ProgressGate(idle=100)
    gate.offer(KEY, report(), 0.0)
    gate.offer(OTHER, report(), 150.0)
    assert len(gate) == 1
    gate.forget(OTHER)
    assert len(gate) == 0


def test_the_write_budget_bounds_writes_per_second_whatever_the_number_of_imports() -> None:
    budget = WriteBudget(10.0)
    taken = sum(budget.take(0.0) for _ in range(200))  # 200 imports due at once
    assert taken == 10
    assert not budget.take(0.05)  # half a token later
    assert budget.take(0.1)
    # Over a minute of steady reports from many imports: the rate, not more.
    writes = sum(budget.take(1.0 + step / 100) for step in range(6000))
    assert 595 <= writes <= 611
