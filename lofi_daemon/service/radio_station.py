"""One running radio station inside the daemon: its ticker thread, its generation jobs, its
library fills and the cache holds on its segments.

The :class:`~lofi_daemon.radio.plan.StationPlan` decides (what to generate, when a fill is due);
this class does the work: a ticker thread wakes on events (a job ended, a playhead report) or
every :data:`TICK_SEC`, asks the plan for the next job and submits it to the generation queue at
"background" priority (its notifications come back to :meth:`Station._on_job_event`, never to the
client), and appends a library excerpt when the plan says the buffer is about to run dry. Every
method takes the station's lock; notifications go out through ``emit`` (the server's writer).
Files and ids: :mod:`lofi_daemon.service.radio_render`; library fills:
:mod:`lofi_daemon.service.radio_fill`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import numpy as np

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.radio.config import StationConfig
from lofi_daemon.radio.plan import Segment, SegmentJob, StationPlan
from lofi_daemon.service.cache import TrackCache
from lofi_daemon.service.job_types import Emit, GenerationEngine, Job
from lofi_daemon.service.jobs import JobRunner
from lofi_daemon.service.radio_fill import LibraryFills, segment_record
from lofi_daemon.service.radio_payloads import segment_payload, starved_payload
from lofi_daemon.service.radio_render import (
    RenderPlan,
    SegmentFinish,
    continuation_source,
    read_tail,
    segment_key,
)
from lofi_daemon.service.track_ids import SourceKey

log = logging.getLogger(__name__)

TICK_SEC: Final = 0.25
STOP_JOIN_SEC: Final = 5.0


class Station:
    """A station from :meth:`start` to :meth:`stop` (see the module docstring).

    Args:
        config, station_id: the validated settings and the station's id.
        runner, cache: the daemon's generation queue and track cache.
        emit: sends a notification (the server's writer).
        model_version: the model's version (part of every segment's id).
        engine: the LoRA variant's engine (None: the queue's).
        on_failed: called (off the lock) when the station stops itself after failures.
        clock: monotonic clock.
    """

    def __init__(
        self,
        config: StationConfig,
        station_id: str,
        *,
        runner: JobRunner,
        cache: TrackCache,
        emit: Emit,
        model_version: str,
        engine: GenerationEngine | None = None,
        on_failed: Callable[[Station, str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.station_id = station_id
        self._runner = runner
        self._cache = cache
        self._emit = emit
        self._model_version = model_version
        self._engine = engine
        self._on_failed = on_failed
        self._clock = clock
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.plan = StationPlan(config, station_id, now=clock())
        self._join = config.join
        self._tail: np.ndarray | None = None  # held back by the last segment of the timeline
        self._job: Job | None = None  # the queue's job for plan.in_flight
        self._segment_job: SegmentJob | None = None
        self._finishing = False  # a finish hook reserved the next index: no fill until it ends
        self._new_tail: np.ndarray | None = None
        self._fills = LibraryFills(config, cache)
        self._held: list[str] = []  # held segment track ids, in timeline order
        self._thread = threading.Thread(
            target=self._loop, name=f"lofi-radio-{station_id}", daemon=True
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop generating: cancel the job in flight, end the ticker, release the holds."""
        with self._lock:
            self.plan.stop()
            self._stopping.set()
            self._wake.set()
            job, self._job, self._segment_job = self._job, None, None
            if job is not None:
                job.notify = _ignore  # nothing more reaches this station
                self._cancel(job)
            self._cache.release(self._held)
            self._held = []
        if threading.current_thread() is not self._thread:
            self._thread.join(STOP_JOIN_SEC)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def wake(self) -> None:
        self._wake.set()

    def _cancel(self, job: Job) -> None:
        try:
            outcome = self._runner.cancel(job.track_id, owned=True)
        except LofiError:  # it ended meanwhile (or was re-keyed while finishing)
            job.cancel_event.set()
            return
        log.info("radio %s: %s its job %s", self.station_id, outcome.status, job.track_id)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(TICK_SEC)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self._tick()
            except Exception:  # the ticker never dies silently
                log.exception("radio %s: tick failed", self.station_id)

    def _tick(self) -> None:
        with self._lock:
            if self.plan.stopped:
                return
            now = self._clock()
            if not self._finishing and self.plan.fill_due(now):
                self._fill(now)
            job = self.plan.next_job(now)
            if job is not None:
                self._submit(job, now)
            self._release_played(now)

    # -- generated segments -------------------------------------------------------------------

    def _submit(self, segment_job: SegmentJob, now: float) -> None:
        cropped = None
        source = None
        if segment_job.source_track_id is not None:
            found = continuation_source(
                self._cache, segment_job.source_track_id, segment_job.context_frames
            )
            if found is None:
                error = LofiError(
                    errors.TRACK_NOT_FOUND,
                    f"the latents of segment {segment_job.source_track_id} are gone; "
                    "the station cannot continue the music",
                )
                self._failed(segment_job, error, now)
                return
            cropped, source = found
        track_id, key = self._segment_key(segment_job, cropped)
        hit = self._cache.get(track_id)
        tail = read_tail(self._cache.tail_path(track_id), self._join) if hit else None
        if hit is not None and tail is not None:  # a replayed station
            log.info("radio %s: segment %s is cached", self.station_id, track_id)
            self._append_generated(segment_job, track_id, tail, now)
            return
        if source is not None:
            record = {**source.record, "sha256": key.sha256}
            source = type(source)(source.audio, key, record, source.duration_sec)
        job = Job(
            track_id=track_id,
            params=segment_job.params,
            out_path=self._cache.audio_path(track_id, segment_job.params.format),
            priority="background",
            model_version=self._model_version,
            source=source,
            engine=self._engine,
            variant=self.config.variant,
            notify=self._on_job_event,
            accept_cached=lambda entry: (
                read_tail(self._cache.tail_path(entry.track_id), self._join) is not None
            ),
        )
        job.finish = SegmentFinish(
            self._cache,
            self._join,
            segment_job.context_frames,
            lambda: self._prepare_render(segment_job, cropped),
            self._rendered,
        )
        try:
            self._runner.submit(job)
        except LofiError as exc:
            self._failed(segment_job, exc, now)
            return
        self._job, self._segment_job = job, segment_job
        log.info("radio %s: generating segment %d", self.station_id, segment_job.gen_index)

    def _prepare_render(self, segment_job: SegmentJob, cropped: np.ndarray | None) -> RenderPlan:
        """The finish hook's plan: the tail in place now, and the index it reserves."""
        with self._lock:
            if self._segment_job is not segment_job:
                raise LofiError(errors.GENERATION_CANCELLED, "the station stopped")
            self._finishing = True
            track_id, _ = self._segment_key(segment_job, cropped)
            record = segment_record(self.plan, kind="generated", gen_index=segment_job.gen_index)
            return RenderPlan(self._tail, record, track_id)

    def _segment_key(
        self, segment_job: SegmentJob, cropped: np.ndarray | None
    ) -> tuple[str, SourceKey]:
        """The segment's track id and source key after the tail in place now (a fill appended
        while the job ran changes the tail, so the finish hook asks again)."""
        return segment_key(
            segment_job.params,
            model_version=self._model_version,
            latents=cropped,
            tail=self._tail,
            join=self._join,
            previous=segment_job.source_track_id,
            variant=self.config.variant,
        )

    def _rendered(self, track_id: str, tail: np.ndarray) -> None:
        with self._lock:
            self._new_tail = tail

    def _on_job_event(self, method: str, params: dict[str, Any]) -> None:
        """The station job's notifications (from the queue's worker)."""
        with self._lock:
            segment_job, job = self._segment_job, self._job
            if segment_job is None or job is None or self.plan.stopped:
                return
            now = self._clock()
            if method == "generation_start":
                self.plan.job_started(segment_job, now)
                return
            if method not in ("generation_complete", "generation_error", "generation_cancelled"):
                return
            self._job = self._segment_job = None
            self._finishing = False
            tail, self._new_tail = self._new_tail, None
            if method == "generation_complete":
                track_id = params["track_id"]
                if tail is None:  # another daemon made it meanwhile: its tail is on disk
                    tail = read_tail(self._cache.tail_path(track_id), self._join)
                if tail is not None:
                    self._append_generated(segment_job, track_id, tail, now)
                    return
                params = {"message": f"segment {track_id} has no readable tail"}
            if method == "generation_cancelled":
                self.plan.job_cancelled(segment_job)
                self._wake.set()
                return
            error = LofiError(errors.MODEL_INFERENCE_FAILED, str(params.get("message")))
            self._failed(segment_job, error, now)

    def _append_generated(
        self, segment_job: SegmentJob, track_id: str, tail: np.ndarray, now: float
    ) -> None:
        entry = self._cache.get(track_id, touch=False)
        if entry is None:
            error = LofiError(errors.TRACK_NOT_FOUND, f"segment {track_id} left the cache")
            self._failed(segment_job, error, now)
            return
        self._hold(track_id)
        duration = float(entry.metadata["duration_sec"])
        segment = self.plan.job_done(
            segment_job, track_id=track_id, path=entry.path, duration_sec=duration, now=now
        )
        self._tail = tail
        self._fills.end_chain()
        self._announce(segment, now)
        self._wake.set()

    def _failed(self, segment_job: SegmentJob, error: LofiError, now: float) -> None:
        log.warning(
            "radio %s: segment %d failed: %s", self.station_id, segment_job.gen_index, error
        )
        if self.plan.job_failed(segment_job, now):
            message = f"the station stopped after repeated failures: {error.message}"
            threading.Thread(
                target=self._on_failed, args=(self, message), name="lofi-radio-stop", daemon=True
            ).start()
        else:
            self._wake.set()

    # -- library fills ------------------------------------------------------------------------

    def _fill(self, now: float) -> None:
        outcome = self._fills.fill(self.plan, self._tail, now, hold=self._hold)
        if outcome.segment is not None:
            self._tail = outcome.tail
        if outcome.starved:
            self._starved(outcome.segment.track_id if outcome.segment else None, now)
        if outcome.segment is not None:
            self._announce(outcome.segment, now)

    def _starved(self, fill_track_id: str | None, now: float) -> None:
        ahead = self.plan.buffer_ahead_sec(now)
        payload = starved_payload(self.station_id, ahead, self.plan.rtf, fill_track_id)
        self._emit("radio_starved", payload)

    # -- timeline ----------------------------------------------------------------------------

    def _announce(self, segment: Segment, now: float) -> None:
        ahead = self.plan.buffer_ahead_sec(now)
        self._emit("radio_segment", segment_payload(self.station_id, ahead, segment.to_json()))

    def _hold(self, track_id: str) -> None:
        self._cache.hold([track_id])
        self._held.append(track_id)

    def _release_played(self, now: float) -> None:
        """Release the holds of played segments (not the last generated: its latents start the
        next continuation)."""
        playing = self.plan.playing_index(now)
        if playing is None:
            return
        last = self.plan.last_generated()
        keep = {segment.track_id for segment in self.plan.segments[playing:]}
        if last is not None:
            keep.add(last.track_id)
        done = [tid for tid in self._held if tid not in keep]
        if done:
            self._cache.release(done)
            self._held = [tid for tid in self._held if tid in keep]

    def locked(self) -> threading.RLock:
        return self._lock


def _ignore(method: str, params: dict[str, Any]) -> None:
    """The sink of a stopped station's job."""
