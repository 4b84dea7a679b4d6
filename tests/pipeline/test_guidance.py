"""Tests for the guidance interval, scale decay and combiners (spec section 7).

Expected values are worked out by hand in the comments, on tensors small enough to follow.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from lofi_daemon.pipeline.guidance import (
    MomentumBuffer,
    apg,
    cfg,
    cfg_enabled,
    cfg_star,
    double_condition,
    double_condition_enabled,
    guidance_interval,
    guidance_scale_at,
)

# --- interval, decay, switches ----------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "interval", "expected"),
    [
        (27, 0.5, (6, 20)),  # int(6.75), int(20.25)
        (60, 0.5, (15, 45)),
        (10, 0.5, (2, 7)),  # int(2.5), int(7.5)
        (8, 0.5, (2, 6)),
        (27, 1.0, (0, 27)),
        (27, 0.0, (13, 13)),  # empty: int(13.5) twice
        (2, 0.5, (0, 1)),  # a single guided step
        (100, 0.2, (40, 60)),  # int(40.0...), int(60.0...)
    ],
)
def test_guidance_interval(n: int, interval: float, expected: tuple[int, int]) -> None:
    assert guidance_interval(n, interval) == expected


def test_guidance_interval_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        guidance_interval(27, 1.5)
    with pytest.raises(ValueError):
        guidance_interval(27, -0.1)
    with pytest.raises(ValueError):
        guidance_interval(-1, 0.5)


def test_guidance_scale_without_decay_is_constant() -> None:
    for i in range(15, 45):
        assert guidance_scale_at(i, 15, 45, 15.0, 0.0, 3.0) == 15.0


@pytest.mark.parametrize(
    ("i", "decay", "expected"),
    [
        (15, 1.0, 15.0),  # progress 0
        (44, 1.0, 3.0),  # progress 1 -> min_guidance_scale
        (30, 1.0, 15.0 - 12.0 * 15.0 / 29.0),  # progress 15/29
        (44, 0.5, 9.0),  # 15 - 12 * 1 * 0.5
    ],
)
def test_guidance_scale_decay(i: int, decay: float, expected: float) -> None:
    assert guidance_scale_at(i, 15, 45, 15.0, decay, 3.0) == pytest.approx(expected, abs=1e-12)


def test_guidance_scale_decay_single_step_interval() -> None:
    # end - start == 1: the reference raises ZeroDivisionError; progress is defined as 0.
    start, end = guidance_interval(2, 0.5)
    assert end - start == 1
    assert guidance_scale_at(start, start, end, 15.0, 1.0, 3.0) == 15.0


@pytest.mark.parametrize(
    ("scale", "enabled"), [(0.0, False), (1.0, False), (15.0, True), (0.5, True), (-2.0, True)]
)
def test_cfg_enabled(scale: float, enabled: bool) -> None:
    assert cfg_enabled(scale) is enabled


@pytest.mark.parametrize(
    ("text", "lyric", "enabled"),
    [(1.5, 1.5, True), (1.0, 2.0, False), (2.0, 1.0, False), (0.0, 0.0, False), (0.7, 1.5, False)],
)
def test_double_condition_enabled(text: float, lyric: float, enabled: bool) -> None:
    assert double_condition_enabled(text, lyric) is enabled


# --- APG --------------------------------------------------------------------------------


def _apg_call_1() -> tuple[np.ndarray, np.ndarray]:
    """[B=1, C=2, H=1, T=2]: channel 0 is below the clip norm, channel 1 above it."""
    v_cond = np.array([[[[1.0, 0.0]], [[4.0, 0.0]]]], np.float32)
    v_uncond = np.array([[[[0.0, 1.0]], [[-2.0, -8.0]]]], np.float32)
    return v_cond, v_uncond


def test_apg_without_momentum_by_hand() -> None:
    v_cond, v_uncond = _apg_call_1()
    out = apg(v_cond, v_uncond, 3.0, None)
    # ch0: d = [1, -1], |d| = sqrt 2 < 2.5 kept; unit(v_cond) = [1, 0]; d_par = [1, 0],
    #      d_orth = [0, -1]; v = [1, 0] + 2 * [0, -1] = [1, -2].
    # ch1: d = [6, 8], |d| = 10 -> scaled by 0.25 to [1.5, 2]; unit(v_cond) = [1, 0];
    #      d_orth = [0, 2]; v = [4, 0] + 2 * [0, 2] = [4, 4].
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[[[1.0, -2.0]], [[4.0, 4.0]]]], atol=1e-6)


def test_apg_eta_keeps_parallel_part() -> None:
    v_cond, v_uncond = _apg_call_1()
    out = apg(v_cond, v_uncond, 3.0, None, eta=1.0)
    # eta = 1: v = v_cond + 2 * clipped d: ch0 [1, 0] + 2 [1, -1]; ch1 [4, 0] + 2 [1.5, 2].
    np.testing.assert_allclose(out, [[[[3.0, -2.0]], [[7.0, 4.0]]]], atol=1e-6)


def test_apg_no_clip_when_threshold_disabled() -> None:
    v_cond, v_uncond = _apg_call_1()
    out = apg(v_cond, v_uncond, 3.0, None, norm_threshold=0.0)
    # ch1 unclipped: d = [6, 8], d_orth = [0, 8]; v = [4, 0] + 2 [0, 8] = [4, 16].
    np.testing.assert_allclose(out[0, 1], [[4.0, 16.0]], atol=1e-6)


def test_apg_momentum_accumulates_over_two_calls() -> None:
    buf = MomentumBuffer()
    assert buf.momentum == -0.75
    v_cond, v_uncond = _apg_call_1()
    first = apg(v_cond, v_uncond, 3.0, buf)
    # First call: the buffer starts at 0, so it equals the plain result and stores raw d.
    np.testing.assert_allclose(first, [[[[1.0, -2.0]], [[4.0, 4.0]]]], atol=1e-6)
    np.testing.assert_allclose(buf.running_average, [[[[1.0, -1.0]], [[6.0, 8.0]]]])

    v_cond2 = np.array([[[[2.0, 2.0]], [[0.0, 5.0]]]], np.float32)
    v_uncond2 = np.array([[[[2.0, 2.0]], [[0.0, 1.0]]]], np.float32)
    out = apg(v_cond2, v_uncond2, 3.0, buf)
    # ch0: d2 = [0, 0]; R = d2 - 0.75 [1, -1] = [-0.75, 0.75]; |R| = 1.06 kept;
    #      unit(v_cond) = [1, 1]/sqrt 2, <R, unit> = 0 -> all orthogonal;
    #      v = [2, 2] + 2 [-0.75, 0.75] = [0.5, 3.5].
    # ch1: d2 = [0, 4]; R = [0, 4] - 0.75 [6, 8] = [-4.5, -2]; |R| = sqrt 24.25 > 2.5 ->
    #      R' = R * 2.5 / sqrt 24.25; unit(v_cond) = [0, 1]; d_orth = [R'_0, 0];
    #      v = [0, 5] + 2 [-4.5 * 2.5 / sqrt 24.25, 0] = [-22.5 / sqrt 24.25, 5].
    expected_ch1 = [-22.5 / math.sqrt(24.25), 5.0]
    np.testing.assert_allclose(out, [[[[0.5, 3.5]], [expected_ch1]]], atol=1e-6)
    # The buffer keeps the unclipped average.
    np.testing.assert_allclose(buf.running_average, [[[[-0.75, 0.75]], [[-4.5, -2.0]]]])


def test_apg_norm_is_per_batch_and_channel_over_last_two_axes() -> None:
    # B=2, C=1, H=2, T=2. Sample 0: d has norm 2 (kept); sample 1: norm 10 (scaled by 0.25).
    # v_cond = 0 so the projection removes nothing: v = 0 + (g - 1) * clipped d.
    d = np.array([[[[1.0, 1.0], [1.0, 1.0]]], [[[5.0, 5.0], [5.0, 5.0]]]], np.float32)
    out = apg(np.zeros_like(d), -d, 2.0, None)
    np.testing.assert_allclose(out[0], d[0], atol=1e-6)
    np.testing.assert_allclose(out[1], d[1] * 0.25, atol=1e-6)


def test_apg_update_is_orthogonal_and_clipped() -> None:
    rng = np.random.default_rng(5)
    v_cond = rng.standard_normal((2, 8, 16, 7)).astype(np.float32)
    v_uncond = rng.standard_normal((2, 8, 16, 7)).astype(np.float32) * 0.5
    out = apg(v_cond, v_uncond, 4.0, None)
    update = (out.astype(np.float64) - v_cond) / 3.0
    dots = np.sum(update * v_cond, axis=(-2, -1))
    norms = np.linalg.norm(update, axis=(-2, -1)) * np.linalg.norm(v_cond, axis=(-2, -1))
    assert np.max(np.abs(dots) / norms) < 1e-5
    # The clipped difference obeys the 2.5 bound per (batch, channel).
    assert np.all(np.linalg.norm(update, axis=(-2, -1)) <= 2.5 + 1e-5)


def test_apg_projection_is_float64_accurate() -> None:
    # d nearly parallel to a small v_cond: d = 2 * unit(v_cond) + 1e-4 * noise. The orthogonal
    # part is ~2e4 times smaller than d, so a float32 projection would lose ~1e-3 of it;
    # the float64 projection keeps the result within float32 rounding of the spec formula.
    rng = np.random.default_rng(8)
    v_cond = (rng.standard_normal((1, 2, 16, 32)) * 1e-5).astype(np.float32)
    c = v_cond.astype(np.float64)
    unit = c / np.linalg.norm(c, axis=(-2, -1), keepdims=True)
    d = 2.0 * unit + 1e-4 * rng.standard_normal(c.shape) / np.sqrt(16 * 32)
    v_uncond = (c - d).astype(np.float32)
    d32 = (v_cond - v_uncond).astype(np.float64)  # the difference is taken in float32
    assert np.all(np.linalg.norm(d32, axis=(-2, -1)) < 2.5)  # no clipping
    d_par = np.sum(d32 * unit, axis=(-2, -1), keepdims=True) * unit
    expected = c + 14.0 * (d32 - d_par)
    out = apg(v_cond, v_uncond, 15.0, None)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-9)


def test_apg_zero_inputs_give_no_nan_or_warning() -> None:
    zero = np.zeros((1, 2, 3, 4), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = apg(zero, zero, 15.0, MomentumBuffer())
        out2 = apg(zero, zero - 1.0, 15.0, None)  # v_cond = 0 -> nothing to project on
    np.testing.assert_array_equal(out, zero)
    # d = 1 everywhere, norm sqrt 12 > 2.5 -> each entry 2.5/sqrt 12; v = 14 * that.
    np.testing.assert_allclose(out2, 14.0 * 2.5 / math.sqrt(12.0), atol=1e-5)


def test_apg_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shape"):
        apg(np.zeros((1, 8, 16, 3)), np.zeros((1, 8, 16, 4)), 15.0, None)


# --- CFG, CFG-Zero*, double condition ---------------------------------------------------


def test_cfg_by_hand() -> None:
    v_cond = np.array([[[[2.0, -1.0]]]], np.float32)
    v_uncond = np.array([[[[1.0, 1.0]]]], np.float32)
    out = cfg(v_cond, v_uncond, 15.0)
    # 1 + 15 (2 - 1) = 16 ; 1 + 15 (-1 - 1) = -29
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[[[16.0, -29.0]]]], atol=1e-6)


def _cfg_star_batch() -> tuple[np.ndarray, np.ndarray]:
    v_cond = np.array([[[[1.0, 2.0]]], [[[3.0, 0.0]]]], np.float32)
    v_uncond = np.array([[[[2.0, 0.0]]], [[[1.0, 1.0]]]], np.float32)
    return v_cond, v_uncond


def test_cfg_star_per_sample_alpha_by_hand() -> None:
    v_cond, v_uncond = _cfg_star_batch()
    out = cfg_star(v_cond, v_uncond, 4.0, step_index=2)
    # sample 0: alpha = <[1,2],[2,0]> / |[2,0]|^2 = 2/4 = 0.5; alpha vu = [1, 0];
    #           v = [1, 0] + 4 ([1, 2] - [1, 0]) = [1, 8].
    # sample 1: alpha = 3/2 = 1.5; alpha vu = [1.5, 1.5];
    #           v = [1.5, 1.5] + 4 ([3, 0] - [1.5, 1.5]) = [7.5, -4.5].
    # (the 1e-8 in the denominator shifts these by ~1e-8 only)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[[[1.0, 8.0]]], [[[7.5, -4.5]]]], atol=1e-6)


@pytest.mark.parametrize(("step_index", "zero"), [(0, True), (1, True), (2, False), (30, False)])
def test_cfg_star_zero_init(step_index: int, zero: bool) -> None:
    v_cond, v_uncond = _cfg_star_batch()
    out = cfg_star(v_cond, v_uncond, 4.0, step_index)
    assert out.shape == v_cond.shape
    assert out.dtype == np.float32
    assert bool(np.all(out == 0.0)) is zero


def test_cfg_star_zero_steps_and_switch() -> None:
    v_cond, v_uncond = _cfg_star_batch()
    assert np.all(cfg_star(v_cond, v_uncond, 4.0, 3, zero_steps=3) == 0.0)
    out = cfg_star(v_cond, v_uncond, 4.0, 0, use_zero_init=False)
    np.testing.assert_allclose(out, [[[[1.0, 8.0]]], [[[7.5, -4.5]]]], atol=1e-6)


def test_cfg_star_zero_uncond_has_no_nan() -> None:
    v_cond = np.array([[[[1.0, -2.0]]]], np.float32)
    out = cfg_star(v_cond, np.zeros_like(v_cond), 4.0, 5)
    # alpha = 0 / 1e-8 = 0 -> v = 4 v_cond
    np.testing.assert_allclose(out, 4.0 * v_cond, atol=1e-6)


def test_double_condition_by_hand() -> None:
    shape = (2, 8, 16, 3)
    v_cond = np.full(shape, 3.0, np.float32)
    v_text = np.full(shape, 2.0, np.float32)
    v_uncond = np.full(shape, 1.0, np.float32)
    out = double_condition(v_cond, v_text, v_uncond, 3.0, 2.0)
    # (1 - 3) 1 + (3 - 2) 2 + 2 * 3 = -2 + 2 + 6 = 6
    assert out.dtype == np.float32
    assert out.shape == shape
    np.testing.assert_allclose(out, 6.0, atol=1e-6)


def test_double_condition_equals_nested_form() -> None:
    rng = np.random.default_rng(6)
    vc, vt, vu = (rng.standard_normal((1, 8, 16, 4)).astype(np.float32) for _ in range(3))
    g_txt, g_lyr = 2.5, 1.5
    nested = vu + g_txt * (vt.astype(np.float64) - vu) + g_lyr * (vc.astype(np.float64) - vt)
    np.testing.assert_allclose(double_condition(vc, vt, vu, g_txt, g_lyr), nested, atol=1e-5)


@pytest.mark.parametrize("batch_and_t", [(1, 1), (3, 17)])
def test_combiners_keep_shape_and_dtype(batch_and_t: tuple[int, int]) -> None:
    b, t = batch_and_t
    rng = np.random.default_rng(7)
    vc, vu, vt = (rng.standard_normal((b, 8, 16, t)) for _ in range(3))  # float64 inputs
    outs = [
        apg(vc, vu, 15.0, MomentumBuffer()),
        cfg(vc, vu, 15.0),
        cfg_star(vc, vu, 15.0, 10),
        double_condition(vc, vt, vu, 2.0, 1.5),
    ]
    for out in outs:
        assert out.shape == (b, 8, 16, t)
        assert out.dtype == np.float32
        assert np.all(np.isfinite(out))
