"""The radio service: at most one station at a time inside the daemon, and what the ``radio.*``
methods do to it (:mod:`lofi_daemon.service.radio_handlers` checks their params).

A station (:class:`~lofi_daemon.service.radio_station.Station`) runs its own ticker thread and
submits its generations to the daemon's queue at "background" priority. This class starts,
replaces and stops it, pins its segments (like), starts saving them (save; the file is written
by :mod:`lofi_daemon.service.radio_save` off the request thread) and reports its state.
Notifications go out through ``emit`` (the server's writer), like the queue's. The station's
modules load numpy, so they are imported when a station starts (``serve`` starts light).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.service.cache import TrackCache
from lofi_daemon.service.job_types import Emit, GenerationEngine
from lofi_daemon.service.jobs import JobRunner
from lofi_daemon.service.radio_payloads import stopped_payload
from lofi_daemon.service.radio_save import RadioSaver

if TYPE_CHECKING:
    from lofi_daemon.radio.config import StationConfig
    from lofi_daemon.service.radio_station import Station

log = logging.getLogger(__name__)

APP_MUSIC_FOLDER: Final = "lofi.nvim"
STOP_REASONS: Final = ("stopped", "replaced", "failed", "shutdown")


def default_music_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_music_dir()) / APP_MUSIC_FOLDER


class RadioService:
    """The daemon's radio (see the module docstring).

    Args:
        runner, cache: the generation queue and the track cache.
        emit: sends a notification.
        music_dir: where ``save`` writes without a path (created on first use).
        clock: monotonic clock.
    """

    def __init__(
        self,
        runner: JobRunner,
        cache: TrackCache,
        emit: Emit,
        *,
        music_dir: Callable[[], Path] = default_music_dir,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._runner = runner
        self._cache = cache
        self._emit = emit
        self._music_dir = music_dir
        self._clock = clock
        self._lock = threading.RLock()
        self._station: Station | None = None
        self.saver = RadioSaver(cache, emit)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(
        self, config: StationConfig, *, model_version: str, engine: GenerationEngine | None
    ) -> tuple[Station, Callable[[], None]]:
        """Replace the running station (its ``radio_stopped`` "replaced" is sent now) by a new
        one; returns it and what starts its ticker once the reply is out."""
        from lofi_daemon.service.radio_station import Station

        with self._lock:
            self.stop("replaced")
            station = Station(
                config,
                secrets.token_hex(6),
                runner=self._runner,
                cache=self._cache,
                emit=self._emit,
                model_version=model_version,
                engine=engine,
                on_failed=self._failed,
                clock=self._clock,
            )
            self._station = station
        log.info("radio %s: started (%r)", station.station_id, config.prompt)
        return station, station.start

    def stop(self, reason: str, message: str | None = None, *, announce: bool = True) -> Any:
        """Stop the station (None when there is none); sends ``radio_stopped`` unless
        ``announce`` is False (then the caller sends :meth:`stopped_payload` itself)."""
        with self._lock:
            station, self._station = self._station, None
        if station is None:
            return None
        station.stop()
        log.info("radio %s: stopped (%s)", station.station_id, reason)
        if announce:
            self._emit("radio_stopped", stopped_payload(station.station_id, reason, message))
        return station

    def _failed(self, station: Station, message: str) -> None:
        with self._lock:
            if self._station is not station:
                return
        self.stop("failed", message)

    @property
    def station(self) -> Station | None:
        with self._lock:
            return self._station

    def require(self, station_id: object = None) -> Station:
        """The running station (with ``station_id`` when given), else RADIO_NOT_ACTIVE."""
        station = self.station
        if station is None:
            raise LofiError(errors.RADIO_NOT_ACTIVE, "no radio station is running")
        if station_id is not None and station_id != station.station_id:
            raise LofiError(
                errors.RADIO_NOT_ACTIVE,
                f"station {str(station_id)[:40]!r} is not running (the running one is "
                f"{station.station_id})",
            )
        return station

    # -- requests ----------------------------------------------------------------------------

    def position(self, station_id: object, index: Any, position_sec: Any, paused: Any) -> float:
        station = self.require(station_id)
        with station.locked():
            now = self._clock()
            station.plan.playhead(index, position_sec, paused, now)
            ahead = station.plan.buffer_ahead_sec(now)
        station.wake()
        return round(ahead, 3)

    def like(self, index: int | None, everything: bool) -> dict[str, Any]:
        """Pin the playing segment, segment ``index`` or every segment."""
        station = self.require()
        with station.locked():
            segments = list(station.plan.segments)
            playing = station.plan.playing_index(self._clock())
        if everything:
            chosen = segments
        else:
            if index is None:
                index = playing if playing is not None else len(segments) - 1
            if not 0 <= index < len(segments):
                raise LofiError(
                    errors.INVALID_PARAMETER,
                    f"index {index} is not a segment of this station (it has {len(segments)})",
                )
            chosen = [segments[index]]
        pinned = [s.track_id for s in chosen if self._cache.pin(s.track_id) is not None]
        missing = [s.track_id for s in chosen if s.track_id not in pinned]
        if chosen and not pinned:
            raise LofiError(
                errors.TRACK_NOT_FOUND, f"segment(s) {', '.join(missing)} left the cache"
            )
        return {"pinned": pinned, "missing": missing}

    def save(self, path: Path | None) -> tuple[dict[str, Any], Callable[[], None]]:
        """Start writing the station so far as one file (the exact concatenation of its
        segments; :mod:`lofi_daemon.service.radio_save`): returns the reply and what starts the
        writer once the reply is out. ``radio_saved`` or ``radio_save_failed`` follows."""
        station = self.require()
        with station.locked():
            segments = list(station.plan.segments)
        if path is None:
            folder = self._music_dir()
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LofiError(
                    errors.OUTPUT_WRITE_FAILED, f"cannot create {folder}: {exc}"
                ) from exc
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            path = folder / f"radio-{station.station_id}-{stamp}.flac"
        job, launch = self.saver.begin(station.station_id, segments, path)
        return job.reply(), launch

    def wait_for_save(self, timeout: float, interrupted: Callable[[], bool]) -> bool:
        """The daemon's shutdown: let a running save finish, for at most ``timeout`` s or until
        ``interrupted()`` (then it is given up and leaves no file)."""
        return self.saver.wait(timeout, interrupted=interrupted)

    def status(self) -> dict[str, Any]:
        station = self.station
        if station is None:
            return {"status": "idle"}
        with station.locked():
            return station.plan.snapshot(self._clock())
