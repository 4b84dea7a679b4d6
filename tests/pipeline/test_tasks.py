"""Source-task set-up: retake noise, repaint/extend plans and the audio2audio start (spec 13.1-13.4).

Expected values are written out from the formulas in upstream ``acestep/pipeline_ace_step.py``
(``text2music_diffusion_process``, ``add_latents_noise``), not taken from the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.pipeline.params import seconds_to_frames
from lofi_daemon.pipeline.tasks import (
    MAX_FRAMES,
    audio2audio_start,
    extend_plan,
    mix_retake_noise,
    repaint_plan,
)

C, H = 2, 3


def _rand(seed: int, frames: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, C, H, frames), dtype=np.float32)


def _code(exc: pytest.ExceptionInfo[LofiError]) -> int:
    return exc.value.code


# --- frames -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "frames"),
    [
        (0.0, 0),
        (1.0, 10),  # 10.77
        (5.0, 53),  # 53.83
        (30.0, 322),  # 322.99
        (240.0, 2583),  # 2583.98
        (-1.0, -10),  # int() truncates toward zero, as upstream
        (4096 / 44100, 1),  # exactly one frame
    ],
)
def test_seconds_to_frames(seconds: float, frames: int) -> None:
    assert seconds_to_frames(seconds) == frames


def test_max_frames_is_240_seconds() -> None:
    assert MAX_FRAMES == int(240 * 44100 / 512 / 8) == 2583


# --- retake noise -------------------------------------------------------------------------------


def test_variance_zero_is_the_noise_exactly() -> None:
    noise, retake = _rand(1, 7), _rand(2, 7)
    np.testing.assert_array_equal(mix_retake_noise(noise, retake, 0.0), noise)


@pytest.mark.parametrize("variance", [0.2, 0.5, 1.0])
def test_mix_is_cos_sin(variance: float) -> None:
    noise, retake = _rand(1, 7), _rand(2, 7)
    theta = variance * math.pi / 2
    expected = math.cos(theta) * noise.astype(np.float64) + math.sin(theta) * retake
    out = mix_retake_noise(noise, retake, variance)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)


def test_mix_refuses_different_shapes() -> None:
    with pytest.raises(LofiError, match="retake noise shape") as exc:
        mix_retake_noise(_rand(1, 7), _rand(2, 8), 0.5)
    assert _code(exc) == errors.INVALID_PARAMETER


# --- repaint ------------------------------------------------------------------------------------


def test_repaint_plan_mask_z0_and_n_min() -> None:
    src, noise, retake = _rand(0, 12), _rand(1, 12), _rand(2, 12)
    plan = repaint_plan(src, noise, retake, 3, 8, 0.5, 27)
    assert plan.n_min == 13  # int(27 * 0.5)
    expected_mask = np.zeros((1, C, H, 12), np.float32)
    expected_mask[..., 3:8] = 1
    np.testing.assert_array_equal(plan.mask, expected_mask)
    np.testing.assert_array_equal(plan.x0, src)
    c = s = math.sqrt(0.5)
    mixed = c * noise.astype(np.float64) + s * retake
    np.testing.assert_allclose(plan.z0[..., 3:8], mixed[..., 3:8], atol=1e-6)
    np.testing.assert_array_equal(plan.z0[..., :3], noise[..., :3])
    np.testing.assert_array_equal(plan.z0[..., 8:], noise[..., 8:])
    for a in (plan.mask, plan.x0, plan.z0):
        assert a.dtype == np.float32


@pytest.mark.parametrize(
    ("steps", "variance", "n_min"),
    [(27, 0.2, 21), (27, 1.0, 0), (60, 0.5, 30), (10, 0.05, 9), (4, 0.3, 2)],
)
def test_repaint_n_min(steps: int, variance: float, n_min: int) -> None:
    src = _rand(0, 6)
    assert repaint_plan(src, src, src, 0, 3, variance, steps).n_min == n_min


def test_whole_source_repaint_stays_masked() -> None:
    src, noise, retake = _rand(0, 6), _rand(1, 6), _rand(2, 6)
    plan = repaint_plan(src, noise, retake, 0, 6, 0.5, 8)
    np.testing.assert_array_equal(plan.mask, np.ones_like(src))


@pytest.mark.parametrize(("s0", "s1"), [(-1, 3), (2, 7), (3, 3), (4, 2)])
def test_repaint_refuses_bad_ranges(s0: int, s1: int) -> None:
    src = _rand(0, 6)
    with pytest.raises(LofiError, match="repaint frames") as exc:
        repaint_plan(src, src, src, s0, s1, 0.5, 8)
    assert _code(exc) == errors.INVALID_PARAMETER


@pytest.mark.parametrize("variance", [0.0, -0.1, 1.5])
def test_repaint_refuses_bad_variance(variance: float) -> None:
    src = _rand(0, 6)
    with pytest.raises(LofiError, match="retake_variance") as exc:
        repaint_plan(src, src, src, 0, 3, variance, 8)
    assert _code(exc) == errors.INVALID_PARAMETER


def test_repaint_refuses_wrong_noise_shapes() -> None:
    src = _rand(0, 6)
    with pytest.raises(LofiError, match="retake noise must have shape"):
        repaint_plan(src, src, _rand(1, 7), 0, 3, 0.5, 8)
    with pytest.raises(LofiError, match="noise must have shape"):
        repaint_plan(src, _rand(1, 5), src, 0, 3, 0.5, 8)
    with pytest.raises(LofiError, match="source latents must be float"):
        repaint_plan(src[0], src, src, 0, 3, 0.5, 8)


# --- extend -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("left", "right"), [(3, 2), (4, 0), (0, 5), (9, 1), (1, 12)])
def test_extend_plan_layout(left: int, right: int) -> None:
    frames = 6
    src, noise = _rand(0, frames), _rand(1, frames)
    retake = _rand(2, max(frames, left, right))
    plan = extend_plan(src, noise, retake, left, right, 1.0, 8)
    total = left + frames + right
    for a in (plan.mask, plan.x0, plan.z0):
        assert a.shape == (1, C, H, total)
        assert a.dtype == np.float32
    assert plan.n_min == 0
    # x0: zeros, the source, zeros
    np.testing.assert_array_equal(plan.x0[..., :left], 0)
    np.testing.assert_array_equal(plan.x0[..., left : left + frames], src)
    np.testing.assert_array_equal(plan.x0[..., left + frames :], 0)
    # mask: 1 on the padding only
    np.testing.assert_array_equal(plan.mask[..., :left], 1)
    np.testing.assert_array_equal(plan.mask[..., left : left + frames], 0)
    np.testing.assert_array_equal(plan.mask[..., left + frames :], 1)
    # z0: first `left` retake frames, the whole main noise, last `right` retake frames
    np.testing.assert_array_equal(plan.z0[..., :left], retake[..., :left])
    np.testing.assert_array_equal(plan.z0[..., left : left + frames], noise)
    width = retake.shape[-1]
    np.testing.assert_array_equal(plan.z0[..., left + frames :], retake[..., width - right :])


def test_extend_n_min_follows_variance() -> None:
    src = _rand(0, 4)
    assert extend_plan(src, src, src, 2, 0, 0.5, 27).n_min == 13


def test_extend_limit() -> None:
    src = _rand(0, 10)
    right = MAX_FRAMES - 10 - 3
    plan = extend_plan(src, src, _rand(1, right), 3, right, 1.0, 4)
    assert plan.x0.shape[-1] == MAX_FRAMES
    with pytest.raises(LofiError, match="2584 latent frames") as exc:
        extend_plan(src, src, _rand(1, right + 1), 3, right + 1, 1.0, 4)
    assert _code(exc) == errors.INVALID_PARAMETER


@pytest.mark.parametrize(("left", "right"), [(0, 0), (-1, 3), (3, -1)])
def test_extend_refuses_bad_counts(left: int, right: int) -> None:
    src = _rand(0, 6)
    with pytest.raises(LofiError, match="at least one > 0") as exc:
        extend_plan(src, src, src, left, right, 1.0, 4)
    assert _code(exc) == errors.INVALID_PARAMETER


def test_extend_needs_retake_noise_as_long_as_the_longest_part() -> None:
    src = _rand(0, 6)
    with pytest.raises(LofiError, match=r"retake noise must have shape \[1, 2, 3, 9\]"):
        extend_plan(src, src, src, 9, 0, 1.0, 4)


# --- audio2audio --------------------------------------------------------------------------------


def _shift(x: float, s: float = 3.0) -> float:
    return s * x / (1 + (s - 1) * x)


@pytest.mark.parametrize(
    ("strength", "steps", "n_prime"), [(0.5, 60, 30), (0.5, 27, 13), (0.2, 10, 8), (0.7, 4, 1)]
)
def test_audio2audio_schedule_and_start(strength: float, steps: int, n_prime: int) -> None:
    ref, noise = _rand(0, 5), _rand(1, 5)
    start, sched = audio2audio_start(ref, noise, strength, "euler", steps, 3.0)
    assert sched.num_inference_steps == n_prime
    assert len(sched.timesteps) == n_prime
    once = _shift(1 - strength)  # the scheduler's sigma_max: shifted once
    first = _shift(once) * 1000  # the first timestep: shifted twice
    assert sched.timesteps[0] == pytest.approx(first, rel=1e-5)
    if n_prime > 1:  # a one-step linspace holds only its start
        last = _shift(_shift(0.001)) * 1000  # = 1000/112 for every strength
        assert sched.timesteps[-1] == pytest.approx(last, rel=1e-4)
    expected = ref.astype(np.float64) * (1 - once) + noise * once
    np.testing.assert_allclose(start, expected, rtol=0, atol=1e-5)
    assert start.dtype == np.float32


def test_audio2audio_strength_half_is_the_spec_example() -> None:
    ref, noise = _rand(0, 5), _rand(1, 5)
    start, sched = audio2audio_start(ref, noise, 0.5, "euler", 60, 3.0)
    assert sched.timesteps[0] == pytest.approx(900.0, abs=1e-3)
    np.testing.assert_allclose(start, 0.25 * ref + 0.75 * noise, atol=1e-6)


def test_audio2audio_zero_strength_starts_from_noise() -> None:
    ref, noise = _rand(0, 5), _rand(1, 5)
    start, sched = audio2audio_start(ref, noise, 0.0, "euler", 8, 3.0)
    np.testing.assert_array_equal(start, noise)
    assert sched.num_inference_steps == 8


@pytest.mark.parametrize("name", ["heun", "pingpong"])
def test_audio2audio_other_schedulers(name: str) -> None:
    ref = _rand(0, 5)
    _, sched = audio2audio_start(ref, ref, 0.5, name, 10, 3.0)
    assert sched.name == name
    assert sched.num_inference_steps == 5
    assert len(sched.timesteps) == (9 if name == "heun" else 5)
    assert sched.timesteps[0] == pytest.approx(900.0, abs=1e-3)


def test_audio2audio_refuses_too_few_steps() -> None:
    ref = _rand(0, 5)
    with pytest.raises(LofiError, match=r"ref_strength 0\.9 with infer_steps 5") as exc:
        audio2audio_start(ref, ref, 0.9, "euler", 5, 3.0)  # int(0.1 * 5) == 0
    assert _code(exc) == errors.INVALID_PARAMETER


@pytest.mark.parametrize("strength", [-0.1, 1.0, 1.5])
def test_audio2audio_refuses_strength_out_of_range(strength: float) -> None:
    ref = _rand(0, 5)
    with pytest.raises(LofiError, match="ref_strength must be in") as exc:
        audio2audio_start(ref, ref, strength, "euler", 10, 3.0)
    assert _code(exc) == errors.INVALID_PARAMETER


def test_audio2audio_refuses_mismatched_noise() -> None:
    with pytest.raises(LofiError, match="noise must have shape"):
        audio2audio_start(_rand(0, 5), _rand(1, 6), 0.5, "euler", 10, 3.0)
