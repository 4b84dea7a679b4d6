"""``radio.save`` off the request thread: what to save, and the one save running at a time.

:meth:`RadioSaver.begin` does every check it can at once (another save running, the
destination's rules, which segments are still in the cache) so ``radio.save`` answers at once;
the file is then written on a worker thread by :func:`lofi_daemon.radio.save.save_concatenation`
(which leaves nothing behind on any failure), and the save ends with exactly one notification,
``radio_saved`` or ``radio_save_failed`` (docs/protocol.md, "Radio").

Segments that left the cache (played segments are released by the station and may be evicted
under the size cap) cannot be saved: the save covers the contiguous run of cached segments that
ends at the newest one. The run's tracks are held against eviction until the save ends, so
stopping the station does not stop the save.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.fsutil import temp_target
from lofi_daemon.service.cache import TrackCache
from lofi_daemon.service.job_types import Emit
from lofi_daemon.service.radio_payloads import save_failed_payload, saved_payload

if TYPE_CHECKING:
    from lofi_daemon.radio.plan import Segment
    from lofi_daemon.radio.save import Saved

log = logging.getLogger(__name__)

SAVE_GRACE_SEC: Final = 30.0
"""How long the daemon's shutdown waits for a running save before it gives it up."""
_POLL_SEC: Final = 0.1
_REMEDY: Final = "Like segments (radio.like) to keep them, or raise --cache-max-bytes."


Writer: TypeAlias = "Callable[[Sequence[Path], Path], Saved]"
"""Writes the segment files back to back into a new file (``save_concatenation``'s shape)."""


def _write(paths: Sequence[Path], out: Path) -> Saved:
    from lofi_daemon.radio.save import save_concatenation  # loads numpy and soundfile

    return save_concatenation(paths, out)


def _check_target(out: Path) -> None:
    from lofi_daemon.radio.save import check_target

    check_target(out)


def cached_run(segments: Sequence[Segment], present: Callable[[str], bool]) -> int:
    """Where the contiguous run of segments whose tracks are ``present`` and that ends at the
    newest segment starts (an index into ``segments``).

    Raises:
        LofiError: INVALID_PARAMETER without segments; TRACK_NOT_FOUND when the newest segment
            itself left the cache.
    """
    if not segments:
        raise LofiError(errors.INVALID_PARAMETER, "the station has no segment yet")
    newest = segments[-1]
    if not present(newest.track_id):
        raise LofiError(
            errors.TRACK_NOT_FOUND,
            f"the newest segment ({newest.index}, {newest.track_id}) left the cache; "
            "nothing was written",
            remedy=_REMEDY,
        )
    first = len(segments) - 1
    while first > 0 and present(segments[first - 1].track_id):
        first -= 1
    return first


@dataclass
class SaveJob:
    """One save: the station, the destination and the segments it writes."""

    station_id: str
    path: Path
    segments: tuple[Segment, ...]
    missing: int  # earlier segments that left the cache
    ended: bool = False  # its notification was sent (or claimed)
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def first_index(self) -> int:
        return self.segments[0].index

    @property
    def track_ids(self) -> list[str]:
        return [s.track_id for s in self.segments]

    def reply(self) -> dict[str, Any]:
        """The ``radio.save`` result: the save has started."""
        return {
            "status": "saving",
            "path": str(self.path),
            "segments": len(self.segments),
            "first_index": self.first_index,
        }


class RadioSaver:
    """At most one station save at a time, written on its own thread.

    Args:
        cache: the track cache (the saved segments are held in it while the save runs).
        emit: sends ``radio_saved`` / ``radio_save_failed``.
        write: writes the concatenation (:func:`lofi_daemon.radio.save.save_concatenation`;
            tests pass a slower one).
    """

    def __init__(self, cache: TrackCache, emit: Emit, *, write: Writer = _write) -> None:
        self._cache = cache
        self._emit = emit
        self.write = write
        self._lock = threading.Lock()
        self._job: SaveJob | None = None

    @property
    def running(self) -> Path | None:
        """The destination of the running save, or None."""
        with self._lock:
            return self._job.path if self._job is not None else None

    def begin(
        self, station_id: str, segments: Sequence[Segment], path: Path
    ) -> tuple[SaveJob, Callable[[], None]]:
        """Check and reserve a save of ``segments`` into ``path``; returns the job and what
        starts its thread (to run once the reply is out, so the notification follows it).

        Raises:
            LofiError: INVALID_PARAMETER while another save runs, for a destination
                :func:`~lofi_daemon.radio.save.check_target` refuses, or without segments;
                TRACK_NOT_FOUND when the newest segment left the cache.
        """
        with self._lock:
            if self._job is not None:
                raise LofiError(
                    errors.INVALID_PARAMETER,
                    f"a save is already running ({self._job.path}); wait for it to finish",
                )
            _check_target(path)
            ids = [s.track_id for s in segments]
            self._cache.hold(ids)  # first, so nothing checked below is evicted meanwhile
            try:
                present = {i for i in ids if self._cache.get(i, touch=False) is not None}
                first = cached_run(segments, present.__contains__)
            except BaseException:
                self._cache.release(ids)
                raise
            self._cache.release(ids[:first])
            missing = sum(1 for s in segments[:first] if s.track_id not in present)
            job = SaveJob(station_id, path, tuple(segments[first:]), missing)
            self._job = job
        if first:
            log.warning(
                "radio %s: the first %d segment(s) are not saved (%d left the cache); "
                "saving segments %d-%d to %s",
                station_id,
                first,
                missing,
                job.first_index,
                segments[-1].index,
                path,
            )
        log.info("radio %s: saving %d segment(s) to %s", station_id, len(job.segments), path)
        thread = threading.Thread(target=self._run, args=(job,), name="radio-save", daemon=True)
        job.thread = thread
        return job, thread.start

    def _run(self, job: SaveJob) -> None:
        try:
            saved = self.write([s.path for s in job.segments], job.path)
        except LofiError as exc:
            log.warning("radio %s: saving %s failed: %s", job.station_id, job.path, exc.message)
            payload = save_failed_payload(job.station_id, job.path, exc.code, exc.message)
            method = "radio_save_failed"
        except Exception as exc:
            log.exception("radio %s: saving %s failed", job.station_id, job.path)
            message = f"{type(exc).__name__}: {errors.first_line(exc, 300)}"
            payload = save_failed_payload(job.station_id, job.path, errors.INTERNAL_ERROR, message)
            method = "radio_save_failed"
        else:
            payload = saved_payload(
                job.station_id,
                saved.path,
                saved.duration_sec,
                saved.segments,
                job.first_index,
                job.missing,
            )
            method = "radio_saved"
        finally:
            self._cache.release(job.track_ids)
        self._end(job, method, payload)

    def _end(self, job: SaveJob, method: str, payload: dict[str, Any]) -> None:
        """Send the job's one notification (unless it was sent already) and free the slot."""
        with self._lock:
            if job.ended:
                log.warning("radio %s: %s came too late: %s", job.station_id, method, payload)
                return
            job.ended = True
            if self._job is job:
                self._job = None
        self._emit(method, payload)

    def wait(self, timeout: float, *, interrupted: Callable[[], bool] = lambda: False) -> bool:
        """Wait up to ``timeout`` s for the running save (the daemon's shutdown), less when
        ``interrupted()`` turns true (a termination signal); True when none runs any more. A
        save still running then is given up: ``radio_save_failed`` is sent and its temporary
        file removed (the thread dies with the process)."""
        with self._lock:
            job = self._job
        if job is None or job.thread is None:
            return True
        thread = job.thread
        if thread.ident is not None:  # started (always, once its reply is out)
            log.info("waiting up to %gs for the save to %s", timeout, job.path)
            deadline = time.monotonic() + timeout
            while thread.is_alive() and not interrupted():
                thread.join(max(0.0, min(_POLL_SEC, deadline - time.monotonic())))
                if time.monotonic() >= deadline:
                    break
            if not thread.is_alive():
                return True
        log.warning("the save to %s did not finish; giving it up", job.path)
        message = f"the daemon stopped before the save to {job.path} finished; nothing was written"
        self._end(
            job,
            "radio_save_failed",
            save_failed_payload(job.station_id, job.path, errors.OUTPUT_WRITE_FAILED, message),
        )
        _remove_temporaries(job.path)
        return False


def _remove_temporaries(out: Path) -> None:
    """Remove the temporary siblings of ``out`` (:func:`lofi_daemon.fsutil.temp_path` names)."""
    try:
        names = [p for p in out.parent.iterdir() if temp_target(p.name) == out.name]
    except OSError as exc:
        log.warning("cannot list %s: %s", out.parent, exc)
        return
    for name in names:
        try:
            name.unlink()
        except OSError as exc:
            log.warning("cannot remove %s: %s", name, exc)
