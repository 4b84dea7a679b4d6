"""A station's library fills (``lofi_daemon/service/radio_fill.py``) on a real cache and plan:
the sidecar record, nothing to fill with, the hold, chained fills and the starvation episode."""

from __future__ import annotations

from pathlib import Path

import pytest
from service.cached_tracks import add_track

from lofi_daemon.radio.config import StationConfig
from lofi_daemon.radio.plan import StationPlan
from lofi_daemon.service.cache import TrackCache
from lofi_daemon.service.radio_fill import FillOutcome, LibraryFills, segment_record

CONFIG = StationConfig.from_params(
    {"prompt": "lofi", "segment_sec": 5, "context_sec": 5, "crossfade_sec": 0.5}, seed=7
)
LIBRARY = "f" * 24


@pytest.fixture
def cache(tmp_path: Path) -> TrackCache:
    return TrackCache(tmp_path / "cache")


def started_plan() -> StationPlan:
    """A plan whose first segment plays while the second one is generating."""
    plan = StationPlan(CONFIG, "st1", now=0.0)
    job = plan.next_job(0.0)
    assert job is not None
    plan.job_done(job, track_id="a" * 24, path=Path("/a.flac"), duration_sec=5.0, now=1.0)
    plan.playhead(0, 0.0, False, 1.0)
    assert plan.next_job(1.0) is not None
    return plan


def offset_sec(cache: TrackCache, outcome: FillOutcome) -> float:
    """Where in the library track the fill's excerpt starts (its sidecar's record)."""
    assert outcome.segment is not None
    entry = cache.get(outcome.segment.track_id, touch=False)
    assert entry is not None
    return float(entry.metadata["radio"]["offset_sec"])


def test_segment_record_describes_the_next_segment() -> None:
    plan = started_plan()
    assert segment_record(plan, kind="generated", gen_index=1) == {
        "station_id": "st1",
        "index": 1,
        "gen_index": 1,
        "kind": "generated",
        "start_sec": 5.0,
    }
    record = segment_record(plan, kind="library", gen_index=None, offset_sec=2.5)
    assert record["kind"] == "library" and record["offset_sec"] == 2.5


def test_nothing_to_fill_with_starves_once(cache: TrackCache) -> None:
    plan, fills = started_plan(), LibraryFills(CONFIG, cache)
    held: list[str] = []
    first = fills.fill(plan, None, 4.0, hold=held.append)
    assert (first.segment, first.tail, first.starved) == (None, None, True)
    again = fills.fill(plan, None, 10.0, hold=held.append)
    assert again.segment is None and not again.starved  # the same episode
    assert held == [] and fills.count == 0 and len(plan.segments) == 1


def test_fills_chain_through_one_library_track(cache: TrackCache) -> None:
    add_track(cache, LIBRARY, 12.0)
    plan, fills = started_plan(), LibraryFills(CONFIG, cache)
    held: list[str] = []
    first = fills.fill(plan, None, 4.0, hold=held.append)
    assert first.segment is not None and first.tail is not None and first.starved
    assert (first.segment.kind, first.segment.index) == ("library", 1)
    assert held == [first.segment.track_id]
    entry = cache.get(first.segment.track_id, touch=False)
    assert entry is not None
    assert entry.metadata["radio"] == {
        "station_id": "st1",
        "index": 1,
        "gen_index": None,
        "kind": "library",
        "start_sec": 5.0,
        "library_track_id": LIBRARY,
        "offset_sec": 0.0,
    }
    second = fills.fill(plan, first.tail, 8.0, hold=held.append)
    assert not second.starved and fills.count == 2 and len(held) == 2
    # it continues where the first excerpt's held tail began (an excerpt is 5 s + the hold)
    assert offset_sec(cache, second) == 5.0
    fills.end_chain()  # a generated segment came between: a fresh draw starts at 0
    assert offset_sec(cache, fills.fill(plan, second.tail, 12.0, hold=held.append)) == 0.0
