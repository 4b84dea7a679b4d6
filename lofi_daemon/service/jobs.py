"""The generation queue: one worker thread, priorities, cancellation and throttled progress.

Every accepted job ends with exactly one terminal notification: ``generation_complete``,
``generation_error`` or ``generation_cancelled``. The queue limit counts every accepted job
that has not ended yet, the running one included, except "background" jobs (the radio
station's: they queue behind every other job and send their notifications to their own sink,
:attr:`Job.notify`, never to the client). A running job being cancelled is never
shared with a new request: :meth:`JobRunner.submit` of a new job for its track announces its
end at once, before the new job's reply, and it sends nothing more. The notifications' params
are built in :mod:`lofi_daemon.service.payloads`; which progress updates are sent is
:class:`~lofi_daemon.service.throttle.ProgressThrottle`'s rule. The job record and the engine
protocol are :mod:`lofi_daemon.service.job_types`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from lofi_daemon import errors
from lofi_daemon.errors import CancelledError, LofiError
from lofi_daemon.service.cache import TrackCache
from lofi_daemon.service.job_types import (
    DEFAULT_QUEUE_LIMIT,
    QUEUE_PRIORITIES,
    CancelResult,
    Emit,
    GenerationEngine,
    Job,
    is_for,
)
from lofi_daemon.service.payloads import (
    ProgressLike,
    cancelled_payload,
    complete_payload,
    error_payload,
    final_progress_payload,
    progress_payload,
    start_payload,
)
from lofi_daemon.service.throttle import (
    PROGRESS_INTERVAL_SEC,
    PROGRESS_STEP_PERCENT,
    ProgressThrottle,
)

log = logging.getLogger(__name__)


class JobRunner:
    """A priority queue of generation jobs served by one worker thread.

    Args:
        engine: runs the generations (``Engine`` or a test double).
        cache: receives finished tracks.
        emit: sends a notification ``(method, params)``; called from the worker thread.
        limit: most jobs accepted at once (running one included); more gives QUEUE_FULL.
        backend: backend name recorded in the cache for a job that names none.
        progress_interval_sec, progress_step_percent: progress throttling.
        clock: monotonic clock (for tests).
    """

    def __init__(
        self,
        engine: GenerationEngine,
        cache: TrackCache,
        emit: Emit,
        *,
        limit: int = DEFAULT_QUEUE_LIMIT,
        backend: str = "ace-step",
        progress_interval_sec: float = PROGRESS_INTERVAL_SEC,
        progress_step_percent: float = PROGRESS_STEP_PERCENT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1:
            raise ValueError("the queue limit must be at least 1")
        self.limit = limit
        self._engine = engine
        self._cache = cache
        self._emit = emit
        self._backend = backend
        self._interval = progress_interval_sec
        self._step = progress_step_percent
        self._clock = clock
        self._cond = threading.Condition()
        self._pending: list[Job] = []
        self._running: Job | None = None
        self._send_lock = threading.Lock()  # a job's notifications vs. its early end (submit)
        self._closing = False
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._work, name="lofi-generation", daemon=True)
        self._thread.start()

    def close(self, *, cancel_running: bool) -> None:
        """Stop accepting jobs, cancel the queued ones and let the worker end.

        The running job finishes unless ``cancel_running`` is set. Returns at once; use
        :meth:`join` to wait.
        """
        with self._cond:
            self._closing = True
            dropped, self._pending = self._pending, []
            if cancel_running and self._running is not None:
                self._running.cancel_event.set()
            self._cond.notify_all()
        for job in dropped:
            self._emit_for(job)("generation_cancelled", cancelled_payload(job.track_id))

    def cancel_running(self) -> None:
        with self._cond:
            if self._running is not None:
                self._running.cancel_event.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker to end; True when it has."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- queue ---------------------------------------------------------------------------------

    def submit(self, job: Job, *, hold: bool = False) -> int:
        """Queue a job and return its position (jobs that run before it, the running one
        included). A held job does not start until :meth:`release`.

        Raises:
            LofiError: QUEUE_FULL when ``limit`` jobs are already accepted.
        """
        with self._cond:
            if self._closing:
                raise LofiError(errors.QUEUE_FULL, "the daemon is shutting down")
            running = self._running
            superseded = running if is_for(running, job.track_id, stopping=True) else None
            if superseded is not None:
                superseded.superseded = True  # it ends now, for the client (see _end_early)
            accepted = sum(1 for queued in self._pending if queued.priority != "background")
            accepted += running is not None and not running.superseded
            if accepted >= self.limit and job.priority != "background":
                raise LofiError(
                    errors.QUEUE_FULL,
                    f"{accepted} generation(s) already queued or running; the limit is "
                    f"{self.limit}",
                )
            job.held = hold
            rank = QUEUE_PRIORITIES.index(job.priority)
            index = sum(1 for q in self._pending if QUEUE_PRIORITIES.index(q.priority) <= rank)
            self._pending.insert(index, job)
            self._cond.notify_all()
            position = index + (running is not None)
        if superseded is not None:
            self._end_early(superseded)
        return position

    def release(self, track_id: str) -> None:
        """Let a held job start."""
        with self._cond:
            for job in self._pending:
                if job.track_id == track_id:
                    job.held = False
            self._cond.notify_all()

    def position(self, track_id: str) -> int | None:
        """The position of a queued (or 0 for the running) job; None when unknown or when the
        running job with that id is being cancelled (a new request for it needs a new job)."""
        with self._cond:
            if is_for(self._running, track_id, stopping=False):
                return 0
            offset = self._running is not None
            for index, job in enumerate(self._pending):
                if job.track_id == track_id:
                    return index + offset
            return None

    def cancel(self, track_id: str, *, owned: bool = False) -> CancelResult:
        """Cancel a job.

        A removed queued job is announced by the caller (:meth:`announce_cancelled`, once its
        reply is out); a running job is announced by the worker when the engine stops. A job
        with its own sink (the radio station's) is only cancelled by its owner (``owned``).

        Raises:
            LofiError: TRACK_NOT_FOUND when no queued or running job has that id;
                INVALID_PARAMETER for a radio station's job (without ``owned``).
        """
        with self._cond:
            found = [j for j in (*self._pending, self._running) if j and j.track_id == track_id]
            if not owned and any(j.notify is not None for j in found):
                raise LofiError(
                    errors.INVALID_PARAMETER,
                    f"{track_id} is a radio station segment; stop the station with radio.stop",
                )
            for index, job in enumerate(self._pending):
                if job.track_id == track_id:
                    del self._pending[index]
                    self._cond.notify_all()
                    return CancelResult("cancelled")
            running = self._running
            if running is not None and running.track_id == track_id and not running.superseded:
                running.cancel_event.set()
                progress = running.progress
                return CancelResult("cancelling", progress["step"] if progress else 0)
        shown = track_id[:64]
        raise LofiError(errors.TRACK_NOT_FOUND, f"no queued or running generation {shown!r}")

    def _end_early(self, job: Job) -> None:
        """Announce a cancelling job's end before it stops (unless its end is already out)."""
        with self._send_lock:
            if job.ended:
                return
            job.ended = True
            step = job.progress["step"] if job.progress else 0
            self._emit_for(job)("generation_cancelled", cancelled_payload(job.track_id, step))
        log.info("%s is requested again while cancelling: it ends now", job.track_id)

    def _send(
        self, job: Job, method: str, params: dict[str, Any], *, terminal: bool = False
    ) -> None:
        """Send one of a running job's notifications; none after its terminal one."""
        with self._send_lock:
            if job.ended:
                return
            job.ended = terminal
            self._emit_for(job)(method, params)

    def _emit_for(self, job: Job) -> Emit:
        """Where ``job``'s notifications go: its own sink, else the client."""
        return job.notify if job.notify is not None else self._emit

    def announce_cancelled(self, track_id: str, step: int | None = None) -> None:
        """Send ``generation_cancelled`` for a job that ends without running (or at ``step``)."""
        self._emit("generation_cancelled", cancelled_payload(track_id, step))

    def snapshot(self) -> dict[str, Any]:
        """The running job and the queue, for the ``status`` method."""
        with self._cond:
            running = self._running
            pending = list(self._pending)
            running_info = None
            if running is not None:
                progress = running.progress or {}
                started = running.started_at
                running_info = {
                    "track_id": running.track_id,
                    "prompt": running.params.prompt,
                    "duration_sec": running.params.duration_sec,
                    "seed": running.params.seed,
                    "backend": running.params.backend,
                    "phase": progress.get("phase"),
                    "step": progress.get("step", 0),
                    "total_steps": progress.get("total_steps"),
                    "percent": progress.get("percent", 0.0),
                    "eta_sec": progress.get("eta_sec"),
                    "elapsed_sec": None if started is None else round(self._clock() - started, 3),
                    "cancelling": running.cancel_event.is_set(),
                }
        offset = running is not None
        queue = [
            {
                "track_id": job.track_id,
                "position": index + offset,
                "priority": job.priority,
                "prompt": job.params.prompt,
                "duration_sec": job.params.duration_sec,
                "seed": job.params.seed,
            }
            for index, job in enumerate(pending)
        ]
        return {"running": running_info, "queue": queue, "queue_limit": self.limit}

    # -- worker --------------------------------------------------------------------------------

    def _next(self) -> Job | None:
        with self._cond:
            while True:
                if self._pending and not self._pending[0].held:
                    job = self._pending.pop(0)
                    job.started_at = self._clock()
                    self._running = job
                    return job
                if self._closing:
                    return None
                self._cond.wait()

    def _work(self) -> None:
        while (job := self._next()) is not None:
            try:
                method, payload = self._run(job)
            except Exception as exc:  # never let the worker die
                log.exception("unexpected failure while running %s", job.track_id)
                error = LofiError(errors.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
                method, payload = "generation_error", error_payload(job.track_id, error)
            # The job leaves the queue before its end is announced, so a request that arrives
            # after the announcement sees the cache, never a job that will not report again.
            with self._cond:
                self._running = None
                self._cond.notify_all()
            self._send(job, method, payload, terminal=True)

    def _run(self, job: Job) -> tuple[str, dict[str, Any]]:
        """Run one job; returns its terminal notification."""
        params = job.params
        hit = self._cache.get(job.track_id)  # another daemon sharing the folder may have made it
        if hit is not None and (job.accept_cached is None or job.accept_cached(hit)):
            log.info("%s is in the cache already", job.track_id)
            return "generation_complete", complete_payload(hit, cached=True)
        log.info(
            "generating %s on %s (%gs, %d steps)",
            job.track_id,
            job.backend or self._backend,
            params.duration_sec,
            params.diffusion_steps,
        )
        self._send(job, "generation_start", start_payload(job.track_id, params))
        throttle = ProgressThrottle(self._interval, self._step, self._clock)
        throttle.start()
        started = self._clock()
        created: list[Path] = []  # all that discard may remove: never another daemon's files
        try:
            if job.cancel_event.is_set():
                raise CancelledError()
            existed = job.out_path.exists()
            result = job.run(self._engine, lambda p: self._on_progress(job, throttle, p))
            if (job.backend or self._backend) != "ace-step":  # only v1 latents seed a v1 task
                result = replace(result, latents=None)
            if not existed:
                created.append(Path(result.path))
            extra: dict[str, Any] = {}
            if job.finish is not None:
                result, extra = self._finish(job, result, created)
            entry = self._cache.add(
                job.track_id,
                result,
                backend=job.backend or self._backend,
                generation_time_sec=self._clock() - started,
                source=job.source.record if job.source is not None else None,
                variant=job.variant,
                extra=extra,
            )
        except CancelledError:
            self._cache.discard(job.track_id, created)
            log.info("cancelled %s", job.track_id)
            step = job.progress["step"] if job.progress else 0
            return "generation_cancelled", cancelled_payload(job.track_id, step)
        except LofiError as exc:
            self._cache.discard(job.track_id, created)
            log.error("generation %s failed: %s", job.track_id, exc)
            return "generation_error", error_payload(job.track_id, exc)
        except Exception as exc:
            self._cache.discard(job.track_id, created)
            log.exception("generation %s failed unexpectedly", job.track_id)
            error = LofiError(errors.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
            return "generation_error", error_payload(job.track_id, error)
        self._final_progress(job)
        log.info("finished %s in %.1fs", job.track_id, self._clock() - started)
        return "generation_complete", complete_payload(entry, cached=False)

    @staticmethod
    def _finish(job: Job, result: Any, created: list[Path]) -> tuple[Any, dict[str, Any]]:
        """Run the job's finish hook; the files it makes are the job's (discarded on failure),
        under the track id it gives."""
        assert job.finish is not None
        if job.cancel_event.is_set():
            raise CancelledError()
        finished = job.finish(result)
        created.extend(finished.files)
        job.track_id = finished.track_id  # its notifications go to its own sink
        return finished.result, finished.extra

    def _on_progress(self, job: Job, throttle: ProgressThrottle, progress: ProgressLike) -> None:
        """Record the engine's progress and forward it, throttled.

        100 % is reserved for the moment the track is in the cache (see :meth:`_final_progress`),
        so the engine's own final report is held back.
        """
        try:
            percent = min(float(progress.percent), 100.0)
            if percent >= 100.0:
                return
            payload = progress_payload(job.track_id, progress, percent)
            previous = job.progress
            if previous is not None and payload["percent"] < previous["percent"]:
                return
            job.progress = payload
            if throttle.admit(payload["percent"]):
                self._send(job, "generation_progress", payload)
        except Exception:
            log.exception("cannot report progress for %s", job.track_id)

    def _final_progress(self, job: Job) -> None:
        payload = final_progress_payload(job.track_id, job.progress)
        job.progress = payload
        self._send(job, "generation_progress", payload)
