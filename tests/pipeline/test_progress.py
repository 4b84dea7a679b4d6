"""ProgressTracker (percent, step, ETA, cancellation) and StageTimer, on a fake clock."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from lofi_daemon import errors
from lofi_daemon.errors import CancelledError
from lofi_daemon.pipeline import progress as progress_module
from lofi_daemon.pipeline.progress import Phase, Progress, ProgressTracker, StageTimer


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(progress_module, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


def test_percent_rises_step_by_step_and_ends_at_100(clock: Clock) -> None:
    seen: list[Progress] = []
    tracker = ProgressTracker(8, seen.append, None)
    steps: list[tuple[Phase, int]] = [
        ("encode", 1),
        ("encode", 1),
        ("diffusion", 3),
        ("decode", 2),
        ("decode", 1),
    ]
    for phase, units in steps:
        clock.now += 1.0
        tracker.advance(phase, units)
    assert [p.step for p in seen] == [1, 2, 5, 7, 8]
    assert [p.phase for p in seen] == ["encode", "encode", "diffusion", "decode", "decode"]
    assert [p.percent for p in seen] == [12.5, 25.0, 62.5, 87.5, 100.0]
    assert all(p.total == 8 for p in seen)
    assert seen[-1].eta_sec == 0.0


def test_advancing_past_the_total_stays_at_100(clock: Clock) -> None:
    seen: list[Progress] = []
    tracker = ProgressTracker(3, seen.append, None)
    for _ in range(5):
        tracker.advance("diffusion")
    tracker.advance("decode", 10)
    assert [p.percent for p in seen] == sorted(p.percent for p in seen)  # never goes back
    assert [p.step for p in seen] == [1, 2, 3, 3, 3, 3]
    assert seen[-1].percent == 100.0
    assert tracker.done == 3


def test_eta_is_the_mean_time_per_unit_times_the_units_left(clock: Clock) -> None:
    seen: list[Progress] = []
    tracker = ProgressTracker(5, seen.append, None)  # started at t=100
    clock.now = 110.0
    tracker.advance("diffusion", 2)
    assert seen[-1].eta_sec == pytest.approx(10.0 / 2 * 3)
    clock.now = 112.0
    tracker.advance("diffusion")
    assert seen[-1].eta_sec == pytest.approx(12.0 / 3 * 2)


def test_no_eta_before_any_unit_is_done(clock: Clock) -> None:
    seen: list[Progress] = []
    ProgressTracker(4, seen.append, None).advance("encode", 0)
    assert seen == [Progress("encode", 0, 4, 0.0, None)]


def test_without_a_callback_units_are_still_counted() -> None:
    tracker = ProgressTracker(4, None, None)
    tracker.advance("encode", 3)
    assert tracker.done == 3


def test_check_cancel_raises_only_once_the_event_is_set() -> None:
    ProgressTracker(2, None, None).check_cancel()  # no event: never cancelled
    event = threading.Event()
    tracker = ProgressTracker(2, None, event)
    tracker.check_cancel()
    event.set()
    with pytest.raises(CancelledError) as info:
        tracker.check_cancel()
    assert info.value.code == errors.GENERATION_CANCELLED


def test_stage_timer_sums_repeated_stages(clock: Clock) -> None:
    timer = StageTimer()
    clock.now = 10.0
    timer.add("denoise", 7.5)
    clock.now = 20.0
    timer.add("denoise", 19.0)
    timer.add("decode", 16.0)
    assert timer.timings == {"denoise": 3.5, "decode": 4.0}
