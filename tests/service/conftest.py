"""Fixtures of the service tests: a daemon on a thread over pipes, with a fake engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_checks import MakeDaemon
from daemon_doubles import FakeEngine, InProcessDaemon

from lofi_daemon.service.cache import TrackCache


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[MakeDaemon]:
    """Start in-process daemons (``make(engine, max_bytes=..., **DaemonServer kwargs)``); all are
    stopped, and their engines resumed, at the end of the test."""
    started: list[tuple[InProcessDaemon, FakeEngine]] = []

    def make(
        engine: FakeEngine | None = None, *, max_bytes: int = 10**9, **kwargs: Any
    ) -> InProcessDaemon:
        engine = engine or FakeEngine()
        cache = TrackCache(tmp_path / "cache", max_bytes=max_bytes)
        daemon = InProcessDaemon(engine, cache, **kwargs)
        started.append((daemon, engine))
        return daemon

    yield make
    for daemon, engine in started:
        engine.resume.set()
        daemon.stop()
