"""Library fills (``lofi_daemon/service/radio_library.py``): which cached tracks may fill, the
seeded draw, excerpts that continue each other, and the written fill."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from service.cached_tracks import add_track

from lofi_daemon.radio.joins import SAMPLE_RATE, JoinSettings
from lofi_daemon.service.cache import TrackCache
from lofi_daemon.service.radio_library import (
    Excerpt,
    LibraryCursor,
    candidates,
    pick_excerpt,
)

JOIN = JoinSettings.for_crossfade(0.5)  # a fill needs hold + crossfade = 2 s
SEGMENT_SEC = 2.0
SPAN = round(SEGMENT_SEC * SAMPLE_RATE) + JOIN.hold_samples  # an excerpt's most samples
A, B, C, D, E, F = (letter * 24 for letter in "abcdef")


@pytest.fixture
def cache(tmp_path: Path) -> TrackCache:
    return TrackCache(tmp_path / "cache")


def pick(
    cache: TrackCache,
    *,
    seed: int = 3,
    fill_count: int = 0,
    cursor: LibraryCursor | None = None,
    tail: np.ndarray | None = None,
) -> Excerpt:
    excerpt = pick_excerpt(
        cache,
        station_id="st1",
        own=set(),
        seed=seed,
        fill_count=fill_count,
        cursor=cursor,
        join=JOIN,
        segment_sec=SEGMENT_SEC,
        tail=tail,
    )
    assert excerpt is not None
    return excerpt


def ids(cache: TrackCache, own: set[str] | None = None) -> list[str]:
    return [entry.track_id for entry in candidates(cache, "st1", own or set(), JOIN)]


def test_candidates_skip_own_segments_short_tracks_and_other_rates(cache: TrackCache) -> None:
    add_track(cache, B, 2.0)  # exactly long enough
    add_track(cache, A, 3.0)
    add_track(cache, C, 3.0)  # one of the station's segments (by id)
    add_track(cache, D, 3.0, station="st1")  # this station's segment (by its record)
    add_track(cache, E, 1.9)  # too short for a fill
    add_track(cache, F, 3.0, rate=44100)  # not 48 kHz
    assert ids(cache, {C}) == [A, B]  # sorted by id


def test_other_stations_segments_are_the_last_resort(cache: TrackCache) -> None:
    add_track(cache, A, 3.0, station="other")
    add_track(cache, B, 3.0, station="st1")
    assert ids(cache) == [A]
    add_track(cache, C, 3.0)
    assert ids(cache) == [C]  # a plain track wins


def test_nothing_to_fill_with(cache: TrackCache) -> None:
    add_track(cache, A, 1.0)
    excerpt = pick_excerpt(
        cache,
        station_id="st1",
        own=set(),
        seed=3,
        fill_count=0,
        cursor=None,
        join=JOIN,
        segment_sec=SEGMENT_SEC,
        tail=None,
    )
    assert excerpt is None


def test_the_draw_is_deterministic_and_moves_with_the_seed_and_count(cache: TrackCache) -> None:
    for track_id in (A, B, C, D):
        add_track(cache, track_id, 2.5)
    drawn = [pick(cache, fill_count=n).library_id for n in range(12)]
    assert drawn == [pick(cache, fill_count=n).library_id for n in range(12)]
    assert len(set(drawn)) > 1  # the fill count moves the draw
    assert [pick(cache, seed=4, fill_count=n).library_id for n in range(12)] != drawn
    assert all(pick(cache, fill_count=n).offset == 0 for n in range(3))  # a fresh draw starts


def test_an_unreadable_drawn_track_passes_to_the_next(cache: TrackCache) -> None:
    for track_id in (A, B, C):
        add_track(cache, track_id, 2.5)
    drawn = pick(cache).library_id
    entry = cache.get(drawn, touch=False)
    assert entry is not None
    entry.path.write_bytes(b"not audio any more")
    pool = ids(cache)
    assert pick(cache).library_id == pool[(pool.index(drawn) + 1) % len(pool)]


def test_chained_fills_continue_the_excerpt(cache: TrackCache) -> None:
    wave = add_track(cache, A, 5.0)
    hold = JOIN.hold_samples
    first = pick(cache)
    assert first.offset == 0
    np.testing.assert_array_equal(first.audio, wave[:SPAN])
    assert first.next_cursor == LibraryCursor(A, SPAN - hold)  # where its held tail began
    second = pick(cache, fill_count=1, cursor=first.next_cursor)
    assert (second.library_id, second.offset) == (A, SPAN - hold)
    np.testing.assert_array_equal(second.audio, wave[SPAN - hold :])  # the rest, 3 s
    assert second.track_id != first.track_id
    # 1.5 s are left after the second one's cursor: too short, so a fresh draw
    third = pick(cache, fill_count=2, cursor=second.next_cursor)
    assert third.offset == 0
    gone = pick(cache, cursor=LibraryCursor("9" * 24, SPAN))  # the track left the cache
    assert (gone.library_id, gone.offset) == (A, 0)


def test_the_fill_id_depends_on_the_tail_it_follows(cache: TrackCache) -> None:
    add_track(cache, A, 3.0)
    tail = np.full((JOIN.crossfade_samples, 2), 0.05, dtype=np.float32)
    assert pick(cache).track_id == pick(cache).track_id
    assert pick(cache, tail=tail).track_id != pick(cache).track_id


def test_write_caches_the_fill_with_its_source(cache: TrackCache) -> None:
    add_track(cache, A, 3.0, prompt="rain on the window")
    excerpt = pick(cache)
    record = {"station_id": "st1", "index": 1, "gen_index": None, "kind": "library"}
    path, duration, tail = excerpt.write(cache, None, JOIN, record)
    entry = cache.get(excerpt.track_id, touch=False)
    assert entry is not None and entry.path == path
    assert entry.metadata["radio"] == record
    assert entry.metadata["source"] == {"kind": "radio-library", "track_id": A}
    assert entry.metadata["prompt"] == excerpt.prompt == "rain on the window"
    assert sf.info(str(path)).frames == len(excerpt.audio) - JOIN.hold_samples
    assert duration == pytest.approx(entry.metadata["duration_sec"])
    assert tail.shape == (JOIN.crossfade_samples, 2)
    assert cache.tail_path(excerpt.track_id).is_file()
