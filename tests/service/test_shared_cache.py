"""Two daemons sharing one cache folder (issue 10, item 19): a job re-checks the cache when it
starts, and a cancelled or failed job removes only the files it created, never a track another
daemon finished meanwhile."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_doubles import FakeEngine
from hostile_cache import add_track, id_for, params_for

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.service.cache import TrackCache
from lofi_daemon.service.jobs import Job, JobRunner

TERMINAL = ("generation_complete", "generation_error", "generation_cancelled")


class Events:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.items: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, method: str, params: dict[str, Any]) -> None:
        with self.cond:
            self.items.append((method, params))
            self.cond.notify_all()

    def terminal(self, track_id: str, timeout: float = 15.0) -> tuple[str, dict[str, Any]]:
        """The terminal notification of ``track_id`` (a hang guard, not a timing check)."""
        with self.cond:
            assert self.cond.wait_for(lambda: self.of(track_id, TERMINAL), timeout)
            (found,) = self.of(track_id, TERMINAL)
            return found

    def of(self, track_id: str, methods: tuple[str, ...]) -> list[tuple[str, dict[str, Any]]]:
        return [(m, p) for m, p in self.items if p["track_id"] == track_id and m in methods]


class DaemonB:
    """The generation side of a second daemon whose cache folder daemon A also uses."""

    def __init__(self, root: Path) -> None:
        self.engine = FakeEngine(pause_at=3)
        self.cache = TrackCache(root)
        self.events = Events()
        self.runner = JobRunner(self.engine, self.cache, self.events)
        self.runner.start()

    def job(self, seed: int) -> Job:
        params = params_for(seed)
        track_id = id_for(seed)
        return Job(track_id, params, self.cache.audio_path(track_id, params.format))

    def close(self) -> None:
        self.engine.resume.set()
        self.runner.close(cancel_running=True)
        assert self.runner.join(10)


@pytest.fixture
def daemon_b(tmp_path: Path) -> Iterator[DaemonB]:
    b = DaemonB(tmp_path / "cache")
    yield b
    b.close()


def test_cancelling_keeps_the_track_another_daemon_finished(
    daemon_b: DaemonB, tmp_path: Path
) -> None:
    job = daemon_b.job(seed=1)
    daemon_b.runner.submit(job)
    assert daemon_b.engine.paused.wait(10)
    cache_a = TrackCache(tmp_path / "cache")
    assert add_track(cache_a, seed=1) == job.track_id  # daemon A finishes the same track
    daemon_b.runner.cancel(job.track_id)
    daemon_b.engine.resume.set()
    assert daemon_b.events.terminal(job.track_id)[0] == "generation_cancelled"
    entry = cache_a.get(job.track_id)  # used to be deleted by B's discard
    assert entry is not None and entry.path.is_file()


def test_a_job_completes_from_the_cache_when_another_daemon_finished_it(
    daemon_b: DaemonB, tmp_path: Path
) -> None:
    running, queued = daemon_b.job(seed=1), daemon_b.job(seed=2)
    daemon_b.runner.submit(running)
    assert daemon_b.engine.paused.wait(10)
    daemon_b.runner.submit(queued)
    add_track(TrackCache(tmp_path / "cache"), seed=2)  # daemon A finishes the queued track
    daemon_b.engine.resume.set()
    method, params = daemon_b.events.terminal(queued.track_id)
    assert method == "generation_complete" and params["cached"] is True
    assert daemon_b.events.of(queued.track_id, ("generation_start",)) == []
    assert [p.seed for p in daemon_b.engine.calls] == [1]  # not generated again
    assert daemon_b.events.terminal(running.track_id)[0] == "generation_complete"


def test_a_failed_job_removes_only_the_files_it_created(
    daemon_b: DaemonB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise LofiError(errors.OUTPUT_WRITE_FAILED, "disk full")

    monkeypatch.setattr(daemon_b.cache, "add", refuse)
    notes = tmp_path / "cache" / f"{id_for(1)}-notes.md"
    notes.write_text("mine")
    daemon_b.engine.resume.set()
    job = daemon_b.job(seed=1)
    daemon_b.runner.submit(job)
    assert daemon_b.events.terminal(job.track_id)[0] == "generation_error"
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [notes.name]
