"""The radio's segment files in the cache: segment ids, held tails (with their timing) on disk,
and the finish hook that renders an engine output into a segment file."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.radio.joins import (
    SAMPLE_RATE,
    JoinSettings,
    context_samples,
    frames_to_samples,
    read_at,
    tail_position,
)
from lofi_daemon.radio.render import read_wave, render_continuation, render_first
from lofi_daemon.service.cache import TrackCache
from lofi_daemon.service.radio_render import (
    HeldTail,
    RenderPlan,
    SegmentFinish,
    TailTiming,
    continuation_tail_at,
    read_tail,
    segment_key,
    tail_dtype,
    timing_of,
    write_tail,
)

JOIN = JoinSettings.for_crossfade(0.5)  # X = 24000, H = 72000
X, H = JOIN.crossfade_samples, JOIN.hold_samples
CONTEXT = 30  # latent frames
PARAMS = GenerationParams("lofi piano", duration_sec=5, seed=1, format="wav", wav_subtype="float")


def sine(times: np.ndarray) -> np.ndarray:
    """A band-limited stereo signal at ``times`` (samples at 48 kHz), float32 ``[n, 2]``."""
    left = 0.3 * np.sin(2 * np.pi * 3000.0 * times / SAMPLE_RATE) + 0.2 * np.sin(
        2 * np.pi * 17000.0 * times / SAMPLE_RATE + 1.0
    )
    return np.stack([left, 0.5 * left], axis=1).astype(np.float32)


def latents(frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 8, 16, frames), dtype=np.float32)


def timed(samples: np.ndarray, start_sec: float = 3.25, frames: int = 60) -> HeldTail:
    return HeldTail.of(samples, TailTiming(start_sec, frames))


# ---------------------------------------------------------------------------------------------
# segment_key
# ---------------------------------------------------------------------------------------------


def key(**changes: Any) -> str:
    base: dict[str, Any] = {
        "model_version": "v1",
        "latents": latents(CONTEXT),
        "tail": timed(sine(np.arange(X, dtype=np.float64))),
        "join": JOIN,
        "previous": "a" * 16,
        "variant": None,
    }
    params = changes.pop("params", PARAMS)
    track_id, source = segment_key(params, **{**base, **changes})
    assert source.kind == "radio" and source.ref == {**base, **changes}["previous"]
    return track_id


def test_segment_key_is_deterministic() -> None:
    assert key() == key()
    first, source = segment_key(
        PARAMS,
        model_version="v1",
        latents=None,
        tail=None,
        join=JOIN,
        previous=None,
        variant=None,
    )
    assert source.ref is None and len(source.sha256) == 64
    assert first == key(latents=None, tail=None, previous=None)


@pytest.mark.parametrize(
    "change",
    [
        {"params": dataclasses.replace(PARAMS, seed=2)},
        {"model_version": "v2"},
        {"latents": latents(CONTEXT, seed=1)},  # other source latents
        {"latents": latents(CONTEXT + 1)},
        {"tail": timed(sine(np.arange(X, dtype=np.float64)) * 0.5)},  # other tail samples
        {"tail": timed(sine(np.arange(X, dtype=np.float64)), start_sec=3.2500001)},  # timing
        {"tail": timed(sine(np.arange(X, dtype=np.float64)), frames=61)},
        {"tail": sine(np.arange(X, dtype=np.float64))},  # the same samples without timing
        {"tail": None},
        {"join": JoinSettings.for_crossfade(0.6)},
        {"previous": "b" * 16},
        {"variant": "jazz"},
    ],
)
def test_segment_key_hashes_everything_the_file_depends_on(change: dict[str, Any]) -> None:
    assert key(**change) != key()


# ---------------------------------------------------------------------------------------------
# Tails on disk
# ---------------------------------------------------------------------------------------------


def test_a_timed_tail_round_trips_with_its_exact_start(tmp_path: Path) -> None:
    samples = sine(np.arange(X, dtype=np.float64) + 0.37)
    start = (frames_to_samples(60) - H + 0.123456789012) / SAMPLE_RATE
    tail = timed(samples, start_sec=start, frames=60)
    path = tmp_path / "t.tail.npy"
    write_tail(path, tail)
    back = read_tail(path, JOIN)
    assert isinstance(back, HeldTail) and back.dtype == np.float32 and back.shape == (X, 2)
    np.testing.assert_array_equal(back, samples)
    assert back.timing == TailTiming(start, 60)  # the float64 start, bit for bit
    assert np.load(path, allow_pickle=False).dtype == tail_dtype(X)
    assert os.listdir(tmp_path) == ["t.tail.npy"]  # written atomically: no temp left


def test_a_plain_tail_round_trips_without_timing(tmp_path: Path) -> None:
    samples = sine(np.arange(X, dtype=np.float64))
    write_tail(tmp_path / "t.tail.npy", samples)
    back = read_tail(tmp_path / "t.tail.npy", JOIN)
    assert back is not None and not isinstance(back, HeldTail) and timing_of(back) is None
    np.testing.assert_array_equal(back, samples)


def test_arrays_derived_from_a_held_tail_carry_no_timing() -> None:
    tail = timed(np.zeros((X, 2), np.float32))
    assert timing_of(tail) == TailTiming(3.25, 60)
    for derived in (tail[:10], tail * 2.0, tail.astype(np.float64), tail.copy()):
        assert timing_of(derived) is None
    assert timing_of(np.ascontiguousarray(tail)) is None and timing_of(None) is None


def bad_record(**fields: Any) -> np.ndarray:
    record = np.zeros((), dtype=tail_dtype(X))
    record["start_sec"], record["frames"] = 1.0, 60
    for name, value in fields.items():
        record[name] = value
    return record


@pytest.mark.parametrize(
    "content",
    [
        np.zeros((X - 1, 2), np.float32),  # another crossfade length
        np.zeros((X, 2), np.float64),
        np.full((X, 2), np.nan, np.float32),
        bad_record(start_sec=np.nan),
        bad_record(start_sec=-1.0),
        bad_record(frames=0),
        bad_record(samples=np.full((X, 2), np.inf)),
        np.zeros((), dtype=tail_dtype(X - 1)),
    ],
)
def test_invalid_tail_files_read_as_none(tmp_path: Path, content: np.ndarray) -> None:
    path = tmp_path / "t.tail.npy"
    np.save(path, content, allow_pickle=False)
    assert read_tail(path, JOIN) is None


def test_missing_garbage_and_symlinked_tails_read_as_none(tmp_path: Path) -> None:
    assert read_tail(tmp_path / "missing.tail.npy", JOIN) is None
    (tmp_path / "junk.tail.npy").write_bytes(b"not numpy")
    assert read_tail(tmp_path / "junk.tail.npy", JOIN) is None
    write_tail(tmp_path / "real.tail.npy", timed(np.zeros((X, 2), np.float32)))
    (tmp_path / "link.tail.npy").symlink_to(tmp_path / "real.tail.npy")
    assert read_tail(tmp_path / "link.tail.npy", JOIN) is None


# ---------------------------------------------------------------------------------------------
# The finish hook
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """The parts of an engine result the finish hook uses."""

    path: Path
    duration_sec: float
    latents: np.ndarray


class Chain:
    """Engine outputs of one band-limited signal, decoded as the engine lays them out: a first
    segment of ``frames`` latent frames (output ``ceil``-resampled), then continuations of
    ``CONTEXT + new`` frames whose sample 0 is their first frame's exact time on the first
    output's clock (outputs floored), so each grid is a fraction of a sample off the last."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.origin, self.frames, self.count = folder, 0.0, 0, 0

    def output(self, new_frames: int) -> Result:
        if self.count:
            self.origin += frames_to_samples(self.frames - CONTEXT)
            self.frames = CONTEXT + new_frames
            n = int(frames_to_samples(self.frames))
        else:
            self.frames = new_frames
            n = math.ceil(frames_to_samples(self.frames))  # text2music: ceil
        path = self.folder / f"out-{self.count}.wav"
        sf.write(path, sine(self.origin + np.arange(n)), SAMPLE_RATE, subtype="FLOAT")
        self.count += 1
        return Result(path, n / SAMPLE_RATE, latents(self.frames))


def finish_hook(
    cache: TrackCache, plan: RenderPlan, tails: list[np.ndarray]
) -> Callable[[Any], Any]:
    return SegmentFinish(
        cache, JOIN, CONTEXT, lambda: plan, lambda track_id, tail: tails.append(tail)
    )


def test_the_finish_hook_renders_and_times_the_tails(tmp_path: Path) -> None:
    cache = TrackCache(tmp_path / "cache")
    chain = Chain(tmp_path)
    tails: list[np.ndarray] = []
    first = chain.output(53)
    wave0 = read_wave(first.path)
    done = finish_hook(cache, RenderPlan(None, {"kind": "generated"}, "a" * 16), tails)(first)
    assert done.track_id == "a" * 16 and done.extra == {"radio": {"kind": "generated"}}
    assert done.result.path == cache.audio_path("a" * 16, "flac") and not first.path.exists()
    assert done.files == [done.result.path, cache.tail_path("a" * 16)]
    assert done.result.duration_sec == (wave0.shape[0] - H) / SAMPLE_RATE
    assert timing_of(tails[0]) == TailTiming((wave0.shape[0] - H) / SAMPLE_RATE, 53)
    on_disk = read_tail(cache.tail_path("a" * 16), JOIN)
    assert on_disk is not None and timing_of(on_disk) == timing_of(tails[0])

    second = chain.output(36)
    wave1 = read_wave(second.path)
    at = tail_position(wave0.shape[0] - H, 53, CONTEXT)
    assert abs(at - round(at)) > 0.1  # a fraction of a sample off the output's grid
    plan = RenderPlan(tails[0], {"kind": "generated"}, "b" * 16)
    done = finish_hook(cache, plan, tails)(second)
    expected = render_continuation(tails[0], wave1, at, JOIN)
    file = read_wave(done.result.path)
    np.testing.assert_allclose(file, expected.audio, atol=1 / 32768)  # 16-bit FLAC
    timing = timing_of(tails[1])
    assert timing == TailTiming(expected.tail_at / SAMPLE_RATE, CONTEXT + 36)
    # Both files lie on the first output's grid: the second's tail is the signal at the whole
    # sample where the first file's samples plus the second's end.
    played = wave0.shape[0] - H + file.shape[0]
    np.testing.assert_allclose(tails[1], sine(played + np.arange(X)), atol=1e-6)


def test_after_a_plain_tail_the_continuation_starts_at_the_rounded_context_end(
    tmp_path: Path,
) -> None:
    """A library fill's tail (no timing) is other music: no sub-sample placement."""
    cache = TrackCache(tmp_path / "cache")
    chain = Chain(tmp_path)
    chain.output(53).path.unlink()
    fill_tail = sine(np.arange(X) * 0.7)
    out = chain.output(36)
    wave = read_wave(out.path)
    rounded = context_samples(CONTEXT) - H
    assert continuation_tail_at(fill_tail, CONTEXT, JOIN) == rounded
    tails: list[np.ndarray] = []
    done = finish_hook(cache, RenderPlan(fill_tail, {}, "c" * 16), tails)(out)
    expected = render_continuation(fill_tail, wave, float(rounded), JOIN)
    np.testing.assert_allclose(read_wave(done.result.path), expected.audio, atol=1 / 32768)
    np.testing.assert_array_equal(tails[0], wave[wave.shape[0] - H : wave.shape[0] - H + X])
    # A timing whose segment is shorter than the context cannot be placed either.
    short = timed(fill_tail, frames=CONTEXT - 1)
    assert continuation_tail_at(short, CONTEXT, JOIN) == rounded


def test_a_timed_tail_is_placed_exactly() -> None:
    tail = timed(np.zeros((X, 2), np.float32), start_sec=5.0, frames=90)
    expected = tail_position(5.0 * SAMPLE_RATE, 90, CONTEXT)
    assert continuation_tail_at(tail, CONTEXT, JOIN) == expected
    assert expected == pytest.approx(240000 - frames_to_samples(60), abs=1e-9)


@pytest.mark.parametrize("failure", ["render", "write", "unreadable"])
def test_a_failing_finish_hook_leaves_no_file(tmp_path: Path, failure: str) -> None:
    cache = TrackCache(tmp_path / "cache")
    chain = Chain(tmp_path)
    result = chain.output(53)
    plan = RenderPlan(None, {}, "d" * 16)
    if failure == "render":  # too short for a continuation after this tail
        plan = RenderPlan(timed(np.zeros((X, 2), np.float32), start_sec=99.0), {}, "d" * 16)
    elif failure == "write":  # the segment file's place is taken by a folder
        cache.audio_path("d" * 16, "flac").mkdir()
    else:
        result.path.write_bytes(b"not audio")
    tails: list[np.ndarray] = []
    expected: type[Exception] = ValueError if failure == "render" else LofiError
    with pytest.raises(expected) as caught:
        finish_hook(cache, plan, tails)(result)
    if failure != "render":
        code = errors.OUTPUT_WRITE_FAILED if failure == "write" else errors.INVALID_SOURCE
        assert isinstance(caught.value, LofiError) and caught.value.code == code
    assert tails == []
    left = sorted(os.listdir(cache.root))
    assert left == (["d" * 16 + ".flac"] if failure == "write" else [])
    assert result.path.exists()  # the engine's output is the job runner's to remove


def test_the_held_tail_and_the_head_read_at_its_place_match(tmp_path: Path) -> None:
    """The crossfade's head is the continuation read at the tail's exact place: it matches the
    held tail (the same music at the same instants) to float precision."""
    chain = Chain(tmp_path)
    wave0 = read_wave(chain.output(53).path)
    first = render_first(wave0, JOIN)
    wave1 = read_wave(chain.output(36).path)
    at = tail_position(first.tail_at, 53, CONTEXT)
    np.testing.assert_allclose(read_at(wave1, at, X), first.tail, atol=1e-6)
    assert np.abs(wave1[round(at) : round(at) + X] - first.tail).max() > 1e-2
