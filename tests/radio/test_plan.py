"""StationPlan, the station's pure state machine, driven with fake ``now`` values: the jobs it
asks for, the buffer rule, the playhead model (pause, skip, the end of the timeline), the
starvation episodes, the failure count and the status snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.radio.config import StationConfig
from lofi_daemon.radio.plan import FILL_RETRY_SEC, MAX_FAILURES, SegmentJob, StationPlan
from lofi_daemon.radio.prompts import prompt_for, segment_seeds

SEG = 10.0  # segment_sec of the test stations


def make(now: float = 0.0, **params: Any) -> StationPlan:
    settings = {"prompt": "lofi", "segment_sec": SEG, "context_sec": 6, "ahead": 2, **params}
    config = StationConfig.from_params(settings, seed=params.get("seed", 5))
    return StationPlan(config, "st1", now=now)


def finish(plan: StationPlan, now: float, wall: float = 1.0, duration: float = SEG) -> SegmentJob:
    """Issue the next job at ``now`` and finish it ``wall`` seconds later."""
    job = plan.next_job(now)
    assert job is not None
    plan.job_started(job, now)
    plan.job_done(
        job,
        track_id=f"t{job.gen_index}",
        path=Path(f"/cache/t{job.gen_index}.flac"),
        duration_sec=duration,
        now=now + wall,
    )
    return job


def fill_up(plan: StationPlan, now: float) -> int:
    """Generate until the plan stops asking; the number of jobs."""
    count = 0
    while plan.next_job(now) is not None:
        job = plan.in_flight
        assert job is not None
        plan.job_done(job, track_id=f"t{job.gen_index}", path=Path("/c"), duration_sec=SEG, now=now)
        count += 1
    return count


def second_in_flight() -> tuple[StationPlan, SegmentJob]:
    """Playback started on the first segment at 1 s; the second one is generating (slowly)."""
    plan = make()
    finish(plan, 0.0)
    plan.playhead(0, 0.0, False, 1.0)
    job = plan.next_job(1.0)
    assert job is not None
    plan.job_started(job, 1.0)
    return plan, job


def test_first_job_is_text2music() -> None:
    plan = make(infer_steps=4, retake_variance=0.8)
    job = plan.next_job(0.0)
    assert job is not None and plan.in_flight == job
    assert job.gen_index == 0 and job.source_track_id is None and job.context_frames == 0
    params = job.params
    seed, _ = segment_seeds(5, 0)
    assert params.task == "text2music"
    assert params.duration_sec == SEG
    assert params.seed == seed and params.retake_seed is None
    assert params.retake_variance is None  # text2music takes no retake_variance
    assert (params.format, params.wav_subtype) == ("wav", "float")
    assert params.infer_steps == 4
    assert params.prompt == "lofi"
    params.validate()
    assert plan.next_job(0.0) is None  # one in flight


def test_second_job_extends_the_first() -> None:
    plan = make(infer_steps=4, retake_variance=0.8, variation=1)
    finish(plan, 0.0)
    job = plan.next_job(1.0)
    assert job is not None
    params = job.params
    seed, retake_seed = segment_seeds(5, 1)
    assert job.gen_index == 1
    assert job.source_track_id == "t0"
    assert job.context_frames == plan.config.context_frames > 0
    assert params.task == "extend" and params.extend_right == SEG and params.extend_left == 0
    assert (params.seed, params.retake_seed) == (seed, retake_seed)
    assert params.retake_variance == 0.8 and params.infer_steps == 4
    assert (params.format, params.wav_subtype) == ("wav", "float")
    assert params.prompt == prompt_for("lofi", 5, 1, 1) != "lofi"
    params.validate()


def test_extend_takes_the_task_default_variance() -> None:
    plan = make()
    finish(plan, 0.0)
    job = plan.next_job(1.0)
    assert job is not None and job.params.retake_variance == 1.0


def test_the_source_is_the_last_generated_segment_not_a_fill() -> None:
    plan, job = second_in_flight()
    plan.add_fill(track_id="lib", path=Path("/lib.flac"), duration_sec=8.0, now=2.0)
    plan.job_done(job, track_id="t1", path=Path("/t1"), duration_sec=SEG, now=3.0)
    nxt = plan.next_job(3.0)
    assert nxt is not None and nxt.source_track_id == "t1" and nxt.gen_index == 2


def test_buffer_rule_stops_and_resumes() -> None:
    plan = make()
    # before playback the position stays 0: (ahead + 1) segments, then nothing
    assert fill_up(plan, 0.0) == 3
    assert plan.buffer_ahead_sec(100.0) == 3 * SEG
    assert plan.next_job(100.0) is None
    plan.playhead(0, 0.0, False, 100.0)
    assert plan.next_job(100.0) is None  # exactly (ahead + 1) segments ahead
    # as soon as the playhead moves the buffer is short again
    job = plan.next_job(100.5)
    assert job is not None and job.gen_index == 3
    assert plan.next_job(101.0) is None  # in flight
    plan.job_done(job, track_id="t3", path=Path("/t3"), duration_sec=SEG, now=101.0)
    assert plan.buffer_ahead_sec(101.0) == pytest.approx(4 * SEG - 1.0)
    assert plan.next_job(101.0) is None  # stops again while (ahead + 1) segments are ahead
    assert plan.next_job(100.0 + SEG + 1.5) is not None


def test_ahead_sets_the_target() -> None:
    plan = make(ahead=1)
    assert fill_up(plan, 0.0) == 2


def test_position_model() -> None:
    plan = make()
    fill_up(plan, 0.0)
    assert plan.position_sec(50.0) == 0.0 and plan.playing_index(50.0) is None
    plan.playhead(1, 2.0, False, 10.0)
    assert plan.position_sec(10.0) == pytest.approx(SEG + 2.0)
    assert plan.position_sec(13.5) == pytest.approx(SEG + 5.5)
    assert plan.playing_index(13.5) == 1
    assert plan.playing_index(18.0) == 2  # crossed into the next file
    assert plan.position_sec(1000.0) == 3 * SEG  # never past the end
    assert plan.playing_index(1000.0) == 2
    assert plan.buffer_ahead_sec(1000.0) == 0.0
    # a position past the file's end is clamped to the file
    plan.playhead(0, 99.0, False, 20.0)
    assert plan.position_sec(20.0) == SEG


def test_pause_freezes_the_position() -> None:
    plan = make()
    fill_up(plan, 0.0)
    plan.playhead(0, 3.0, True, 5.0)
    assert plan.position_sec(5.0) == plan.position_sec(500.0) == 3.0
    assert plan.buffer_ahead_sec(500.0) == 3 * SEG - 3.0
    plan.playhead(0, 3.0, False, 500.0)  # resume
    assert plan.position_sec(502.0) == pytest.approx(5.0)


def test_skip_moves_the_buffer() -> None:
    plan = make()
    fill_up(plan, 0.0)
    plan.playhead(0, 0.0, False, 1.0)
    assert plan.next_job(1.0) is None
    plan.playhead(1, 0.0, False, 1.5)  # skip: the next segment from its start
    assert plan.playing_index(1.5) == 1
    assert plan.buffer_ahead_sec(1.5) == 2 * SEG
    assert plan.next_job(1.5) is not None


def test_append_after_running_dry_resumes_at_the_new_file() -> None:
    plan, job = second_in_flight()
    assert plan.position_sec(50.0) == SEG  # waits at the end
    segment = plan.job_done(job, track_id="t1", path=Path("/t1"), duration_sec=SEG, now=50.0)
    assert plan.position_sec(50.0) == segment.start_sec == SEG
    assert plan.position_sec(52.0) == pytest.approx(SEG + 2.0)


def test_bad_playhead_reports() -> None:
    plan = make()
    finish(plan, 0.0)
    for args in [(1, 0.0, False), (-1, 0.0, False), (True, 0.0, False), (0, -1.0, False),
                 (0, float("nan"), False), (0, "1", False), (0, 0.0, 1)]:  # fmt: skip
        with pytest.raises(LofiError) as info:
            plan.playhead(*args, 0.0)  # type: ignore[arg-type]
        assert info.value.code == errors.INVALID_PARAMS


def test_no_starvation_before_playback() -> None:
    plan = make()
    plan.next_job(0.0)
    assert plan.buffer_ahead_sec(30.0) == 0.0
    assert not plan.fill_due(30.0)  # in flight, empty buffer, but nothing plays yet


def test_starvation_episode() -> None:
    plan, job = second_in_flight()
    low = plan.low_water_sec
    assert low == max(3.0, 2 * plan.config.join.hold_sec)
    t_low = 1.0 + SEG - low
    assert not plan.fill_due(t_low - 0.1)
    assert plan.fill_due(t_low + 0.1)
    assert not plan.starved
    first, starts = plan.add_fill(
        track_id="lib1", path=Path("/lib1.flac"), duration_sec=8.0, now=t_low + 0.1, prompt="jazz"
    )
    assert starts and plan.starved
    assert (first.kind, first.gen_index, first.index, first.start_sec) == ("library", None, 1, SEG)
    assert first.to_json() == {
        "index": 1,
        "kind": "library",
        "track_id": "lib1",
        "path": "/lib1.flac",
        "duration_sec": 8.0,
        "start_sec": SEG,
        "prompt": "jazz",
    }
    assert not plan.fill_due(t_low + 0.2)  # the fill refilled the buffer
    t_low2 = t_low + 8.0 + 0.2
    assert plan.fill_due(t_low2)
    _, starts = plan.add_fill(track_id="lib2", path=Path("/l2"), duration_sec=8.0, now=t_low2)
    assert not starts  # once per episode
    assert plan.snapshot(t_low2)["starved"] is True
    # recovery: the generated segment ends the episode
    done = plan.job_done(job, track_id="t1", path=Path("/t1"), duration_sec=SEG, now=t_low2 + 1)
    assert done.kind == "generated" and done.index == 3 and done.gen_index == 1
    assert not plan.starved
    assert not plan.fill_due(t_low2 + 1)  # nothing in flight
    # a new shortage is a new episode
    later = plan.next_job(t_low2 + 1)
    assert later is not None
    t_dry = t_low2 + 1 + plan.buffer_ahead_sec(t_low2 + 1)
    assert plan.fill_due(t_dry - 0.5)
    _, starts = plan.add_fill(track_id="lib3", path=Path("/l3"), duration_sec=8.0, now=t_dry)
    assert starts


def test_fill_unavailable_backs_off() -> None:
    plan, _ = second_in_flight()
    t = 1.0 + SEG - 1.0
    assert plan.fill_due(t)
    assert plan.fill_unavailable(t) is True and plan.starved
    assert not plan.fill_due(t + FILL_RETRY_SEC - 0.01)
    assert plan.fill_due(t + FILL_RETRY_SEC)
    assert plan.fill_unavailable(t + FILL_RETRY_SEC) is False  # same episode
    _, starts = plan.add_fill(
        track_id="lib", path=Path("/l"), duration_sec=8.0, now=t + FILL_RETRY_SEC + 1
    )
    assert not starts


def test_paused_playback_does_not_starve() -> None:
    plan, _ = second_in_flight()
    plan.playhead(0, 1.0, True, 2.0)
    assert not plan.fill_due(1000.0)


def test_failures_in_a_row_stop_the_station() -> None:
    plan = make()
    for attempt in range(MAX_FAILURES - 1):
        job = plan.next_job(float(attempt))
        assert job is not None and job.gen_index == 0  # retried with the same seeds
        assert plan.job_failed(job, float(attempt)) is False
    finish(plan, 10.0)  # a success resets the count
    for attempt in range(MAX_FAILURES):
        job = plan.next_job(20.0)
        assert job is not None and job.gen_index == 1
        stop = plan.job_failed(job, 20.0)
        assert stop is (attempt == MAX_FAILURES - 1)
    assert plan.stopped and plan.next_job(20.0) is None


def test_stale_jobs_are_refused() -> None:
    plan = make()
    job = plan.next_job(0.0)
    assert job is not None
    plan.job_cancelled(job)
    assert plan.in_flight is None
    with pytest.raises(ValueError, match="not the station's job"):
        plan.job_done(job, track_id="t", path=Path("/t"), duration_sec=SEG, now=1.0)
    plan.stop()
    assert plan.stopped and plan.next_job(1.0) is None


def test_rtf_is_the_mean_of_the_last_three() -> None:
    plan = make(ahead=4)
    assert plan.rtf is None
    now = 0.0
    for wall in (1.0, 2.0, 4.0, 5.0):  # rtf 10, 5, 2.5, 2
        finish(plan, now, wall=wall)
        now += wall
    assert plan.rtf == pytest.approx((5 + 2.5 + 2) / 3)
    # queue time before job_started does not count
    job = plan.next_job(now)
    assert job is not None
    plan.job_started(job, now + 100.0)
    plan.job_done(job, track_id="x", path=Path("/x"), duration_sec=SEG, now=now + 102.0)
    assert plan.rtf == pytest.approx((2.5 + 2 + 5) / 3)


def test_snapshot() -> None:
    plan = make(variation=1)
    empty = plan.snapshot(0.0)
    assert empty["playing_index"] is None and empty["segments"] == 0
    assert empty["prompt"] == "lofi" and empty["rtf"] is None
    finish(plan, 0.0, wall=3.0)
    finish(plan, 3.0, wall=3.0)
    plan.playhead(1, 1.0, False, 6.0)
    plan.next_job(6.0)
    snap = plan.snapshot(6.0 + 1 / 3)
    assert snap == {
        "status": "playing",
        "station_id": "st1",
        "prompt": prompt_for("lofi", 5, 1, 1),
        "config": plan.config.to_json(),
        "segments": 2,
        "playing_index": 1,
        "position_sec": round(SEG + 1 + 1 / 3, 3),
        "buffer_ahead_sec": round(SEG - 1 - 1 / 3, 3),
        "generating": True,
        "starved": False,
        "rtf": round(SEG / 3, 3),
    }
