"""The persistent track cache: sidecars, persistence and LRU eviction."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import soundfile as sf
from daemon_doubles import FakeEngine, FakeResult

from lofi_daemon import __version__, fsutil
from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.service.cache import TrackCache
from lofi_daemon.service.track_ids import TRACK_ID_CHARS, track_id_for

BASE = GenerationParams(prompt="lofi beat", duration_sec=0.05, seed=7)


def make_track(cache: TrackCache, *, seed: int, **kwargs: Any) -> tuple[str, FakeResult]:
    params = dataclasses.replace(BASE, seed=seed, **kwargs)
    track_id = track_id_for(params, model_version="m1", backend="b")
    result = FakeEngine().generate(params, cache.audio_path(track_id, params.format))
    return track_id, result


def add_track(cache: TrackCache, *, seed: int, **kwargs: Any) -> str:
    track_id, result = make_track(cache, seed=seed, **kwargs)
    cache.add(track_id, result, backend="b", generation_time_sec=1.5)
    return track_id


def age(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


# -- storing ---------------------------------------------------------------------------------


def test_add_writes_audio_and_sidecar(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path)
    track_id = add_track(cache, seed=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"{track_id}.json",
        f"{track_id}.latents.npy",
        f"{track_id}.wav",
    ]
    meta = json.loads((tmp_path / f"{track_id}.json").read_text())
    assert meta["track_id"] == track_id
    assert meta["file"] == f"{track_id}.wav"
    assert meta["seed"] == 1 and meta["prompt"] == "lofi beat"
    assert meta["params"] == dataclasses.replace(BASE, seed=1).to_dict()
    assert meta["model_version"] == "fake-ace-step-1"
    assert meta["generation_time_sec"] == 1.5
    assert meta["lofi_version"] == __version__  # the engine's sidecar fields are kept, merged
    assert meta["timings"]["total"] >= 0
    info = sf.info(str(tmp_path / f"{track_id}.wav"))
    assert (info.samplerate, info.channels) == (48000, 2)


def test_the_cache_is_the_only_writer_of_the_metadata(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path / "cache")
    params = dataclasses.replace(BASE, seed=3)
    track_id = track_id_for(params, model_version="m1", backend="b")
    result = FakeEngine().generate(params, tmp_path / "outside.wav")
    assert not (tmp_path / "outside.json").exists()  # the engine writes audio only
    entry = cache.add(track_id, result, backend="b", generation_time_sec=0.1)
    assert entry.metadata == {**result.sidecar(), **entry.metadata}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


def test_sidecar_is_the_results_description_plus_the_caches_fields(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path)
    track_id, result = make_track(cache, seed=6, duration_sec=0.1)
    entry = cache.add(track_id, result, backend="b", generation_time_sec=0.25)
    on_disk = json.loads(entry.meta_path.read_text())
    assert on_disk == entry.metadata
    cache_fields = {
        "schema",
        "track_id",
        "file",
        "format",
        "prompt",
        "requested_duration_sec",
        "created_at",
        "backend",
        "generation_time_sec",
        "task",
    }
    assert set(on_disk) == set(result.sidecar()) | cache_fields
    assert {k: on_disk[k] for k in result.sidecar()} == json.loads(json.dumps(result.sidecar()))
    assert (on_disk["format"], on_disk["prompt"]) == ("wav", "lofi beat")
    assert on_disk["requested_duration_sec"] == 0.1 and on_disk["backend"] == "b"


def test_audio_written_elsewhere_is_moved_in(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path / "cache")
    params = dataclasses.replace(BASE, seed=4)
    track_id = track_id_for(params, model_version="m1", backend="b")
    result = FakeEngine().generate(params, tmp_path / "outside.wav")
    entry = cache.add(track_id, result, backend="b", generation_time_sec=0.1)
    assert entry.path == (tmp_path / "cache" / f"{track_id}.wav").resolve()
    assert entry.path.is_file() and not (tmp_path / "outside.wav").exists()


def test_get_returns_entry_and_touches_it(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path)
    track_id = add_track(cache, seed=1)
    age(cache.meta_path(track_id), 1000)
    entry = cache.get(track_id)
    assert entry is not None and entry.path.is_file()
    assert time.time() - cache.meta_path(track_id).stat().st_mtime < 100
    assert cache.get("0" * TRACK_ID_CHARS) is None


def test_tracks_survive_a_new_cache_instance(tmp_path: Path) -> None:
    first = TrackCache(tmp_path)
    ids = {add_track(first, seed=s) for s in (1, 2, 3)}
    second = TrackCache(tmp_path)
    assert {e.track_id for e in second.entries()} == ids
    assert all(e.to_json()["prompt"] == "lofi beat" for e in second.entries())


def test_entries_are_most_recent_first(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path)
    a, b = add_track(cache, seed=1), add_track(cache, seed=2)
    age(cache.meta_path(a), 100)
    age(cache.meta_path(b), 50)
    assert [e.track_id for e in cache.entries()] == [b, a]
    cache.get(a)
    assert [e.track_id for e in cache.entries()] == [a, b]


def test_corrupt_sidecar_is_not_a_track(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path)
    track_id = add_track(cache, seed=1)
    cache.meta_path(track_id).write_text("{broken")
    assert cache.get(track_id) is None
    assert cache.entries() == []


def test_sidecar_cannot_point_outside_the_cache(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path / "cache")
    track_id = add_track(cache, seed=1)
    meta = json.loads(cache.meta_path(track_id).read_text())
    meta["file"] = "../secret.wav"
    cache.meta_path(track_id).write_text(json.dumps(meta))
    assert cache.get(track_id) is None


def test_delete_removes_the_files(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path)
    keep, gone = add_track(cache, seed=1), add_track(cache, seed=2)
    assert cache.delete(gone) is True
    assert not any(p.name.startswith(gone) for p in tmp_path.iterdir())
    assert [e.track_id for e in cache.entries()] == [keep]
    assert cache.delete(gone) is False
    assert cache.delete("../" + keep) is False


# -- eviction --------------------------------------------------------------------------------


def test_eviction_deletes_least_recently_used_files(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path, max_bytes=10**9)
    ids = [add_track(cache, seed=s) for s in (1, 2, 3)]
    for n, track_id in enumerate(ids):
        age(cache.meta_path(track_id), 300 - 100 * n)  # ids[0] is the oldest
    cache.get(ids[0])  # now ids[1] is the least recently used
    size = max(e.size_bytes for e in cache.entries())
    cache.max_bytes = 3 * size  # room for three tracks, not four
    new = add_track(cache, seed=4)
    assert {e.track_id for e in cache.entries()} == {ids[0], ids[2], new}
    assert not (tmp_path / f"{ids[1]}.wav").exists()
    assert not (tmp_path / f"{ids[1]}.json").exists()
    assert cache.total_bytes() <= cache.max_bytes


def test_a_single_track_over_the_cap_is_kept(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path, max_bytes=10)
    old = add_track(cache, seed=1)
    new = add_track(cache, seed=2)
    assert [e.track_id for e in cache.entries()] == [new]
    assert not (tmp_path / f"{old}.wav").exists()


def test_opening_with_a_lower_cap_evicts(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path)
    ids = [add_track(cache, seed=s) for s in (1, 2)]
    age(cache.meta_path(ids[0]), 100)
    size = max(e.size_bytes for e in cache.entries())
    reopened = TrackCache(tmp_path, max_bytes=size)
    assert [e.track_id for e in reopened.entries()] == [ids[1]]


# -- leftovers -------------------------------------------------------------------------------


def test_old_leftovers_are_removed_but_fresh_and_foreign_files_stay(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path)
    track_id = add_track(cache, seed=1)
    stale_tmp = fsutil.temp_path(tmp_path / f"{'a' * TRACK_ID_CHARS}.wav")  # fsutil's own name
    stale_audio = tmp_path / f"{'b' * TRACK_ID_CHARS}.wav"  # audio without a sidecar
    fresh = tmp_path / f"{'d' * TRACK_ID_CHARS}.wav"
    foreign = tmp_path / "my-song.wav"
    lookalike = tmp_path / f".{'a' * TRACK_ID_CHARS}.wav.partial"  # not a name the cache writes
    for path in (stale_tmp, stale_audio, fresh, foreign, lookalike):
        path.write_bytes(b"x")
    for path in (stale_tmp, stale_audio, foreign, lookalike):
        age(path, 3600)
    TrackCache(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {
        f"{track_id}.wav",
        f"{track_id}.json",
        f"{track_id}.latents.npy",
        fresh.name,
        foreign.name,
        lookalike.name,
    }


def test_discard_removes_a_partial_generation(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path)
    track_id, _ = make_track(cache, seed=5)
    assert (tmp_path / f"{track_id}.wav").exists()
    cache.discard(track_id, [tmp_path / f"{track_id}.wav"])  # the files the generation created
    assert list(tmp_path.iterdir()) == []


# -- pins, holds and radio tails --------------------------------------------------------------


def _tracks(cache: TrackCache, count: int) -> list[str]:
    ids = []
    for n in range(count):
        track_id = f"{n:024x}"
        params = GenerationParams(prompt="pin", duration_sec=1, seed=n)
        result = FakeEngine().generate(params, cache.audio_path(track_id, "wav"))
        cache.add(track_id, result, backend="ace-step", generation_time_sec=0.1)
        ids.append(track_id)
    return ids


def test_pinned_and_held_tracks_survive_eviction(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path / "cache")
    pinned, held, plain = _tracks(cache, 3)
    assert cache.pin(pinned) is not None
    assert cache.get(pinned, touch=False).metadata["pinned"] is True  # type: ignore[union-attr]
    assert cache.pin("f" * 24) is None
    cache.hold([held])
    cache.tail_path(held).write_bytes(b"tail")
    cache.max_bytes = 1
    assert cache.evict() == [plain]
    assert {e.track_id for e in cache.entries()} == {pinned, held}
    cache.release([held])
    assert cache.evict() == [held]
    assert not cache.tail_path(held).exists()  # removed with its track
    cache.pin(pinned, pinned=False)
    assert cache.evict() == [pinned]


def test_holds_count_and_a_tail_counts_in_the_size(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path / "cache")
    [track] = _tracks(cache, 1)
    size = cache.get(track).size_bytes  # type: ignore[union-attr]
    cache.tail_path(track).write_bytes(b"0" * 100)
    assert cache.get(track).size_bytes == size + 100  # type: ignore[union-attr]
    cache.hold([track])
    cache.hold([track])
    cache.release([track])
    assert cache.held() == {track}
    cache.release([track])
    assert cache.held() == set()
    assert cache.delete(track) and not cache.tail_path(track).exists()


def test_an_orphaned_tail_is_swept(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path / "cache")
    orphan = cache.tail_path("e" * 24)
    orphan.write_bytes(b"tail")
    assert cache.remove_orphans(grace_sec=0) == [orphan]
