"""Sources of ``generate`` (lofi_daemon/service/sources.py) and the latents the cache keeps for
them (lofi_daemon/service/latents.py): every wrong combination is a specific error at request
time, and a cached track is read from its latents (its audio when they are missing or bad)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from hostile_cache import add_track

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model.manifest import sha256_file
from lofi_daemon.service.cache import TrackCache
from lofi_daemon.service.latents import latents_bytes, read_latents
from lofi_daemon.service.sources import resolve_source


class Queue:
    def __init__(self, *busy: str) -> None:
        self.busy = busy

    def position(self, track_id: str) -> int | None:
        return 0 if track_id in self.busy else None


def resolve(cache: TrackCache, task: str, queue: Queue | None = None, **given: Any) -> Any:
    return resolve_source(task, given, cache=cache, queue=queue or Queue())


@pytest.fixture
def song(tmp_path: Path) -> Path:
    path = tmp_path / "song.wav"
    sf.write(path, np.zeros((6 * 44100, 2), np.float32), 44100)
    return path


@pytest.mark.parametrize(
    ("task", "given", "code", "fragment"),
    [
        ("text2music", {"src_path": "/a.wav"}, errors.INVALID_PARAMS, "src_path is for the tasks"),
        ("extend", {"ref_path": "/a.wav"}, errors.INVALID_PARAMS, "ref_path is not a parameter"),
        ("audio2audio", {"src_track_id": "0" * 24}, errors.INVALID_PARAMS, "give ref_track_id"),
        ("repaint", {}, errors.INVALID_PARAMS, "needs exactly one of src_track_id and src_path"),
        (
            "edit",
            {"src_path": "/a.wav", "src_track_id": "0" * 24},
            errors.INVALID_PARAMS,
            "exactly one",
        ),
        ("extend", {"src_path": 5}, errors.INVALID_PARAMS, "src_path must be a non-empty string"),
        ("extend", {"src_path": "rel.wav"}, errors.INVALID_SOURCE, "must be an absolute path"),
        ("extend", {"src_path": "/no/such.wav"}, errors.INVALID_SOURCE, "no such file"),
        ("extend", {"src_track_id": "../x"}, errors.INVALID_PARAMS, "is not a track id"),
        ("extend", {"src_track_id": "0" * 24}, errors.TRACK_NOT_FOUND, "no cached track"),
    ],
)
def test_wrong_sources_are_specific_errors(
    tmp_path: Path, task: str, given: dict[str, Any], code: int, fragment: str
) -> None:
    with pytest.raises(LofiError) as caught:
        resolve(TrackCache(tmp_path / "cache"), task, **given)
    assert caught.value.code == code and fragment in caught.value.message


def test_a_track_still_being_generated_is_refused(tmp_path: Path) -> None:
    track = "1" * 24
    with pytest.raises(LofiError) as caught:
        resolve(TrackCache(tmp_path), "extend", Queue(track), src_track_id=track)
    assert caught.value.code == errors.INVALID_PARAMETER
    assert caught.value.message == (
        f"track {track} is still being generated; ask again after generation_complete"
    )


def test_a_path_source_is_hashed_and_checked_again_before_the_job(
    tmp_path: Path, song: Path
) -> None:
    source = resolve(TrackCache(tmp_path / "cache"), "audio2audio", ref_path=str(song))
    assert source.audio.path == song and source.audio.latents is None
    assert source.key.sha256 == sha256_file(song) and source.key.kind == "path"
    assert source.record == {"kind": "path", "path": str(song), "sha256": sha256_file(song)}
    assert source.duration_sec == pytest.approx(6.0)
    source.verify()
    sf.write(song, np.ones((6 * 44100, 2), np.float32) * 0.1, 44100)
    with pytest.raises(LofiError, match="changed after the request") as caught:
        source.verify()
    assert caught.value.code == errors.INVALID_SOURCE


def test_a_cached_track_is_read_from_its_latents(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path)
    track = add_track(cache, seed=1)
    saved = np.load(cache.latents_path(track))
    source = resolve(cache, "extend", src_track_id=track)
    assert source.audio.path is None
    np.testing.assert_array_equal(source.audio.latents, saved)
    digest = source.key.sha256
    assert (source.key.kind, source.key.ref, source.record["from"]) == ("track", track, "latents")
    assert digest == hashlib.sha256(latents_bytes(saved)).hexdigest()
    assert source.duration_sec == cache.get(track).metadata["duration_sec"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "damage",
    ["missing", "garbage", "float64", "nan", "shape", "pickle", "symlink"],
)
def test_bad_latents_fall_back_to_the_tracks_audio(tmp_path: Path, damage: str) -> None:
    cache = TrackCache(tmp_path / "cache")
    track = add_track(cache, seed=2)
    path = cache.latents_path(track)
    good = np.load(path)
    path.unlink()
    if damage == "garbage":
        path.write_bytes(b"\x93NUMPY not really")
    elif damage == "float64":
        np.save(path, good.astype(np.float64))
    elif damage == "nan":
        bad = good.copy()
        bad[0, 0, 0, 0] = np.nan
        np.save(path, bad)
    elif damage == "shape":
        np.save(path, good[:, :4])
    elif damage == "pickle":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif damage == "symlink":
        outside = tmp_path / "outside.npy"
        np.save(outside, good)
        os.symlink(outside, path)
    assert read_latents(path) is None
    source = resolve(cache, "repaint", src_track_id=track)
    entry = cache.get(track)
    assert entry is not None
    assert source.audio.latents is None and source.audio.path == entry.path
    assert source.key.sha256 == sha256_file(entry.path) and source.record["from"] == "audio"


def test_latents_are_counted_and_removed_with_the_track(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path)
    track = add_track(cache, seed=3)
    entry = cache.get(track)
    assert entry is not None
    files = [entry.path, entry.meta_path, cache.latents_path(track)]
    assert entry.size_bytes == sum(p.stat().st_size for p in files)
    assert cache.delete(track)
    assert list(tmp_path.iterdir()) == []
