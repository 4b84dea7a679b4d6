"""Progress reports: percent never goes back within a phase, repeats are dropped; sizes."""

from __future__ import annotations

import threading

import pytest
from install.support import Event, recorder

from lofi_daemon.errors import CancelledError
from lofi_daemon.install.progress import Reporter, check_cancel, format_bytes


def test_the_reporter_never_goes_back_and_drops_repeats() -> None:
    events: list[Event] = []
    report = Reporter(recorder(events))
    report("download", 50, 100, "half")
    report("download", 50, 100, "half")  # a repeat
    report("download", 40, 100, "half")  # back: held at 50
    report("download", 40, 100, "other")
    report("export", 0, 0, "nothing to do")
    assert events == [
        ("download", 50, 100, 50.0, "half"),
        ("download", 50, 100, 50.0, "other"),
        ("export", 0, 0, 100.0, "nothing to do"),
    ]


def test_cancel() -> None:
    cancel = threading.Event()
    check_cancel(cancel)
    cancel.set()
    with pytest.raises(CancelledError):
        check_cancel(cancel)


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.00 kB"),
        (8_260_000_000, "8.26 GB"),
        (2e12, "2000.00 GB"),
    ],
)
def test_format_bytes(count: float, text: str) -> None:
    assert format_bytes(count) == text
