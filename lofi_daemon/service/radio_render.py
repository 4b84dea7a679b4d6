"""The radio station's segment files in the track cache: their ids, the held tails, and turning a
generation (or a library excerpt) into a segment file.

A generated segment is one generation job whose engine output (a float WAV) is rendered by
:func:`lofi_daemon.radio.render.render_first` / ``render_continuation`` into
``<cache>/<track_id>.flac`` by the job's finish hook (:class:`SegmentFinish`), before the cache
records the track; the WAV is removed. The part each file holds back for the next join (the
*tail*) is kept beside it as ``<track_id>.tail.npy`` (float32 ``[crossfade_samples, 2]``,
:meth:`TrackCache.tail_path`, removed with the track): a replayed station that hits the cache
needs it for the next join and cannot make it again without the engine's output. A cached
segment whose tail is missing or unreadable is no hit: it is generated again (same id, same
file).

The id of a generated segment is :func:`track_id_for` its generation params with the source
``SourceKey("radio", sha256(cropped source latents + the tail it starts from + the join
settings), ref=previous track id)``: everything its file depends on. The tail is the one in place
when the file is rendered; if a library fill was inserted while the job ran, that is the fill's,
and the finish hook re-keys the track (:attr:`Finished.track_id`) so the id stays the hash of
what the file holds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from lofi_daemon.fsutil import write_bytes_atomic
from lofi_daemon.paths import BACKEND
from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.pipeline.source import SourceAudio
from lofi_daemon.radio.joins import SAMPLE_RATE, JoinSettings, context_samples, tail_position
from lofi_daemon.radio.render import (
    render_continuation,
    render_fill,
    render_first,
    write_segment,
)
from lofi_daemon.service.cache import TrackCache
from lofi_daemon.service.job_types import Finished
from lofi_daemon.service.latents import latents_bytes
from lofi_daemon.service.sources import ResolvedSource
from lofi_daemon.service.track_ids import TRACK_ID_CHARS, SourceKey, track_id_for

log = logging.getLogger(__name__)

SEGMENT_FORMAT: Final = "flac"
MAX_TAIL_BYTES: Final = 8 * 1024 * 1024  # 5 s of float32 stereo is 1.9 MB


# -- tails -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TailTiming:
    """Where a generated segment's held tail lies in that segment's own timing."""

    start_sec: float
    """The tail's first sample, in seconds after the start of the segment's first latent frame
    (sample 0 of its engine output): ``Rendered.tail_at / 48000``."""
    frames: int
    """The segment's latent frames (all of them, as saved); its continuation's context is the
    last ``context_frames`` of them."""

    def position_in_continuation(self, context_frames: int) -> float:
        """Where the tail lies in the ``extend`` output that continues from the last
        ``context_frames`` frames (:func:`~lofi_daemon.radio.joins.tail_position`)."""
        return tail_position(self.start_sec * SAMPLE_RATE, self.frames, context_frames)


class HeldTail(np.ndarray[Any, np.dtype[np.float32]]):
    """A held tail (float32 ``[crossfade_samples, 2]``) with its :class:`TailTiming`.

    An ndarray subclass so that the station, which keeps and passes tails as arrays, carries the
    timing from one finish hook to the next unchanged. Only :meth:`of` sets the timing; arrays
    derived from a held tail (slices, copies, arithmetic) have none.
    """

    timing: TailTiming | None = None

    @classmethod
    def of(cls, samples: np.ndarray, timing: TailTiming) -> HeldTail:
        held = np.array(samples, dtype=np.float32, order="C").view(cls)
        held.timing = timing
        return held


def timing_of(tail: np.ndarray | None) -> TailTiming | None:
    """The timing a tail carries (None for a library fill's or a plain tail)."""
    return tail.timing if isinstance(tail, HeldTail) else None


def tail_dtype(crossfade_samples: int) -> np.dtype[Any]:
    """The record a timed ``.tail.npy`` holds (one, as a 0-d array): the ``samples``
    (float32 ``[crossfade_samples, 2]``) and the :class:`TailTiming` fields."""
    return np.dtype(
        [("samples", "<f4", (crossfade_samples, 2)), ("start_sec", "<f8"), ("frames", "<i8")]
    )


def write_tail(path: Path, tail: np.ndarray) -> None:
    """Write ``tail`` atomically: a :func:`tail_dtype` record when it has a timing, else the
    float32 samples."""
    samples = np.ascontiguousarray(tail, dtype=np.float32)
    timing = timing_of(tail)
    array: np.ndarray = samples
    if timing is not None:
        array = np.zeros((), dtype=tail_dtype(samples.shape[0]))
        array["samples"] = samples
        array["start_sec"] = timing.start_sec
        array["frames"] = timing.frames
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    write_bytes_atomic(path, buffer.getvalue())


def read_tail(path: Path, join: JoinSettings) -> np.ndarray | None:
    """The held tail at ``path`` (a :class:`HeldTail` when the file holds its timing), or None
    when missing, a symlink, oversized, or not a finite ``[crossfade_samples, 2]`` float32 tail
    (with a finite ``start_sec`` >= 0 and ``frames`` >= 1 for a timed one)."""
    try:
        if path.is_symlink() or path.stat().st_size > MAX_TAIL_BYTES:
            return None
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    timing = None
    if (
        isinstance(array, np.ndarray)
        and array.dtype == tail_dtype(join.crossfade_samples)
        and array.shape == ()
    ):
        start_sec, frames = float(array["start_sec"]), int(array["frames"])
        if math.isfinite(start_sec) and start_sec >= 0 and frames >= 1:
            timing = TailTiming(start_sec, frames)
            array = np.array(array["samples"], dtype=np.float32, order="C")
    if (
        not isinstance(array, np.ndarray)
        or array.dtype != np.float32
        or array.shape != (join.crossfade_samples, 2)
        or not np.isfinite(array).all()
    ):
        log.warning("ignoring the radio tail %s: not a valid tail", path)
        return None
    return array if timing is None else HeldTail.of(array, timing)


def radio_digest(latents: np.ndarray | None, tail: np.ndarray | None, join: JoinSettings) -> str:
    """sha256 of the cropped source latents, the held tail (with its timing, when it has one:
    the continuation's file depends on it) and the join settings."""
    digest = hashlib.sha256()
    if latents is not None:
        digest.update(latents_bytes(latents))
    if tail is not None:
        digest.update(np.ascontiguousarray(tail, dtype=np.float32).tobytes())
        timing = timing_of(tail)
        if timing is not None:
            digest.update(json.dumps(dataclasses.asdict(timing), sort_keys=True).encode("ascii"))
    digest.update(json.dumps(join.to_json(), sort_keys=True).encode("ascii"))
    return digest.hexdigest()


def segment_key(
    params: GenerationParams,
    *,
    model_version: str,
    latents: np.ndarray | None,
    tail: np.ndarray | None,
    join: JoinSettings,
    previous: str | None,
    variant: str | None,
) -> tuple[str, SourceKey]:
    """The track id of a generated segment, and its source key."""
    key = SourceKey("radio", radio_digest(latents, tail, join), ref=previous)
    track_id = track_id_for(
        params, model_version=model_version, backend=BACKEND, source=key, variant=variant
    )
    return track_id, key


def continuation_source(
    cache: TrackCache, previous: str, context_frames: int
) -> tuple[np.ndarray, ResolvedSource] | None:
    """The last ``context_frames`` latent frames of the previous generated segment, as the
    extend job's source; None when its latents are gone or unreadable."""
    from lofi_daemon.service.latents import read_latents

    saved = read_latents(cache.latents_path(previous))
    if saved is None or saved[0].shape[-1] < context_frames:
        return None
    cropped = np.ascontiguousarray(saved[0][..., -context_frames:])
    source = ResolvedSource(
        audio=SourceAudio(latents=cropped, label=f"radio context of track {previous}"),
        key=SourceKey("radio", "", ref=previous),  # replaced by the job's full key
        record={"kind": "radio", "track_id": previous, "context_frames": context_frames},
        duration_sec=context_frames * 4096 / 44100,
    )
    return cropped, source


# -- generated segments ------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderPlan:
    """What the finish hook of one generated segment needs, read when it runs."""

    tail: np.ndarray | None  # None: the station's first file
    record: dict[str, Any]  # the sidecar's "radio" record
    track_id: str


class SegmentFinish:
    """The finish hook of a generated segment's job (:attr:`Job.finish`).

    ``prepare`` is asked, when the engine is done, for the tail to start from, the radio record
    and the track id (the station answers under its lock); ``rendered`` gets the new tail, a
    :class:`HeldTail` timed in this segment's output (:func:`continuation_tail_at` reads it).
    """

    def __init__(
        self,
        cache: TrackCache,
        join: JoinSettings,
        context_frames: int,
        prepare: Callable[[], RenderPlan],
        rendered: Callable[[str, np.ndarray], None],
    ) -> None:
        self._cache = cache
        self._join = join
        self._context_frames = context_frames
        self._prepare = prepare
        self._rendered = rendered

    def __call__(self, result: Any) -> Finished:
        from lofi_daemon.radio.render import read_wave

        wav = Path(result.path)
        plan = self._prepare()
        wave = read_wave(wav)
        if plan.tail is None:
            rendered = render_first(wave, self._join)
        else:
            at = continuation_tail_at(plan.tail, self._context_frames, self._join)
            rendered = render_continuation(plan.tail, wave, at, self._join)
        frames = int(result.latents.shape[-1])  # all of them: the next context crops its end
        tail = HeldTail.of(rendered.tail, TailTiming(rendered.tail_at / SAMPLE_RATE, frames))
        target = self._cache.audio_path(plan.track_id, SEGMENT_FORMAT)
        tail_path = self._cache.tail_path(plan.track_id)
        write_tail(tail_path, tail)
        try:
            write_segment(target, rendered.audio)
        except BaseException:
            _unlink(tail_path)
            raise
        _unlink(wav)
        self._rendered(plan.track_id, tail)
        duration = len(rendered.audio) / SAMPLE_RATE
        finished = dataclasses.replace(result, path=target, duration_sec=duration)
        return Finished(finished, {"radio": plan.record}, [target, tail_path], plan.track_id)


def continuation_tail_at(tail: np.ndarray, context_frames: int, join: JoinSettings) -> float:
    """Where ``tail`` lies in the ``extend`` output continuing from the last ``context_frames``
    latent frames of the segment before: its exact, fractional position when the tail is that
    segment's (:class:`HeldTail`), else (a library fill's tail: other music, nothing to line up
    sample by sample; or a tail without timing) the rounded context end less the hold.

    A timed tail in place is always the one of the segment the continuation's context comes
    from: the station continues from its last generated segment, whose finish hook made the
    tail, and a library fill appended since replaces the tail with its own, untimed one."""
    timing = timing_of(tail)
    if timing is not None and timing.frames >= context_frames:
        return timing.position_in_continuation(context_frames)
    if timing is not None:
        log.warning(
            "radio tail timed in %d latent frames, fewer than the context's %d: not aligned",
            timing.frames,
            context_frames,
        )
    return float(context_samples(context_frames) - join.hold_samples)


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot delete %s: %s", path, exc)


# -- library fills -----------------------------------------------------------------------------


def fill_id(
    library_id: str, offset: int, samples: int, tail: np.ndarray | None, join: JoinSettings
) -> str:
    """The id of a library fill: its track, excerpt, the tail it starts from, the join."""
    payload = {
        "kind": "radio-fill",
        "library": library_id,
        "offset": offset,
        "samples": samples,
        "start": radio_digest(None, tail, join),
    }
    blob = json.dumps(payload, sort_keys=True).encode("ascii")
    return hashlib.sha256(blob).hexdigest()[:TRACK_ID_CHARS]


def write_fill(
    cache: TrackCache,
    track_id: str,
    excerpt: np.ndarray,
    tail: np.ndarray | None,
    join: JoinSettings,
    meta: dict[str, Any],
) -> tuple[Path, float, np.ndarray]:
    """Render a library excerpt into a cached segment; (path, duration, new tail).

    Raises:
        LofiError: OUTPUT_WRITE_FAILED; ValueError for an excerpt too short (the caller checks).
    """
    rendered = render_fill(tail, excerpt, join)
    target = cache.audio_path(track_id, SEGMENT_FORMAT)
    tail_path = cache.tail_path(track_id)
    duration = len(rendered.audio) / SAMPLE_RATE
    written: list[Path] = []
    try:
        write_tail(tail_path, rendered.tail)
        written.append(tail_path)
        write_segment(target, rendered.audio)
        written.append(target)
        entry = cache.add_file(
            track_id, target, {**meta, "duration_sec": duration, "sample_rate": SAMPLE_RATE}
        )
    except BaseException:
        cache.discard(track_id, written)
        raise
    return entry.path, duration, rendered.tail
