"""Reading the track cache's folder (``lofi_daemon/service/cache_scan.py``): exact names only,
regular files only, radio tails, temporary files and what interrupted runs left."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from service.cached_tracks import add_track

from lofi_daemon.fsutil import temp_path
from lofi_daemon.service import cache_scan
from lofi_daemon.service.cache import TrackCache

A, B, C = ("a" * 24, "b" * 24, "c" * 24)


class Skips:
    """Records what the scan skipped, as the cache's logger would."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, path: Path, reason: str) -> None:
        self.seen.append((path.name, reason))


def touch(path: Path, data: bytes = b"x") -> Path:
    path.write_bytes(data)
    return path


def names(found: list[tuple[Path, float]]) -> set[str]:
    return {path.name for path, _ in found}


def test_track_name_reads_exact_names_only() -> None:
    assert cache_scan.track_name(f"{A}.wav") == (A, "wav")
    assert cache_scan.track_name(f"{A}.json") == (A, "json")
    assert cache_scan.track_name(f"{A}.latents.npy") == (A, "latents.npy")
    assert cache_scan.track_name(f"{A}.tail.npy") == (A, "tail.npy")
    for other in (f"{A}.txt", f"{A}.tail.npy.bak", f"x{A}.wav", f"{A.upper()}.wav", "a.wav"):
        assert cache_scan.track_name(other) is None, other


def test_scan_groups_regular_files_by_track(tmp_path: Path) -> None:
    wav, tail = touch(tmp_path / f"{A}.wav"), touch(tmp_path / f"{A}.tail.npy")
    meta = touch(tmp_path / f"{A}.json")
    touch(tmp_path / f"{B}.flac")
    touch(tmp_path / "notes.txt")
    (tmp_path / f"{C}.wav").mkdir()  # a folder with a track's name
    skips = Skips()
    tracks = cache_scan.scan(tmp_path, skips)
    assert set(tracks) == {A, B}
    assert set(tracks[A].files) == {wav, tail, meta} and tracks[A].has_meta
    assert tracks[A].files[wav] == os.stat(wav).st_mtime
    assert not tracks[B].has_meta
    assert skips.seen == [(f"{C}.wav", "is not a regular file (a symlink?)")]


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_a_symlink_is_never_ours(tmp_path: Path) -> None:
    outside = touch(tmp_path.parent / f"outside-{tmp_path.name}.wav")
    (tmp_path / f"{A}.wav").symlink_to(outside)
    (tmp_path / f"{B}.json").symlink_to(outside)
    skips = Skips()
    assert cache_scan.scan(tmp_path, skips) == {}
    assert {name for name, _ in skips.seen} == {f"{A}.wav", f"{B}.json"}
    # a track whose sidecar is a symlink is not judged: its audio is no leftover
    touch(tmp_path / f"{B}.wav")
    assert cache_scan.leftovers(tmp_path, Skips()) == []
    assert cache_scan.regular_size(tmp_path / f"{A}.wav") == 0
    assert outside.exists()


def test_temp_files_are_the_cache_s_own_names_only(tmp_path: Path) -> None:
    ours = [
        touch(temp_path(tmp_path / f"{A}.wav")),
        touch(temp_path(tmp_path / f"{A}.tail.npy")),
        touch(temp_path(tmp_path / f"{B}.json")),
    ]
    touch(temp_path(tmp_path / "notes.txt"))  # a temp file of another name
    touch(tmp_path / f".{A}.wav.tmp")  # not temp_path's pattern
    found = cache_scan.temp_files(tmp_path, Skips())
    assert names(found) == {p.name for p in ours}


def test_leftovers_of_interrupted_runs(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path)
    add_track(cache, A, 0.1)  # complete: nothing of it is a leftover
    add_track(cache, B, 0.1)  # its audio goes: the sidecar and its extra files are leftovers
    touch(tmp_path / f"{B}.latents.npy")
    touch(tmp_path / f"{B}.tail.npy")
    (tmp_path / f"{B}.wav").unlink()
    touch(tmp_path / f"{C}.flac")  # audio and a tail, no sidecar: stopped between the writes
    touch(tmp_path / f"{C}.tail.npy")
    tmp = touch(temp_path(tmp_path / f"{A}.json"))
    found = cache_scan.leftovers(tmp_path, Skips())
    assert names(found) == {
        f"{B}.json",
        f"{B}.latents.npy",
        f"{B}.tail.npy",
        f"{C}.flac",
        f"{C}.tail.npy",
        tmp.name,
    }
    assert all(mtime == os.stat(path).st_mtime for path, mtime in found)


def test_a_bad_sidecar_keeps_its_track(tmp_path: Path) -> None:
    touch(tmp_path / f"{A}.json", b"{not json")
    touch(tmp_path / f"{A}.wav")
    skips = Skips()
    assert cache_scan.leftovers(tmp_path, skips) == []
    assert [name for name, _ in skips.seen] == [f"{A}.json"]


def test_listing_and_sizes_of_what_is_missing(tmp_path: Path) -> None:
    assert cache_scan.listing(tmp_path / "gone") == []
    assert cache_scan.regular_size(tmp_path / "gone") == 0
    assert cache_scan.regular_size(touch(tmp_path / "f", b"12345")) == 5
    assert cache_scan.regular_size(tmp_path) == 0  # a folder
