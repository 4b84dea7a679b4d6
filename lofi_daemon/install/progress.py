"""How a running installation talks to its caller: progress callbacks, sizes, cancellation."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final

from lofi_daemon.errors import CancelledError

#: ``progress(phase, done, total, percent, message)``; phase is ``download`` (bytes),
#: ``export`` (graphs) or ``verify`` (files).
ProgressFn = Callable[[str, int, int, float, str], None]

CANCELLED_MESSAGE: Final = "setup cancelled; run it again to resume"


class Reporter:
    """Forward to the callback; percent never goes back within a phase, repeats are dropped."""

    def __init__(self, callback: ProgressFn | None) -> None:
        self._callback = callback
        self._last: dict[str, tuple[int, float, str]] = {}

    def __call__(self, phase: str, done: int, total: int, message: str) -> None:
        percent = 100.0 if total <= 0 else min(100.0, 100.0 * done / total)
        last = self._last.get(phase)
        if last is not None:
            done, percent = max(done, last[0]), max(percent, last[1])
            if (done, percent, message) == last:
                return
        self._last[phase] = (done, percent, message)
        if self._callback is not None:
            self._callback(phase, done, total, round(percent, 2), message)


def check_cancel(cancel: threading.Event) -> None:
    """Raise :class:`CancelledError` once ``cancel`` is set."""
    if cancel.is_set():
        raise CancelledError(CANCELLED_MESSAGE)


def format_bytes(count: float) -> str:
    """``8.26 GB``-style sizes (decimal units, as download sizes are usually quoted)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.2f} {unit}"
        count /= 1000
    return f"{count:.2f} GB"
