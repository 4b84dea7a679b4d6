"""The generation queue: order, limits, cancellation, failures and the progress it sends."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from daemon_doubles import FakeEngine

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.service.cache import TrackCache
from lofi_daemon.service.jobs import Job, JobRunner
from lofi_daemon.service.track_ids import track_id_for


class Events:
    """Collects notifications and lets tests wait for them."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []
        self._cond = threading.Condition()

    def __call__(self, method: str, params: dict[str, Any]) -> None:
        with self._cond:
            self.items.append((method, params))
            self._cond.notify_all()

    def wait(self, method: str, track_id: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for name, params in self.items:
                    if name == method and params["track_id"] == track_id:
                        return params
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no {method} for {track_id}: {self.items}"
                self._cond.wait(remaining)

    def of(self, track_id: str) -> list[tuple[str, dict[str, Any]]]:
        with self._cond:
            return [(m, p) for m, p in self.items if p["track_id"] == track_id]


class Harness:
    def __init__(self, tmp_path: Path, engine: FakeEngine, **kwargs: Any) -> None:
        self.engine = engine
        self.cache = TrackCache(tmp_path / "cache")
        self.events = Events()
        self.runner = JobRunner(engine, self.cache, self.events, **kwargs)
        self.runner.start()
        self._seed = 0

    def job(self, priority: str = "normal", **overrides: Any) -> Job:
        self._seed += 1
        fields = {"prompt": "rain", "duration_sec": 0.2, "seed": self._seed, "infer_steps": 8}
        params = GenerationParams(**{**fields, **overrides})
        track_id = track_id_for(params, model_version="v", backend="ace-step")
        return Job(
            track_id=track_id,
            params=params,
            out_path=self.cache.audio_path(track_id, params.format),
            priority=priority,  # type: ignore[arg-type]
        )

    def close(self) -> None:
        self.engine.resume.set()
        self.runner.close(cancel_running=True)
        assert self.runner.join(10)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path, FakeEngine())
    yield h
    h.close()


@pytest.fixture
def paused(tmp_path: Path) -> Iterator[Harness]:
    """The first generation stops after 3 work units until ``engine.resume`` is set."""
    h = Harness(tmp_path, FakeEngine(pause_at=3), limit=3)
    yield h
    h.close()


def test_a_job_runs_to_a_cached_file(harness: Harness) -> None:
    job = harness.job()
    assert harness.runner.submit(job) == 0
    done = harness.events.wait("generation_complete", job.track_id)
    methods = [m for m, _ in harness.events.of(job.track_id)]
    assert methods[0] == "generation_start" and methods[-1] == "generation_complete"
    assert set(methods[1:-1]) == {"generation_progress"}
    info = sf.info(done["path"])
    assert (info.samplerate, info.channels) == (48000, 2)
    assert done["seed"] == job.params.seed and done["cached"] is False
    assert done["duration_sec"] == pytest.approx(0.2)
    assert harness.cache.get(job.track_id) is not None


def test_progress_is_monotonic_and_ends_at_100_after_the_file_exists(harness: Harness) -> None:
    job = harness.job(infer_steps=60)
    seen_file: list[bool] = []
    original = harness.events.__call__

    def spy(method: str, params: dict[str, Any]) -> None:
        if method == "generation_progress" and params["percent"] == 100.0:
            seen_file.append(job.out_path.exists())
        original(method, params)

    harness.runner._emit = spy  # observe the moment 100 % is sent
    harness.runner.submit(job)
    harness.events.wait("generation_complete", job.track_id)
    progress = [p for m, p in harness.events.of(job.track_id) if m == "generation_progress"]
    percents = [p["percent"] for p in progress]
    assert percents == sorted(percents) and len(set(percents)) == len(percents)
    assert percents[-1] == 100.0 and percents.count(100.0) == 1
    assert seen_file == [True]
    assert progress[-1]["phase"] == "decode" and progress[-1]["step"] == progress[-1]["total_steps"]
    # throttled: 70 work units, but updates only every >= 5 % (or 1 s)
    assert 2 <= len(progress) <= 21
    assert all(b - a >= 5 for a, b in itertools.pairwise(percents[:-1]))  # fast: no 1 s rule


def test_held_job_waits_for_release(harness: Harness) -> None:
    job = harness.job()
    harness.runner.submit(job, hold=True)
    time.sleep(0.2)
    assert harness.engine.calls == []
    harness.runner.release(job.track_id)
    harness.events.wait("generation_complete", job.track_id)


def test_queue_limit_counts_the_running_job(paused: Harness) -> None:
    first, second, third, fourth = (paused.job() for _ in range(4))
    assert paused.runner.submit(first) == 0
    assert paused.engine.paused.wait(5)
    assert paused.runner.submit(second) == 1
    assert paused.runner.submit(third) == 2
    with pytest.raises(LofiError) as info:
        paused.runner.submit(fourth)
    assert info.value.code == errors.QUEUE_FULL


def test_high_priority_goes_first_in_fifo_order(paused: Harness) -> None:
    paused.runner.limit = 10
    running = paused.job()
    paused.runner.submit(running)
    assert paused.engine.paused.wait(5)
    normal = paused.job()
    high_a, high_b = paused.job("high"), paused.job("high")
    assert paused.runner.submit(normal) == 1
    assert paused.runner.submit(high_a) == 1
    assert paused.runner.submit(high_b) == 2
    snapshot = paused.runner.snapshot()
    assert snapshot["running"]["track_id"] == running.track_id
    assert [q["track_id"] for q in snapshot["queue"]] == [
        high_a.track_id,
        high_b.track_id,
        normal.track_id,
    ]
    assert [q["position"] for q in snapshot["queue"]] == [1, 2, 3]
    paused.engine.resume.set()
    paused.events.wait("generation_complete", normal.track_id)
    order = [p.seed for p in paused.engine.calls]
    assert order == [s.params.seed for s in (running, high_a, high_b, normal)]


def test_cancel_queued_job_never_runs(paused: Harness) -> None:
    running, queued = paused.job(), paused.job()
    paused.runner.submit(running)
    assert paused.engine.paused.wait(5)
    paused.runner.submit(queued)
    assert paused.runner.cancel(queued.track_id).status == "cancelled"
    assert paused.runner.position(queued.track_id) is None
    paused.engine.resume.set()
    paused.events.wait("generation_complete", running.track_id)
    assert [p.seed for p in paused.engine.calls] == [running.params.seed]


def test_cancel_running_job_stops_at_the_next_unit_and_leaves_no_file(paused: Harness) -> None:
    job = paused.job()
    paused.runner.submit(job)
    assert paused.engine.paused.wait(5)
    status = paused.runner.snapshot()["running"]
    assert status["track_id"] == job.track_id and status["step"] == 2
    outcome = paused.runner.cancel(job.track_id)
    assert (outcome.status, outcome.step) == ("cancelling", 2)
    paused.engine.resume.set()
    cancelled = paused.events.wait("generation_cancelled", job.track_id)
    assert paused.engine.cancel_requested_at == 3
    assert paused.engine.cancelled_at == 3  # the very next unit
    assert outcome.step is not None and cancelled["step"] == outcome.step + 1
    assert list(paused.cache.root.iterdir()) == []
    assert [m for m, _ in paused.events.of(job.track_id)][-1] == "generation_cancelled"


def test_a_job_being_cancelled_is_never_shared_with_a_new_request(paused: Harness) -> None:
    """Cancel the running track, then ask for it again before the engine stops: the retry is a
    fresh job that runs and completes, after the old one has ended (issue 10, item 18)."""
    old = paused.job()
    paused.runner.submit(old)
    assert paused.engine.paused.wait(5)
    assert paused.runner.cancel(old.track_id).status == "cancelling"
    # the handler's "already queued or running?" question: not this job any more
    assert paused.runner.position(old.track_id) is None
    retry = Job(track_id=old.track_id, params=old.params, out_path=old.out_path)
    assert paused.runner.submit(retry) == 1  # behind the one still stopping
    # the old job's end is out before submit returns, so before the retry's reply
    assert [m for m, _ in paused.events.of(old.track_id)][-1] == "generation_cancelled"
    assert paused.runner.position(retry.track_id) == 1
    paused.engine.resume.set()
    done = paused.events.wait("generation_complete", retry.track_id)
    methods = [m for m, _ in paused.events.of(old.track_id)]
    ends = [m for m in methods if m in ("generation_cancelled", "generation_complete")]
    assert ends == ["generation_cancelled", "generation_complete"]
    # nothing of the old job after its end: the retry's own start follows it
    assert methods[methods.index("generation_cancelled") + 1] == "generation_start"
    assert methods.count("generation_start") == 2
    assert paused.engine.cancelled_at == 3 and len(paused.engine.calls) == 2
    assert Path(done["path"]).is_file() and paused.cache.get(old.track_id) is not None


def test_a_superseded_job_no_longer_counts_or_cancels(tmp_path: Path) -> None:
    h = Harness(tmp_path, FakeEngine(pause_at=3), limit=1)
    try:
        old = h.job()
        h.runner.submit(old)
        assert h.engine.paused.wait(5)
        h.runner.cancel(old.track_id)
        retry = Job(track_id=old.track_id, params=old.params, out_path=old.out_path)
        h.runner.submit(retry)  # the old job has ended for the client: no QUEUE_FULL
        assert h.runner.cancel(retry.track_id).status == "cancelled"  # the retry, not the old
        with pytest.raises(LofiError) as info:
            h.runner.cancel(old.track_id)  # the old one's end is already announced
        assert info.value.code == errors.TRACK_NOT_FOUND
        h.engine.resume.set()
        h.runner.close(cancel_running=False)
        assert h.runner.join(10)
        assert [m for m, _ in h.events.of(old.track_id)].count("generation_cancelled") == 1
        assert len(h.engine.calls) == 1
    finally:
        h.close()


def test_cancel_unknown_track(harness: Harness) -> None:
    with pytest.raises(LofiError) as info:
        harness.runner.cancel("f" * 24)
    assert info.value.code == errors.TRACK_NOT_FOUND


@pytest.mark.parametrize("code", [errors.MODEL_LOAD_FAILED, errors.MODEL_INFERENCE_FAILED])
def test_engine_failure_is_reported_and_the_next_job_runs(tmp_path: Path, code: int) -> None:
    h = Harness(tmp_path, FakeEngine(fail_with=code))
    try:
        bad = h.job()
        h.runner.submit(bad)
        error = h.events.wait("generation_error", bad.track_id)
        assert error["code"] == code and error["name"] == errors.error_info(code).name
        assert error["message"] and error["remedy"]
        h.engine.fail_with = None
        good = h.job()
        h.runner.submit(good)
        h.events.wait("generation_complete", good.track_id)
    finally:
        h.close()


def test_unexpected_engine_exception_is_internal_error(harness: Harness) -> None:
    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("onnx exploded")

    harness.engine.generate = explode  # type: ignore[method-assign]
    job = harness.job()
    harness.runner.submit(job)
    error = harness.events.wait("generation_error", job.track_id)
    assert error["code"] == errors.INTERNAL_ERROR and "onnx exploded" in error["message"]


def test_close_finishes_the_running_job_and_cancels_the_queue(paused: Harness) -> None:
    running, queued = paused.job(), paused.job()
    paused.runner.submit(running)
    assert paused.engine.paused.wait(5)
    paused.runner.submit(queued)
    paused.runner.close(cancel_running=False)
    paused.events.wait("generation_cancelled", queued.track_id)
    paused.engine.resume.set()
    assert paused.runner.join(10)
    paused.events.wait("generation_complete", running.track_id)
    with pytest.raises(LofiError):
        paused.runner.submit(paused.job())


def test_close_can_cancel_the_running_job(paused: Harness) -> None:
    running = paused.job()
    paused.runner.submit(running)
    assert paused.engine.paused.wait(5)
    paused.runner.close(cancel_running=True)
    paused.engine.resume.set()
    assert paused.runner.join(10)
    paused.events.wait("generation_cancelled", running.track_id)
    assert list(paused.cache.root.iterdir()) == []


def test_submit_from_many_threads_respects_the_limit(tmp_path: Path) -> None:
    h = Harness(tmp_path, FakeEngine(pause_at=1), limit=4)
    try:
        jobs = [h.job() for _ in range(20)]
        accepted: list[str] = []
        lock = threading.Lock()

        def submit(job: Job) -> None:
            try:
                h.runner.submit(job)
            except LofiError:
                return
            with lock:
                accepted.append(job.track_id)

        threads = [threading.Thread(target=submit, args=(j,)) for j in jobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(accepted) == 4
    finally:
        h.close()


# -- background jobs (the radio station's) ----------------------------------------------------


def test_background_jobs_run_last_and_do_not_count_against_the_limit(paused: Harness) -> None:
    running = paused.job()
    paused.runner.submit(running)
    assert paused.engine.paused.wait(5)
    sink = Events()
    background = paused.job("background")
    background.notify = sink
    assert paused.runner.submit(background) == 1
    normal, high = paused.job(), paused.job("high")
    assert paused.runner.submit(normal) == 1
    assert paused.runner.submit(high) == 1
    assert [q["priority"] for q in paused.runner.snapshot()["queue"]] == [
        "high",
        "normal",
        "background",
    ]
    with pytest.raises(LofiError) as info:  # the limit (3) counts only the client's jobs
        paused.runner.submit(paused.job())
    assert info.value.code == errors.QUEUE_FULL
    with pytest.raises(LofiError) as refused:  # the owner alone cancels a station's job
        paused.runner.cancel(background.track_id)
    assert refused.value.code == errors.INVALID_PARAMETER
    paused.engine.resume.set()
    sink.wait("generation_complete", background.track_id)
    order = [p.seed for p in paused.engine.calls]
    assert order == [j.params.seed for j in (running, high, normal, background)]
    # Its notifications went to its sink only.
    assert paused.events.of(background.track_id) == []
    assert next(m for m, _ in sink.of(background.track_id)) == "generation_start"


def test_a_finish_hook_replaces_the_output_and_may_rekey_it(harness: Harness) -> None:
    from lofi_daemon.service.job_types import Finished

    job = harness.job()
    new_id = "a" * 24

    def finish(result: Any) -> Finished:
        target = harness.cache.audio_path(new_id, "flac")
        data, rate = sf.read(str(result.path))
        sf.write(str(target), data, rate, subtype="PCM_16")
        Path(result.path).unlink()
        return Finished(
            result.__class__(**{**vars(result), "path": target}), {"x": 1}, [target], new_id
        )

    job.finish = finish
    harness.runner.submit(job)
    done = harness.events.wait("generation_complete", new_id)
    entry = harness.cache.get(new_id)
    assert entry is not None and entry.metadata["x"] == 1 and done["format"] == "flac"
    assert not list(harness.cache.root.glob("*.wav"))


def test_a_failing_finish_hook_leaves_no_file(harness: Harness) -> None:
    job = harness.job()

    def finish(result: Any) -> Any:
        raise LofiError(errors.OUTPUT_WRITE_FAILED, "disk full")

    job.finish = finish
    harness.runner.submit(job)
    error = harness.events.wait("generation_error", job.track_id)
    assert error["code"] == errors.OUTPUT_WRITE_FAILED
    assert not any(harness.cache.root.iterdir())
