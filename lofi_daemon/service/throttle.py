"""Progress throttling: which progress updates become notifications.

The engine reports every work unit; a client needs far fewer updates. :class:`ProgressThrottle`
is the rule for ``generation_progress`` (one sequence of percentages per job). The setup's
per-phase rule (``PhaseThrottle``) lives beside the setup job for now.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

PROGRESS_INTERVAL_SEC: Final = 1.0
PROGRESS_STEP_PERCENT: Final = 5.0


@dataclass
class ProgressThrottle:
    """Lets a progress update through when it moved at least ``min_step_percent`` or at least
    ``min_interval_sec`` passed since the last one; never lets a lower percent through, and
    always lets 100 % through once."""

    min_interval_sec: float = PROGRESS_INTERVAL_SEC
    min_step_percent: float = PROGRESS_STEP_PERCENT
    clock: Callable[[], float] = time.monotonic
    last_percent: float = 0.0
    last_time: float | None = None

    def start(self) -> None:
        """Start the clock: the first update passes after the interval or the step."""
        self.last_time = self.clock()

    def admit(self, percent: float) -> bool:
        """True when the update at ``percent`` should be sent (and is then the new baseline)."""
        now = self.clock()
        if self.last_time is None:
            self.last_time = now
        if percent <= self.last_percent:
            return False
        if (
            percent >= 100.0
            or percent - self.last_percent >= self.min_step_percent
            or now - self.last_time >= self.min_interval_sec
        ):
            self.last_percent = percent
            self.last_time = now
            return True
        return False
