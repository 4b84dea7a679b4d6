"""One station object (``lofi_daemon/service/radio_station.py``) on a real generation queue with
the fake engine and no server: holds that follow the playhead, stop, failures, a lost source.
The radio over JSON-RPC: tests/service/test_radio.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from daemon_doubles import FakeEngine

from lofi_daemon import errors
from lofi_daemon.radio.config import StationConfig
from lofi_daemon.service.cache import TrackCache
from lofi_daemon.service.jobs import JobRunner
from lofi_daemon.service.radio_station import Station

SETTINGS: dict[str, Any] = {
    "prompt": "rainy lofi",
    "segment_sec": 5,
    "context_sec": 5,
    "crossfade_sec": 0.5,
    "infer_steps": 4,
    "ahead": 1,  # (ahead + 1) * 5 s of buffer: three segments (3.5 s, 4.8 s, 4.9 s)
}


@dataclass
class Rig:
    cache: TrackCache
    engine: FakeEngine
    runner: JobRunner
    now: list[float] = field(default_factory=lambda: [0.0])  # the station's clock
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    failed_event: threading.Event = field(default_factory=threading.Event)

    def station(self) -> Station:
        def on_failed(_station: Station, message: str) -> None:
            self.failed.append(message)
            self.failed_event.set()

        station = Station(
            StationConfig.from_params(SETTINGS, seed=7),
            "st1",
            runner=self.runner,
            cache=self.cache,
            emit=lambda method, params: self.sent.append((method, params)),
            model_version=self.engine.version,
            on_failed=on_failed,
            clock=lambda: self.now[0],
        )
        station.start()
        return station

    def segments(self) -> list[dict[str, Any]]:
        return [params for method, params in list(self.sent) if method == "radio_segment"]


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    runners: list[JobRunner] = []

    def make(**engine_settings: Any) -> Rig:
        cache = TrackCache(tmp_path / "cache")
        engine = FakeEngine(**engine_settings)
        runner = JobRunner(engine, cache, lambda method, params: None)
        runner.start()
        runners.append(runner)
        return Rig(cache, engine, runner)

    yield make
    for runner in runners:
        runner.close(cancel_running=True)
        runner.join(10)


def wait_until(check: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def wait_buffered(rig: Rig, station: Station) -> list[dict[str, Any]]:
    """Wait until the station has its buffer before playback: three segments, no job."""

    def full() -> bool:
        with station.locked():
            return len(rig.segments()) == 3 and station.plan.in_flight is None

    wait_until(full, "three segments and no job in flight")
    return rig.segments()


def test_holds_are_released_as_the_playhead_moves_on(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    station = rig.station()
    buffered = wait_buffered(rig, station)
    first, second, third = (s["track_id"] for s in buffered)
    assert rig.cache.held() == {first, second, third}  # nothing played yet: all held
    with station.locked():
        station.plan.playhead(1, 0.0, False, rig.now[0])  # the second one plays
    station.wake()
    wait_until(lambda: first not in rig.cache.held(), "the first segment's release")
    assert {second, third} <= rig.cache.held()
    wait_until(lambda: len(rig.segments()) == 4, "the segment the buffer wants now")
    assert rig.segments()[3]["track_id"] in rig.cache.held()
    station.stop()
    assert rig.cache.held() == set()
    assert rig.cache.get(first, touch=False) is not None  # released, not deleted


def test_stop_cancels_the_job_in_flight_and_ends_the_ticker(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(pause_at=2)
    station = rig.station()
    assert rig.engine.paused.wait(30)
    assert station.alive
    station.stop()
    assert not station.alive  # joined
    rig.engine.resume.set()
    wait_until(lambda: rig.runner.snapshot()["running"] is None, "the job to end")
    assert rig.engine.cancel_requested_at is not None
    assert rig.segments() == []  # the cancelled job never reaches the station
    assert station.plan.stopped and station.plan.in_flight is None
    assert not list(rig.cache.root.glob("*.json"))
    station.stop()  # a second stop is harmless


def test_repeated_failures_stop_the_station_off_the_lock(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(fail_with=errors.MODEL_LOAD_FAILED)
    station = rig.station()
    assert rig.failed_event.wait(30)
    assert len(rig.engine.calls) == 3  # the same segment, tried three times
    assert rig.failed == [
        "the station stopped after repeated failures: the transformer file is corrupt"
    ]
    assert station.plan.stopped
    station.stop()


def test_a_lost_source_stops_the_continuation(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    station = rig.station()
    last = wait_buffered(rig, station)[-1]["track_id"]
    rig.cache.latents_path(last).unlink()  # what the next continuation starts from
    with station.locked():
        station.plan.playhead(1, 0.0, False, rig.now[0])
    station.wake()
    assert rig.failed_event.wait(30)
    assert rig.failed[0].startswith("the station stopped after repeated failures: ")
    assert f"the latents of segment {last} are gone" in rig.failed[0]
    assert len(rig.engine.calls) == 3  # nothing more was sent to the engine
    assert len(rig.segments()) == 3
    station.stop()
