"""The track cache over a hostile cache directory (issue 10, items 15, 16, 19, 20, 21): broken
sidecars are skipped and logged, symlinks are ignored, only the cache's own leftovers are swept,
and a failed generation removes only what it created."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import pytest
from daemon_doubles import FakeEngine, FakeResult
from hostile_cache import (
    BAD_SIDECARS,
    add_track,
    age,
    foreign_names,
    own_temp_name,
    params_for,
    plant_bad_sidecar,
    plant_symlinked_audio,
    plant_symlinked_sidecar,
)

from lofi_daemon import errors, fsutil
from lofi_daemon.errors import LofiError
from lofi_daemon.service.cache import TrackCache


def strict_json(entry_json: object) -> str:
    return json.dumps(entry_json, allow_nan=False)


def age_all(root: Path) -> None:
    for path in root.iterdir():
        age(path)


# -- item 15 / 16: unreadable sidecars are skipped and logged ---------------------------------


@pytest.mark.parametrize("kind", sorted(BAD_SIDECARS))
def test_a_bad_sidecar_is_skipped_logged_and_kept(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "cache"
    cache = TrackCache(root)
    good = add_track(cache, seed=1)
    bad = add_track(cache, seed=2)
    data = plant_bad_sidecar(cache, bad, kind)
    age_all(root)  # old enough for the startup sweep to look at
    caplog.set_level(logging.WARNING, logger="lofi_daemon.service.cache")

    reopened = TrackCache(root)  # used to die with RecursionError on a nested sidecar

    entries = reopened.entries()
    assert [e.track_id for e in entries] == [good]
    assert reopened.get(bad) is None
    strict_json([e.to_json() for e in entries])
    assert f"{bad}.json" in caplog.text  # logged ...
    assert reopened.meta_path(bad).read_bytes() == data  # ... and nothing lost
    assert reopened.audio_path(bad, "wav").is_file()
    assert reopened.total_bytes() == entries[0].size_bytes


def test_a_bad_sidecar_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = TrackCache(tmp_path)
    bad = add_track(cache, seed=2)
    plant_bad_sidecar(cache, bad, "nan-duration")
    caplog.set_level(logging.WARNING, logger="lofi_daemon.service.cache")
    for _ in range(3):
        assert cache.entries() == []
    assert caplog.text.count(f"{bad}.json") == 1


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX FIFOs")
@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_a_sidecar_that_is_not_a_file_is_skipped(tmp_path: Path, kind: str) -> None:
    cache = TrackCache(tmp_path)
    good, bad = add_track(cache, seed=1), add_track(cache, seed=2)
    cache.meta_path(bad).unlink()
    if kind == "fifo":
        os.mkfifo(cache.meta_path(bad))  # opening it for reading used to block forever
    else:
        cache.meta_path(bad).mkdir()
    assert [e.track_id for e in TrackCache(tmp_path).entries()] == [good]
    assert cache.get(bad) is None


def test_eviction_never_deletes_a_skipped_entry(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path)
    bad = add_track(cache, seed=1)
    plant_bad_sidecar(cache, bad, "nan-duration")
    good = add_track(cache, seed=2)
    cache.max_bytes = 1
    new = add_track(cache, seed=3)  # evicts every other complete track
    assert [e.track_id for e in cache.entries()] == [new]
    assert not cache.audio_path(good, "wav").exists()
    assert cache.meta_path(bad).exists() and cache.audio_path(bad, "wav").exists()


# -- item 20: the sweep removes only the cache's own leftovers, matched exactly ---------------


def test_the_sweep_keeps_foreign_files_that_look_like_track_files(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path)
    track_id = add_track(cache, seed=1)
    for name in foreign_names(track_id):
        (tmp_path / name).write_bytes(b"mine")
    age_all(tmp_path)
    TrackCache(tmp_path)
    for name in foreign_names(track_id):
        assert (tmp_path / name).read_bytes() == b"mine", name
    assert cache.get(track_id) is not None


def test_the_sweep_removes_old_own_leftovers_only(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path)
    complete = add_track(cache, seed=1)
    no_sidecar = add_track(cache, seed=2)
    cache.meta_path(no_sidecar).unlink()  # stopped between the audio and the sidecar
    no_audio = add_track(cache, seed=3)
    cache.audio_path(no_audio, "wav").unlink()  # half deleted
    old_temp = tmp_path / own_temp_name(complete)
    old_audio_temp = tmp_path / own_temp_name(no_sidecar, "wav")
    old_latents_temp = tmp_path / own_temp_name(complete, "latents.npy")
    for path in (old_temp, old_audio_temp, old_latents_temp):
        path.write_bytes(b"partial")
    age_all(tmp_path)
    fresh_temp = tmp_path / own_temp_name(no_audio)
    fresh_temp.write_bytes(b"another daemon is writing")

    removed = TrackCache(tmp_path).remove_orphans()
    assert removed == []  # the first sweep (in the constructor) did it all
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{complete}.wav", f"{complete}.json", f"{complete}.latents.npy", fresh_temp.name]
    )


# -- item 21: symlinks are never entries; temp files are never written through a link ----------


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges")
def test_a_symlinked_audio_file_is_not_a_track(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cache = TrackCache(root)
    good, linked = add_track(cache, seed=1), add_track(cache, seed=2)
    outside = tmp_path / "outside.wav"
    plant_symlinked_audio(cache, linked, outside)
    secret = outside.read_bytes()
    age_all(root)

    reopened = TrackCache(root)
    assert [e.track_id for e in reopened.entries()] == [good]
    assert reopened.get(linked) is None
    assert all(Path(e.to_json()["path"]).parent == root.resolve() for e in reopened.entries())
    reopened.delete(linked)  # removes its sidecar, never the link's target
    assert outside.read_bytes() == secret
    assert cache.audio_path(linked, "wav").is_symlink()


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges")
def test_a_symlinked_sidecar_is_not_a_track(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cache = TrackCache(root)
    good, linked = add_track(cache, seed=1), add_track(cache, seed=2)
    outside = tmp_path / "outside.json"
    plant_symlinked_sidecar(cache, linked, outside)
    age_all(root)
    reopened = TrackCache(root)
    assert [e.track_id for e in reopened.entries()] == [good]
    assert reopened.get(linked) is None
    assert reopened.meta_path(linked).is_symlink() and outside.is_file()
    assert reopened.audio_path(linked, "wav").is_file()  # its audio is not an orphan to sweep


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges")
def test_a_planted_temp_symlink_is_never_written_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "cache"
    cache = TrackCache(root)
    track_id = add_track(cache, seed=1)
    cache.meta_path(track_id).unlink()
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    token = "0" * 32
    monkeypatch.setattr(fsutil.secrets, "token_hex", lambda n: token)  # a predictable name
    (root / f".{track_id}.json.{token}.tmp").symlink_to(outside)
    result = _result_for(cache, track_id)
    with pytest.raises(LofiError) as info:
        cache.add(track_id, result, backend="ace-step", generation_time_sec=0.1)
    assert info.value.code == errors.OUTPUT_WRITE_FAILED
    assert outside.read_text() == "precious"
    assert (root / f".{track_id}.json.{token}.tmp").is_symlink()


def test_temp_names_are_random_and_exactly_recognised(tmp_path: Path) -> None:
    names = {fsutil.temp_path(tmp_path / "a.json").name for _ in range(20)}
    assert len(names) == 20
    assert {fsutil.temp_target(name) for name in names} == {"a.json"}
    assert fsutil.temp_target(".a.json.tmp") is None
    assert fsutil.temp_target(f".a.json.{'0' * 32}.tmp.x") is None


def _result_for(cache: TrackCache, track_id: str) -> FakeResult:
    return FakeEngine().generate(params_for(1), cache.audio_path(track_id, "wav"))


# -- item 19: discard removes only what the failed generation created -------------------------


def test_discard_without_created_files_removes_nothing(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path)
    track_id = add_track(cache, seed=1)
    cache.meta_path(track_id).unlink()  # an incomplete track another daemon is finishing
    cache.discard(track_id)
    assert cache.audio_path(track_id, "wav").is_file()


def test_discard_never_removes_a_complete_track(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path)
    track_id = add_track(cache, seed=1)
    cache.discard(track_id, [cache.audio_path(track_id, "wav")])
    assert cache.get(track_id) is not None


def test_discard_removes_the_files_the_generation_created(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path)
    track_id = add_track(cache, seed=1)
    cache.meta_path(track_id).unlink()
    cache.latents_path(track_id).unlink()  # cache.add writes latents only with the sidecar
    foreign = tmp_path / f"{track_id}-notes.md"
    foreign.write_text("mine")
    cache.discard(track_id, [cache.audio_path(track_id, "wav"), foreign, tmp_path / "x.wav"])
    assert [p.name for p in tmp_path.iterdir()] == [foreign.name]
