"""Progress throttling: every 5 % when fast, every second when slow, never backwards."""

from __future__ import annotations

from lofi_daemon.service.throttle import (
    PROGRESS_INTERVAL_SEC,
    PROGRESS_STEP_PERCENT,
    ProgressThrottle,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_throttle_fast_progress_emits_every_5_percent() -> None:
    clock = Clock()
    throttle = ProgressThrottle(1.0, 5.0, clock)
    emitted = []
    for step in range(1, 100):
        clock.now += 0.01
        if throttle.admit(float(step)):
            emitted.append(step)
    assert emitted == list(range(5, 100, 5))


def test_throttle_slow_progress_emits_every_second() -> None:
    clock = Clock()
    throttle = ProgressThrottle(1.0, 5.0, clock)
    throttle.start()
    emitted = []
    for tick in range(1, 21):
        clock.now += 0.5
        if throttle.admit(tick * 0.1):
            emitted.append(clock.now)
    assert emitted == [1.0 * n for n in range(1, 11)]


def test_throttle_never_goes_back_and_always_lets_100_through() -> None:
    clock = Clock()
    throttle = ProgressThrottle(1.0, 5.0, clock)
    assert throttle.admit(10.0)
    clock.now += 5
    assert not throttle.admit(9.0)
    assert not throttle.admit(10.0)
    assert throttle.admit(100.0)
    assert not throttle.admit(100.0)


def test_defaults_are_the_documented_rule() -> None:
    """docs/protocol.md: an update when the percentage moved >= 5 points or >= 1 s passed."""
    assert (PROGRESS_INTERVAL_SEC, PROGRESS_STEP_PERCENT) == (1.0, 5.0)
    throttle = ProgressThrottle()
    assert (throttle.min_interval_sec, throttle.min_step_percent) == (1.0, 5.0)
