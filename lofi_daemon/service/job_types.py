"""The generation queue's records: one job, what a cancel did, and the engine a job runs on.

Split from :mod:`lofi_daemon.service.jobs` (the queue and its worker), which re-exports them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.service.sources import ResolvedSource

Priority = Literal["normal", "high", "background"]
PRIORITIES: Final = ("normal", "high")  # what a client's ``generate`` may ask for
#: "background" (the radio station's jobs) runs after every normal and high job; it never
#: preempts a running job and does not count against the queue limit.
QUEUE_PRIORITIES: Final = ("high", "normal", "background")
DEFAULT_QUEUE_LIMIT: Final = 5

Emit = Callable[[str, dict[str, Any]], Any]


@dataclass(frozen=True)
class Finished:
    """What a job's finish hook made of the engine's result: the result to cache (its ``path``
    and ``duration_sec`` replaced), extra sidecar fields, the files it wrote (removed if a later
    step fails; the hook cleans up itself when it raises) and the track id to cache it under
    (the job's, or a new one when what the file holds was decided only now)."""

    result: Any
    extra: dict[str, Any]
    files: list[Path]
    track_id: str


Finish = Callable[[Any], Finished]
CancelOutcome = Literal["cancelled", "cancelling"]


@dataclass(frozen=True)
class CancelResult:
    """What :meth:`JobRunner.cancel` did.

    ``status`` is "cancelled" when a queued job was removed, "cancelling" when the running job
    was told to stop; ``step`` is then the last step it had reported (read after the stop
    request, so the job ends at ``step + 1`` at the latest).
    """

    status: CancelOutcome
    step: int | None = None


class GenerationEngine(Protocol):
    """What the daemon needs from :class:`lofi_daemon.pipeline.engine.Engine`."""

    @property
    def model_version(self) -> str: ...

    def status(self) -> dict[str, Any]: ...

    def generate(
        self,
        params: GenerationParams,
        out_path: Path,
        *,
        progress: Callable[[Any], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Any: ...

    def close(self) -> None: ...


@dataclass
class Job:
    """One accepted generation request (its seed is always fixed)."""

    track_id: str
    params: GenerationParams
    out_path: Path
    priority: Priority = "normal"
    model_version: str | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    held: bool = False
    started_at: float | None = None
    progress: dict[str, Any] | None = None
    superseded: bool = False  # cancelling, and a new job took its track id (see JobRunner.submit)
    ended: bool = False  # its terminal notification is out: it sends nothing more
    source: ResolvedSource | None = None  # repaint, extend, edit, audio2audio
    engine: GenerationEngine | None = None  # a LoRA variant's engine (else the runner's)
    variant: str | None = None  # that variant's name
    backend: str | None = None  # the backend it runs on (None: the runner's)
    # The radio station's jobs (service/radio_station.py):
    notify: Emit | None = None  # where its notifications go instead of the client
    finish: Finish | None = None  # turns the engine's output into what the cache keeps
    accept_cached: Callable[[Any], bool] | None = None  # may a cache hit (TrackEntry) end it?

    def run(self, engine: GenerationEngine, progress: Callable[[Any], None]) -> Any:
        """Run the job on its own engine, else ``engine``; a source file is checked again first
        (it must still be the one its track id hashed)."""
        extra: dict[str, Any] = {}
        if self.source is not None:
            self.source.verify()
            extra["source"] = self.source.audio
        return (self.engine or engine).generate(
            self.params, self.out_path, progress=progress, cancel=self.cancel_event, **extra
        )


def is_for(job: Job | None, track_id: str, *, stopping: bool) -> bool:
    """``job`` is for ``track_id`` and has (``stopping``) or has not been told to stop."""
    return job is not None and job.track_id == track_id and job.cancel_event.is_set() == stopping
