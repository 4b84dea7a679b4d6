"""Library fills: which cached track a starving station plays from, and which excerpt.

A candidate is a complete 48 kHz track of the cache that is not one of this station's segments
and is long enough for a fill (:func:`lofi_daemon.radio.render.min_fill_samples`). Tracks that
are no radio segment are preferred (other stations' segments are the last resort). The choice is
deterministic: candidates sorted by track id, the index drawn from a hash of the station seed and
the fill count. Fills that follow each other continue the same track where the previous
excerpt's held tail began, so back-to-back fills are one continuous excerpt; an excerpt is at most
``segment_sec`` long (plus the held-back part).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lofi_daemon.errors import LofiError
from lofi_daemon.radio.joins import SAMPLE_RATE, JoinSettings
from lofi_daemon.radio.render import min_fill_samples, read_wave
from lofi_daemon.service.cache import TrackCache
from lofi_daemon.service.radio_render import fill_id, write_fill
from lofi_daemon.service.sidecar import TrackEntry


@dataclass(frozen=True)
class LibraryCursor:
    """Where the next chained fill continues: a library track and a sample offset."""

    library_id: str
    offset: int


@dataclass(frozen=True)
class Excerpt:
    """One chosen excerpt, not written yet."""

    library_id: str
    entry: TrackEntry
    offset: int
    audio: np.ndarray  # the excerpt's samples (at most segment + hold)
    track_id: str
    next_cursor: LibraryCursor

    @property
    def prompt(self) -> str:
        prompt = self.entry.metadata.get("prompt")
        return prompt if isinstance(prompt, str) else ""

    def write(
        self,
        cache: TrackCache,
        tail: np.ndarray | None,
        join: JoinSettings,
        record: dict[str, Any],
    ) -> tuple[Path, float, np.ndarray]:
        """Render and cache the fill: (path, duration, the new held tail)."""
        meta = self.entry.metadata
        fields = {
            "prompt": self.prompt,
            "task": self.entry.task,
            "seed": meta["seed"],
            "model_version": meta["model_version"],
            "backend": meta["backend"],
            "channels": 2,
            "generation_time_sec": 0.0,
            "source": {"kind": "radio-library", "track_id": self.library_id},
            "radio": record,
        }
        return write_fill(cache, self.track_id, self.audio, tail, join, fields)


def candidates(
    cache: TrackCache, station_id: str, own: set[str], join: JoinSettings
) -> list[TrackEntry]:
    """The tracks a fill may come from, preferred ones only when there are any."""
    need = min_fill_samples(join) / SAMPLE_RATE
    usable: list[TrackEntry] = []
    for entry in cache.entries():
        meta = entry.metadata
        radio = meta.get("radio")
        if entry.track_id in own or (
            isinstance(radio, dict) and radio.get("station_id") == station_id
        ):
            continue
        duration = meta.get("duration_sec")
        if meta.get("sample_rate") != SAMPLE_RATE or not isinstance(duration, (int, float)):
            continue
        if duration >= need:
            usable.append(entry)
    plain = [entry for entry in usable if "radio" not in entry.metadata]
    return sorted(plain or usable, key=lambda entry: entry.track_id)


def _draw(seed: int, fill_count: int, count: int) -> int:
    digest = hashlib.sha256(f"lofi.nvim radio fill {seed} {fill_count}".encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big") % count


def pick_excerpt(
    cache: TrackCache,
    *,
    station_id: str,
    own: set[str],
    seed: int,
    fill_count: int,
    cursor: LibraryCursor | None,
    join: JoinSettings,
    segment_sec: float,
    tail: np.ndarray | None,
) -> Excerpt | None:
    """The next fill's excerpt (continuing ``cursor`` when it still has enough audio), or None
    when no cached track can fill."""
    need = min_fill_samples(join)
    span = round(segment_sec * SAMPLE_RATE) + join.hold_samples
    if cursor is not None:
        entry = cache.get(cursor.library_id, touch=False)
        if entry is not None:
            excerpt = _excerpt(entry, cursor.offset, span, need, tail, join)
            if excerpt is not None:
                return excerpt
    pool = candidates(cache, station_id, own, join)
    if not pool:
        return None
    start = _draw(seed, fill_count, len(pool))
    for step in range(len(pool)):  # the drawn one, else the next usable one
        excerpt = _excerpt(pool[(start + step) % len(pool)], 0, span, need, tail, join)
        if excerpt is not None:
            return excerpt
    return None


def _excerpt(
    entry: TrackEntry,
    offset: int,
    span: int,
    need: int,
    tail: np.ndarray | None,
    join: JoinSettings,
) -> Excerpt | None:
    try:
        wave = read_wave(entry.path)
    except (LofiError, ValueError, OSError):  # unreadable, another rate: not a candidate
        return None
    audio = wave[offset : offset + span]
    if len(audio) < need:
        return None
    track_id = fill_id(entry.track_id, offset, len(audio), tail, join)
    cursor = LibraryCursor(entry.track_id, offset + len(audio) - join.hold_samples)
    return Excerpt(entry.track_id, entry, offset, audio, track_id, cursor)
