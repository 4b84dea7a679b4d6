"""A station's library fills: choosing, writing and appending the excerpt a starving station
plays while its next generated segment is still on its way.

Split from :mod:`lofi_daemon.service.radio_station`, which calls :meth:`LibraryFills.fill` under
its lock when :meth:`~lofi_daemon.radio.plan.StationPlan.fill_due` says so. Which track and which
excerpt: :mod:`lofi_daemon.service.radio_library`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from lofi_daemon.errors import LofiError
from lofi_daemon.radio.config import StationConfig
from lofi_daemon.radio.joins import SAMPLE_RATE
from lofi_daemon.radio.plan import Segment, StationPlan
from lofi_daemon.service.cache import TrackCache
from lofi_daemon.service.radio_library import LibraryCursor, pick_excerpt

log = logging.getLogger(__name__)


def segment_record(
    plan: StationPlan,
    *,
    kind: Literal["generated", "library"],
    gen_index: int | None,
    **extra: Any,
) -> dict[str, Any]:
    """The sidecar's ``"radio"`` record of the segment about to be appended to ``plan``."""
    return {
        "station_id": plan.station_id,
        "index": len(plan.segments),
        "gen_index": gen_index,
        "kind": kind,
        "start_sec": round(plan.end_sec, 3),
        **extra,
    }


@dataclass(frozen=True)
class FillOutcome:
    """What one fill attempt did.

    ``segment`` is the appended fill and ``tail`` its held-back tail (both None when no cached
    track could fill); ``starved`` is True when this attempt starts a starvation episode (the
    station sends ``radio_starved`` once per episode).
    """

    segment: Segment | None
    tail: np.ndarray | None
    starved: bool


class LibraryFills:
    """The fills of one station: how many it made (each draw is seeded by the count) and where
    the next one continues while fills follow each other."""

    def __init__(self, config: StationConfig, cache: TrackCache) -> None:
        self._config = config
        self._cache = cache
        self._join = config.join
        self.count = 0
        self.cursor: LibraryCursor | None = None

    def end_chain(self) -> None:
        """A generated segment came: the next fill draws a track afresh."""
        self.cursor = None

    def fill(
        self,
        plan: StationPlan,
        tail: np.ndarray | None,
        now: float,
        *,
        hold: Callable[[str], None],
    ) -> FillOutcome:
        """Write the next excerpt after ``tail`` into the cache, ``hold`` it (the station's
        hold against eviction) and append it to ``plan``."""
        own = {segment.track_id for segment in plan.segments}
        last_is_fill = bool(plan.segments) and plan.segments[-1].kind == "library"
        excerpt = pick_excerpt(
            self._cache,
            station_id=plan.station_id,
            own=own,
            seed=self._config.seed,
            fill_count=self.count,
            cursor=self.cursor if last_is_fill else None,
            join=self._join,
            segment_sec=self._config.segment_sec,
            tail=tail,
        )
        if excerpt is None:
            return FillOutcome(None, None, plan.fill_unavailable(now))
        record = segment_record(
            plan,
            kind="library",
            gen_index=None,
            library_track_id=excerpt.library_id,
            offset_sec=round(excerpt.offset / SAMPLE_RATE, 3),
        )
        try:
            path, duration, new_tail = excerpt.write(self._cache, tail, self._join, record)
        except (LofiError, ValueError) as exc:
            log.warning(
                "radio %s: cannot fill from %s: %s", plan.station_id, excerpt.library_id, exc
            )
            return FillOutcome(None, None, plan.fill_unavailable(now))
        self.count += 1
        hold(excerpt.track_id)
        segment, starts = plan.add_fill(
            track_id=excerpt.track_id,
            path=path,
            duration_sec=duration,
            now=now,
            prompt=excerpt.prompt,
        )
        self.cursor = excerpt.next_cursor
        return FillOutcome(segment, new_tail, starts)
