"""The station's state machine: what to generate next, the timeline, the playhead, starvation.

Pure: no I/O, no threads and no clock of its own; every call that depends on time gets ``now``
(seconds, any monotonic clock the caller keeps using). The service drives it:

* :meth:`StationPlan.next_job` gives the next generation while the buffer ahead of the playhead
  is below ``(ahead + 1) * segment_sec`` and none is in flight; the returned job *is* in flight
  from then on (queued or running) until :meth:`~StationPlan.job_done`,
  :meth:`~StationPlan.job_failed` or :meth:`~StationPlan.job_cancelled`.
* The client's playhead reports (:meth:`StationPlan.playhead`) anchor the position; between
  reports it moves with ``now`` unless paused, and never past the end of the timeline.
* :meth:`StationPlan.fill_due` says when the buffer is about to run dry while a generation is
  still on its way; the service then appends a library excerpt (:meth:`~StationPlan.add_fill`)
  or reports that none exists (:meth:`~StationPlan.fill_unavailable`). A *starvation episode*
  starts with the first of those and ends at the next generated segment.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model.layout import SAMPLE_RATE_MODEL, SAMPLES_PER_LATENT_FRAME
from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.radio.config import StationConfig
from lofi_daemon.radio.prompts import prompt_for, segment_seeds

MAX_FAILURES: Final = 3
"""Generation failures in a row that stop the station."""
FILL_RETRY_SEC: Final = 5.0
"""After :meth:`StationPlan.fill_unavailable`, no fill is due again for this long."""
MIN_LOW_WATER_SEC: Final = 3.0
RTF_WINDOW: Final = 3
"""Generated segments the real-time factor averages over."""

SegmentKind = Literal["generated", "library"]


@dataclass(frozen=True)
class SegmentJob:
    """One generation the station needs."""

    gen_index: int
    params: GenerationParams
    """Resolved, seeds fixed, format "wav"/"float": text2music of ``segment_sec`` for gen_index 0,
    else ``extend`` (``extend_right = segment_sec``) of the previous segment's context."""
    source_track_id: str | None
    """The previous generated segment's track (whose latents the extend continues); None for 0."""
    context_frames: int
    """Latent frames at the end of the source's latents that the extend starts from; 0 for 0."""


@dataclass(frozen=True)
class Segment:
    """One file of the station's timeline."""

    index: int
    kind: SegmentKind
    track_id: str
    path: Path
    duration_sec: float
    start_sec: float
    """Where the file starts on the station's timeline (the sum of the earlier durations)."""
    prompt: str
    gen_index: int | None
    """The generation index of a generated segment; None for a library fill."""

    @property
    def end_sec(self) -> float:
        return self.start_sec + self.duration_sec

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "kind": self.kind,
            "track_id": self.track_id,
            "path": str(self.path),
            "duration_sec": round(self.duration_sec, 3),
            "start_sec": round(self.start_sec, 3),
            "prompt": self.prompt,
        }


@dataclass(frozen=True)
class _Playhead:
    base_sec: float  # timeline position at ``at``
    at: float
    paused: bool


class StationPlan:
    """The state of one station (see the module docstring for the protocol).

    Attributes:
        config, station_id: as given.
        segments: the timeline, in play order.
        in_flight: the job handed out by :meth:`next_job` and not finished yet.
        stopped: no more jobs (:meth:`stop`, or :data:`MAX_FAILURES` failures in a row).
        starved: in a starvation episode (from the first fill or refused fill to the next
            generated segment).
        low_water_sec: below this buffer ahead a fill is due (``max(3, 2 * hold_sec)``).
    """

    def __init__(self, config: StationConfig, station_id: str, *, now: float) -> None:
        self.config = config
        self.station_id = station_id
        self.created_at = now
        self.segments: list[Segment] = []
        self.in_flight: SegmentJob | None = None
        self.stopped = False
        self.starved = False
        self.low_water_sec: float = max(MIN_LOW_WATER_SEC, 2 * config.join.hold_sec)
        self._issued_at = now  # when in_flight was handed out
        self._started_at: float | None = None  # when the engine started it
        self._generated = 0  # generated segments so far = the next gen_index
        self._failures = 0
        self._fill_refused_at: float | None = None
        self._playhead: _Playhead | None = None
        self._rtfs: deque[float] = deque(maxlen=RTF_WINDOW)

    # -- generation ---------------------------------------------------------------------------

    @property
    def rtf(self) -> float | None:
        """Real-time factor: audio seconds per wall second of the last ≤3 generated segments
        (from :meth:`job_started`, or :meth:`next_job` if it was never called, to
        :meth:`job_done`); None before the first."""
        return sum(self._rtfs) / len(self._rtfs) if self._rtfs else None

    @property
    def generated_count(self) -> int:
        """Generated segments so far (the gen_index of the next job)."""
        return self._generated

    @property
    def end_sec(self) -> float:
        """The end of the timeline (the sum of all segment durations)."""
        return self.segments[-1].end_sec if self.segments else 0.0

    def next_job(self, now: float) -> SegmentJob | None:
        """The next generation, now in flight; None while one is in flight, once stopped, or
        while ``buffer_ahead_sec(now) >= (ahead + 1) * segment_sec``."""
        if self.stopped or self.in_flight is not None:
            return None
        if self.buffer_ahead_sec(now) >= (self.config.ahead + 1) * self.config.segment_sec:
            return None
        job = self._job(self._generated)
        self.in_flight = job
        self._issued_at = now
        self._started_at = None
        return job

    def _job(self, gen_index: int) -> SegmentJob:
        config = self.config
        seed, retake_seed = segment_seeds(config.seed, gen_index)
        prompt = prompt_for(config.prompt, config.seed, gen_index, config.variation)
        if gen_index == 0:
            params = GenerationParams(
                prompt=prompt,
                duration_sec=config.segment_sec,
                seed=seed,
                format="wav",
                wav_subtype="float",
                **config.text2music_overrides(),
            ).resolved()
            return SegmentJob(gen_index, params, source_track_id=None, context_frames=0)
        source = self.last_generated()
        assert source is not None, "gen_index > 0 follows a generated segment"
        frames = config.context_frames
        params = GenerationParams(
            prompt=prompt,
            # The expected length (context + new seconds), as the queue reports it; a source
            # task's duration is not part of its track id (service/track_ids.py).
            duration_sec=round(
                frames * SAMPLES_PER_LATENT_FRAME / SAMPLE_RATE_MODEL + config.segment_sec, 3
            ),
            seed=seed,
            retake_seed=retake_seed,
            task="extend",
            extend_right=config.segment_sec,
            format="wav",
            wav_subtype="float",
            **config.generation,
        ).resolved()
        return SegmentJob(gen_index, params, source_track_id=source.track_id, context_frames=frames)

    def _check_in_flight(self, job: SegmentJob) -> None:
        if self.in_flight is None or self.in_flight != job:
            raise ValueError(f"generation {job.gen_index} is not the station's job in flight")

    def job_started(self, job: SegmentJob, now: float) -> None:
        """The engine started ``job`` (it may have waited in the queue before)."""
        self._check_in_flight(job)
        self._started_at = now

    def job_done(
        self, job: SegmentJob, *, track_id: str, path: Path, duration_sec: float, now: float
    ) -> Segment:
        """Append the generated segment of ``job``; ends a starvation episode, resets the
        failure count and updates :attr:`rtf`."""
        self._check_in_flight(job)
        began = self._started_at if self._started_at is not None else self._issued_at
        wall = now - began
        if wall > 0 and duration_sec > 0:
            self._rtfs.append(duration_sec / wall)
        self.in_flight = None
        self._failures = 0
        self._generated = job.gen_index + 1
        self.starved = False
        self._fill_refused_at = None
        return self._append("generated", track_id, path, duration_sec, job.params.prompt, now, job)

    def job_failed(self, job: SegmentJob, now: float) -> bool:
        """``job`` failed (it is retried by the next :meth:`next_job`); True when that makes
        :data:`MAX_FAILURES` in a row, which stops the station."""
        self._check_in_flight(job)
        self.in_flight = None
        self._failures += 1
        if self._failures >= MAX_FAILURES:
            self.stopped = True
        return self.stopped

    def job_cancelled(self, job: SegmentJob) -> None:
        """``job`` will not finish, through no fault of its own (not counted as a failure)."""
        self._check_in_flight(job)
        self.in_flight = None

    def stop(self) -> None:
        """Stop the station: no more jobs; the one in flight is forgotten."""
        self.stopped = True
        self.in_flight = None

    def last_generated(self) -> Segment | None:
        for segment in reversed(self.segments):
            if segment.kind == "generated":
                return segment
        return None

    # -- starvation ---------------------------------------------------------------------------

    def fill_due(self, now: float) -> bool:
        """Whether to append a library fill now: playback started, a generation is in flight,
        the buffer ahead is below :attr:`low_water_sec` and no fill was refused in the last
        :data:`FILL_RETRY_SEC` seconds."""
        if self.stopped or self._playhead is None or self.in_flight is None:
            return False
        if self._fill_refused_at is not None and now - self._fill_refused_at < FILL_RETRY_SEC:
            return False
        return self.buffer_ahead_sec(now) < self.low_water_sec

    def add_fill(
        self, *, track_id: str, path: Path, duration_sec: float, now: float, prompt: str = ""
    ) -> tuple[Segment, bool]:
        """Append a library fill (``prompt``: the library track's); the bool is True when this
        fill starts a starvation episode (announce it once)."""
        starts = not self.starved
        self.starved = True
        self._fill_refused_at = None
        segment = self._append("library", track_id, path, duration_sec, prompt, now, None)
        return segment, starts

    def fill_unavailable(self, now: float) -> bool:
        """No library track to fill with: no fill is due for :data:`FILL_RETRY_SEC` seconds.
        True when this starts a starvation episode."""
        starts = not self.starved
        self.starved = True
        self._fill_refused_at = now
        return starts

    # -- timeline and playhead ----------------------------------------------------------------

    def _append(
        self,
        kind: SegmentKind,
        track_id: str,
        path: Path,
        duration_sec: float,
        prompt: str,
        now: float,
        job: SegmentJob | None,
    ) -> Segment:
        if not math.isfinite(duration_sec) or duration_sec <= 0:
            raise ValueError(f"a segment needs a positive duration, got {duration_sec!r}")
        end = self.end_sec
        head = self._playhead
        if head is not None and not head.paused and self._unclamped(head, now) >= end:
            # The player ran out and waits at the end: it resumes with this file now.
            self._playhead = _Playhead(end, now, paused=False)
        segment = Segment(
            index=len(self.segments),
            kind=kind,
            track_id=track_id,
            path=path,
            duration_sec=duration_sec,
            start_sec=end,
            prompt=prompt,
            gen_index=job.gen_index if job is not None else None,
        )
        self.segments.append(segment)
        return segment

    def playhead(self, index: int, position_sec: float, paused: bool, now: float) -> None:
        """The client plays segment ``index`` at ``position_sec`` in that file (clamped to the
        file), paused or not.

        Raises:
            LofiError: INVALID_PARAMS for an index the station does not have, a position that
                is not a finite number of seconds (>= 0) or ``paused`` that is not a boolean.
        """
        if isinstance(index, bool) or not isinstance(index, int):
            raise LofiError(errors.INVALID_PARAMS, f"index must be an integer, got {index!r:.60}")
        if not 0 <= index < len(self.segments):
            raise LofiError(
                errors.INVALID_PARAMS,
                f"index {index} is not a segment of this station (it has {len(self.segments)})",
            )
        if (
            isinstance(position_sec, bool)
            or not isinstance(position_sec, (int, float))
            or not math.isfinite(position_sec)
            or position_sec < 0
        ):
            raise LofiError(
                errors.INVALID_PARAMS,
                f"position_sec must be a number of seconds >= 0, got {position_sec!r:.60}",
            )
        if not isinstance(paused, bool):
            raise LofiError(errors.INVALID_PARAMS, "paused must be true or false")
        segment = self.segments[index]
        base = segment.start_sec + min(float(position_sec), segment.duration_sec)
        self._playhead = _Playhead(base, now, paused)

    @staticmethod
    def _unclamped(head: _Playhead, now: float) -> float:
        return head.base_sec + (0.0 if head.paused else max(0.0, now - head.at))

    @property
    def playback_started(self) -> bool:
        """Whether a playhead report arrived (before one, the position stays at 0)."""
        return self._playhead is not None

    def position_sec(self, now: float) -> float:
        """Timeline seconds played: 0 before the first playhead report, then the last report
        moved on by the time since (unless paused), never past the end of the timeline."""
        if self._playhead is None:
            return 0.0
        return min(self._unclamped(self._playhead, now), self.end_sec)

    def playing_index(self, now: float) -> int | None:
        """The segment at the position (the last one once played to the end); None before the
        first playhead report."""
        if self._playhead is None or not self.segments:
            return None
        position = self.position_sec(now)
        for segment in reversed(self.segments):
            if segment.start_sec <= position:
                return segment.index
        return 0

    def buffer_ahead_sec(self, now: float) -> float:
        """Seconds of audio after the position (end of the last segment − position)."""
        return max(0.0, self.end_sec - self.position_sec(now))

    def current_prompt(self, now: float) -> str:
        """The prompt of the block that is playing (of the last generated segment at or before
        the playhead; the base prompt before any)."""
        index = self.playing_index(now)
        if index is not None:
            for segment in reversed(self.segments[: index + 1]):
                if segment.gen_index is not None:
                    return segment.prompt
        return self.config.prompt

    def snapshot(self, now: float) -> dict[str, Any]:
        """The ``radio.status`` answer of a running station."""
        rtf = self.rtf
        return {
            "status": "playing",
            "station_id": self.station_id,
            "prompt": self.current_prompt(now),
            "config": self.config.to_json(),
            "segments": len(self.segments),
            "playing_index": self.playing_index(now),
            "position_sec": round(self.position_sec(now), 3),
            "buffer_ahead_sec": round(self.buffer_ahead_sec(now), 3),
            "generating": self.in_flight is not None,
            "starved": self.starved,
            "rtf": round(rtf, 3) if rtf is not None else None,
        }
