"""The radio station inside an in-process daemon with the fake engine: continuation sources,
segment files in the cache, priorities, stop, like, errors, replay and starvation (saving:
test_radio_save_daemon.py)."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from daemon_checks import MakeDaemon, error_code
from daemon_doubles import FakeEngine
from service.radio_client import (
    CONTEXT_FRAMES,
    RADIO,
    assert_continuous,
    notes,
    play,
    start,
    stop_station,
    wait_segments,
)

from lofi_daemon import errors
from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.radio.prompts import segment_seeds
from lofi_daemon.service.cache import TrackCache
from lofi_daemon.service.latents import read_latents


def test_a_station_continues_the_music_from_the_previous_latents(
    make_daemon: MakeDaemon,
) -> None:
    engine = FakeEngine()
    daemon = make_daemon(engine)
    client = daemon.client
    station_id = start(client)
    wait_segments(client, station_id, 3)
    play(client, station_id, 1)  # the playhead moved on: the station generates more
    segments = wait_segments(client, station_id, 4)[:4]
    assert [s["index"] for s in segments] == [0, 1, 2, 3]
    assert all(s["kind"] == "generated" for s in segments)
    cache = daemon.server.cache
    for previous, segment in itertools.pairwise(segments):
        assert segment["start_sec"] == pytest.approx(
            previous["start_sec"] + previous["duration_sec"], abs=0.002
        )
    # Each continuation starts from the previous generated segment's last context frames.
    assert engine.calls[0].task == "text2music" and engine.sources[0] is None
    for n in range(1, 4):
        source = engine.sources[n]
        assert engine.calls[n].task == "extend" and source is not None
        saved = read_latents(cache.latents_path(segments[n - 1]["track_id"]))
        assert saved is not None and source.latents is not None
        np.testing.assert_array_equal(source.latents, saved[0][..., -CONTEXT_FRAMES:])
    for segment in segments:
        entry = cache.get(segment["track_id"], touch=False)
        assert entry is not None and entry.path.suffix == ".flac"
        assert entry.metadata["radio"] == {
            "station_id": station_id,
            "index": segment["index"],
            "gen_index": segment["index"],
            "kind": "generated",
            "start_sec": segment["start_sec"],
        }
        assert sf.info(str(entry.path)).subtype == "PCM_16"
        assert entry.metadata["duration_sec"] == pytest.approx(segment["duration_sec"], abs=1e-3)
        assert not cache.audio_path(segment["track_id"], "wav").exists()
        assert cache.tail_path(segment["track_id"]).is_file()
    assert_continuous([s["path"] for s in segments])
    # The station's jobs never talk to the client.
    assert not [m for m in client.messages if str(m.get("method", "")).startswith("generation_")]
    stop_station(client)


def test_a_user_generate_runs_before_the_next_station_job(make_daemon: MakeDaemon) -> None:
    engine = FakeEngine(pause_at=2)
    client = make_daemon(engine).client
    first = client.result("generate", {"prompt": "user one", "duration_sec": 5, "seed": 1})
    assert engine.paused.wait(10)
    start(client)
    time.sleep(0.5)  # the ticker queued the station's first job behind the running one
    status = client.result("status")
    assert [q["priority"] for q in status["queue"]] == ["background"]
    second = client.result("generate", {"prompt": "user two", "duration_sec": 5, "seed": 2})
    assert second["position"] == 1  # ahead of the station's job
    engine.resume.set()
    for reply in (first, second):
        assert client.terminal(reply["track_id"])["method"] == "generation_complete"
    deadline = time.monotonic() + 10
    while len(engine.calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [p.prompt for p in engine.calls[:2]] == ["user one", "user two"]
    assert engine.calls[2].prompt.startswith(RADIO["prompt"])
    stop_station(client)


def test_stop_ends_the_job_and_the_thread_and_is_announced_after_the_reply(
    make_daemon: MakeDaemon,
) -> None:
    engine = FakeEngine(pause_at=3)
    daemon = make_daemon(engine)
    client = daemon.client
    station_id = start(client)
    assert engine.paused.wait(10)
    station = daemon.server.radio.station
    assert station is not None
    reply = client.call("radio.stop")
    assert reply["result"] == {"status": "stopped", "station_id": station_id, "segments": 0}
    stopped = client.wait_for(lambda m: m.get("method") == "radio_stopped")
    assert stopped["params"] == {"station_id": station_id, "reason": "stopped"}
    assert client.index(reply) < client.index(stopped)
    engine.resume.set()
    deadline = time.monotonic() + 10
    while daemon.server.runner.snapshot()["running"] is not None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert not station.alive
    assert engine.cancelled_at is not None
    assert client.result("radio.status") == {"status": "idle"}
    assert client.result("radio.stop") == {"status": "idle"}
    assert not daemon.server.cache.held()
    assert not list(daemon.server.cache.root.glob("*.json"))  # nothing half made stays


def test_like_pins_a_segment_against_eviction(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon()
    client = daemon.client
    station_id = start(client)
    segments = wait_segments(client, station_id, 3)
    liked = client.result("radio.like", {"index": 1})
    assert liked == {"pinned": [segments[1]["track_id"]], "missing": []}
    play(client, station_id, 0)
    assert client.result("radio.like")["pinned"] == [segments[0]["track_id"]]
    stop_station(client)
    cache = daemon.server.cache
    cache.max_bytes = 1
    cache.evict()
    left = {e.track_id for e in cache.entries()}
    assert left == {segments[0]["track_id"], segments[1]["track_id"]}
    listed = {t["track_id"]: t["pinned"] for t in client.result("tracks.list")["tracks"]}
    assert listed == dict.fromkeys(left, True)


def test_unplayed_segments_are_held_against_eviction(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(max_bytes=1)
    client = daemon.client
    station_id = start(client)
    segments = wait_segments(client, station_id, 3)
    cache = daemon.server.cache
    assert {s["track_id"] for s in segments} <= cache.held()
    assert all(cache.get(s["track_id"], touch=False) for s in segments)
    stop_station(client)
    assert not cache.held()


def test_radio_errors(make_daemon: MakeDaemon) -> None:
    client = make_daemon().client
    for method, params in (
        ("radio.like", {}),
        ("radio.save", {"path": "/tmp/x.flac"}),
        ("radio.position", {"station_id": "x", "index": 0, "position_sec": 0, "paused": False}),
    ):
        assert error_code(client.call(method, params)) == errors.RADIO_NOT_ACTIVE, method
    assert client.result("radio.status") == {"status": "idle"}
    assert error_code(client.call("radio.start", {"seed": 1})) == errors.INVALID_PROMPT
    bad = client.call("radio.start", {**RADIO, "segment_sec": 1})
    assert error_code(bad) == errors.INVALID_PARAMETER
    assert error_code(client.call("radio.start", {**RADIO, "tempo": 1})) == errors.INVALID_PARAMS
    assert error_code(client.call("radio.stop", {"now": True})) == errors.INVALID_PARAMS
    station_id = start(client)
    wrong = client.call(
        "radio.position", {"station_id": "nope", "index": 0, "position_sec": 0, "paused": False}
    )
    assert error_code(wrong) == errors.RADIO_NOT_ACTIVE
    wait_segments(client, station_id, 1)
    bad_index = client.call(
        "radio.position", {"station_id": station_id, "index": 99, "position_sec": 0, "paused": 0}
    )
    assert error_code(bad_index) == errors.INVALID_PARAMS
    assert error_code(client.call("radio.save", {"path": "rel.flac"})) == errors.INVALID_PARAMETER
    assert error_code(client.call("radio.like", {"index": "1"})) == errors.INVALID_PARAMS
    assert error_code(client.call("radio.like", {"index": 50})) == errors.INVALID_PARAMETER
    assert error_code(client.call("cancel", {"track_id": "0" * 24})) == errors.TRACK_NOT_FOUND
    stop_station(client)


def test_the_station_needs_the_models(make_daemon: MakeDaemon) -> None:
    client = make_daemon(FakeEngine(state="not_installed")).client
    reply = client.call("radio.start", RADIO)
    assert error_code(reply) == errors.BACKEND_NOT_INSTALLED
    assert reply["error"]["data"]["remedy"]


def test_a_new_start_replaces_the_station(make_daemon: MakeDaemon) -> None:
    client = make_daemon().client
    first = start(client)
    reply = client.call("radio.start", {**RADIO, "seed": 8})
    second = reply["result"]["station_id"]
    assert second != first and reply["result"]["seed"] == 8
    stopped = client.wait_for(lambda m: m.get("method") == "radio_stopped")
    assert stopped["params"] == {"station_id": first, "reason": "replaced"}
    assert client.index(stopped) < client.index(reply)
    assert client.result("radio.status")["station_id"] == second
    stop_station(client)


def test_repeated_failures_stop_the_station(make_daemon: MakeDaemon) -> None:
    client = make_daemon(FakeEngine(fail_with=errors.MODEL_LOAD_FAILED)).client
    station_id = start(client)
    stopped = client.wait_for(lambda m: m.get("method") == "radio_stopped", timeout=20)
    assert stopped["params"]["station_id"] == station_id
    assert stopped["params"]["reason"] == "failed"
    assert "corrupt" in stopped["params"]["message"]
    assert client.result("radio.status") == {"status": "idle"}


def test_shutdown_stops_the_station(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon()
    station_id = start(daemon.client)
    wait_segments(daemon.client, station_id, 1)
    daemon.stop()
    stopped = notes(daemon.client, "radio_stopped")
    assert stopped == [{"station_id": station_id, "reason": "shutdown"}]


def test_a_replayed_station_is_served_from_the_cache(make_daemon: MakeDaemon) -> None:
    engine = FakeEngine()
    client = make_daemon(engine).client
    first_id = start(client)
    wait_segments(client, first_id, 3)
    stop_station(client)
    first = notes(client, "radio_segment", first_id)
    made = len(engine.calls)
    again = wait_segments(client, start(client), len(first))[: len(first)]
    assert [s["track_id"] for s in again] == [s["track_id"] for s in first]
    # No replayed segment reached the engine (a later one may be generating already).
    replayed = {segment_seeds(RADIO["seed"], n)[0] for n in range(len(first))}
    assert not [p for p in engine.calls[made:] if p.seed in replayed]
    stop_station(client)


def seed_library(cache_dir: Path) -> str:
    """A plain 20 s track in the cache, for the library fills."""
    cache = TrackCache(cache_dir)
    params = GenerationParams(prompt="library tune", duration_sec=20, seed=99)
    result = FakeEngine().generate(params, cache.audio_path("f" * 24, "wav"))
    cache.add("f" * 24, result, backend="ace-step", generation_time_sec=1.0)
    return "f" * 24


def test_a_starving_station_fills_from_the_library_once_then_recovers(
    make_daemon: MakeDaemon, tmp_path: Path
) -> None:
    library = seed_library(tmp_path / "cache")
    engine = FakeEngine(step_delay=0.25)  # about 1.75 s a segment
    daemon = make_daemon(engine)
    client = daemon.client
    station_id = start(client, ahead=1)
    wait_segments(client, station_id, 1)
    play(client, station_id, 0, 4.0)  # 1 s left and the next segment is still coming
    starved = client.wait_for(lambda m: m.get("method") == "radio_starved", timeout=10)
    fill_id = starved["params"]["fill_track_id"]
    assert fill_id is not None and starved["params"]["station_id"] == station_id
    segments = wait_segments(client, station_id, 3, timeout=20)
    assert [s["kind"] for s in segments[:3]] == ["generated", "library", "generated"]
    assert segments[1]["track_id"] == fill_id
    stop_station(client)
    assert len(notes(client, "radio_starved")) == 1
    entry = daemon.server.cache.get(fill_id, touch=False)
    assert entry is not None
    assert entry.metadata["radio"]["kind"] == "library"
    assert entry.metadata["radio"]["library_track_id"] == library
    assert_continuous([s["path"] for s in segments[:3]])
    sidecar = json.loads(entry.meta_path.read_text())
    assert sidecar["source"] == {"kind": "radio-library", "track_id": library}


def test_without_a_library_the_starved_notice_has_no_fill(make_daemon: MakeDaemon) -> None:
    engine = FakeEngine(step_delay=0.25)
    client = make_daemon(engine).client
    station_id = start(client, ahead=1)
    wait_segments(client, station_id, 1)
    play(client, station_id, 0, 4.0)
    starved = client.wait_for(lambda m: m.get("method") == "radio_starved", timeout=10)
    assert starved["params"]["fill_track_id"] is None
    assert starved["params"]["message"]
    wait_segments(client, station_id, 2)
    stop_station(client)
    assert len(notes(client, "radio_starved")) == 1
