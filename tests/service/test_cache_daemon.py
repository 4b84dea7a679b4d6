"""The daemon over a hostile track cache (issue 10, items 15, 16 and 21): it starts, lists only
real tracks and gives every accepted generate exactly one terminal notification."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_checks import MakeDaemon
from daemon_doubles import DaemonProcess, RpcClient
from hostile_cache import (
    GENERATE,
    add_track,
    age,
    plant_bad_sidecar,
    plant_symlinked_audio,
)

from lofi_daemon.service.cache import TrackCache

TERMINAL = ("generation_complete", "generation_error", "generation_cancelled")


def terminals(client: RpcClient, track_id: str) -> list[str]:
    client.result("ping")  # every notification sent before this reply is in
    return [m["method"] for m in client.events(track_id) if m["method"] in TERMINAL]


def test_tracks_list_skips_a_nan_sidecar(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    daemon = make_daemon()
    cache = daemon.server.cache
    good, bad = add_track(cache, seed=1), add_track(cache, seed=2)
    plant_bad_sidecar(cache, bad, "nan-duration")
    listed = daemon.client.result("tracks.list")  # used to fail for the whole cache
    assert [t["track_id"] for t in listed["tracks"]] == [good]


def test_a_cache_hit_on_a_bad_sidecar_regenerates_once(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon()
    client, cache = daemon.client, daemon.server.cache
    bad = add_track(cache, seed=3)
    plant_bad_sidecar(cache, bad, "nan-duration")

    reply = client.result("generate", {**GENERATE, "seed": 3})
    assert reply["track_id"] == bad and reply["status"] == "queued"  # not a cache hit
    done = client.terminal(bad)
    assert done["method"] == "generation_complete" and done["params"]["cached"] is False
    assert terminals(client, bad) == ["generation_complete"]
    json.loads(cache.meta_path(bad).read_text(), parse_constant=_refuse)  # a valid one again

    assert client.result("generate", {**GENERATE, "seed": 3})["status"] == "cached"
    assert terminals(client, bad) == ["generation_complete", "generation_complete"]


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges")
def test_tracks_list_never_reports_a_path_outside_the_cache(
    make_daemon: MakeDaemon, tmp_path: Path
) -> None:
    daemon = make_daemon()
    cache = daemon.server.cache
    good, linked = add_track(cache, seed=1), add_track(cache, seed=2)
    plant_symlinked_audio(cache, linked, tmp_path / "outside.wav")
    listed = daemon.client.result("tracks.list")["tracks"]
    assert [t["track_id"] for t in listed] == [good]
    assert Path(listed[0]["path"]).parent == cache.root.resolve()


def _refuse(name: str) -> None:
    raise ValueError(name)


# -- a real `lofi-daemon serve` over a hostile cache ------------------------------------------


@pytest.fixture
def planted_cache(tmp_path: Path) -> Iterator[tuple[Path, str, str]]:
    """A cache with one real track and one whose sidecar is nested 100 000 levels deep, both
    older than the startup sweep's grace period."""
    root = tmp_path / "cache"
    cache = TrackCache(root)
    good, nested = add_track(cache, seed=1), add_track(cache, seed=2)
    plant_bad_sidecar(cache, nested, "nested")
    for path in root.iterdir():
        age(path)
    yield root, good, nested


@pytest.mark.slow
def test_serve_starts_over_a_nested_sidecar(
    planted_cache: tuple[Path, str, str], tmp_path: Path
) -> None:
    """Item 15: `lofi-daemon serve` used to exit with a RecursionError at start."""
    root, good, nested = planted_cache
    (tmp_path / "no-models").mkdir()
    daemon = DaemonProcess(
        [
            "--models",
            str(tmp_path / "no-models"),
            "--cache-dir",
            str(root),
            "--log-file",
            str(tmp_path / "daemon.log"),
        ],
        stderr_path=tmp_path / "stderr.txt",
    )
    try:
        assert daemon.client.result("ping", timeout=60)["status"] == "ok", daemon.stderr()
        listed = daemon.client.result("tracks.list")["tracks"]
        assert [t["track_id"] for t in listed] == [good]
        assert daemon.client.result("shutdown") == {"status": "shutting_down"}
        assert daemon.wait(30) == 0
    finally:
        daemon.kill()
    log = (tmp_path / "daemon.log").read_text(encoding="utf-8")
    assert "WARNING lofi_daemon.service.cache" in log and "nested too deeply" in log
    assert f"{nested}.json" in log
    assert (root / f"{nested}.json").is_file()  # skipped, not deleted
