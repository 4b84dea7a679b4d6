"""Progress of one generation: a fixed number of work units, reported with phase and ETA.

The engine counts every unit of work up front (two encoder runs, one unit per denoising loop entry,
one per decode window, one for the file), so the percentage never goes back and reaches 100 only
when the file is in place. Cancellation is checked at the same points.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from lofi_daemon.errors import CancelledError

Phase = Literal["encode", "diffusion", "decode"]


@dataclass(frozen=True)
class Progress:
    phase: Phase
    step: int
    total: int
    percent: float
    eta_sec: float | None


ProgressCallback = Callable[[Progress], None]


class ProgressTracker:
    """Counts work units, calls ``callback`` after each and raises when ``cancel`` is set."""

    def __init__(
        self, total: int, callback: ProgressCallback | None, cancel: threading.Event | None
    ) -> None:
        self.total = total
        self.done = 0
        self.callback = callback
        self.cancel = cancel
        self.started = time.monotonic()

    def check_cancel(self) -> None:
        """Raise :class:`CancelledError` when cancellation was requested."""
        if self.cancel is not None and self.cancel.is_set():
            raise CancelledError()

    def advance(self, phase: Phase, units: int = 1) -> None:
        self.done = min(self.total, self.done + units)
        if self.callback is None:
            return
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done) if self.done else None
        self.callback(Progress(phase, self.done, self.total, 100.0 * self.done / self.total, eta))


@dataclass
class StageTimer:
    """Wall time per stage, summed over repeated entries."""

    timings: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, started: float) -> None:
        self.timings[name] = self.timings.get(name, 0.0) + time.monotonic() - started
