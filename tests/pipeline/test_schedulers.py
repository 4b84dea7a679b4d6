"""Tests for the numpy flow-matching schedulers (spec section 8).

Expected values come from the spec (timestep lists, omega factors) or from small hand
calculations written out below, never from running the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest

from lofi_daemon.pipeline.schedulers import (
    EulerScheduler,
    HeunScheduler,
    PingPongScheduler,
    flow_match_sigmas,
    make_scheduler,
    omega_factor,
    shifted_sigma_range,
)

# Spec section 8.2, reference timesteps (sigma * 1000, float32).
TIMESTEPS_27 = [
    1000.000000, 986.882507, 973.058228, 958.468445, 943.047729, 926.723022, 909.412354,
    891.023804, 871.453430, 850.583313, 828.279663, 804.389587, 778.737549, 751.121094,
    721.305603, 689.017517, 653.936096, 615.682312, 573.805481, 527.765320, 476.908569,
    420.437592, 357.368408, 286.472900, 206.197861, 114.550102, 8.928572,
]  # fmt: skip
TIMESTEPS_60 = [
    1000.000000, 994.303040, 988.474731, 982.510498, 976.405579, 970.154907, 963.753113,
    957.194824, 950.474060, 943.584778, 936.520630, 929.274780, 921.840149, 914.209229,
    906.374268, 898.326843, 890.058228, 881.559143, 872.819824, 863.830078, 854.578796,
    845.054504, 835.244873, 825.136963, 814.716919, 803.970032, 792.880737, 781.432312,
    769.607117, 757.386230, 744.749390, 731.674988, 718.140015, 704.119568, 689.587097,
    674.514038, 658.869751, 642.620972, 625.731995, 608.164368, 589.876221, 570.822388,
    550.953552, 530.216492, 508.553040, 485.899536, 462.186646, 437.338226, 411.270721,
    383.892151, 355.101074, 324.785278, 292.820404, 259.068024, 223.373932, 185.565628,
    145.449554, 102.807716, 57.393852, 8.928572,
]  # fmt: skip

# Once-shifted sigma_min = 3*0.001/(1 + 2*0.001) = 1/334; shifted again: 3/336 = 1/112.
SIGMA_LAST = 1.0 / 112.0
W10 = 1.046211715726001  # omega_factor(10) per the spec


# --- schedule ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["euler", "pingpong"])
@pytest.mark.parametrize(("n", "expected"), [(27, TIMESTEPS_27), (60, TIMESTEPS_60)])
def test_timesteps_match_reference_lists(name: str, n: int, expected: list[float]) -> None:
    sched = make_scheduler(name, n)
    assert sched.timesteps.dtype == np.float32
    assert sched.timesteps.shape == (n,)
    np.testing.assert_allclose(sched.timesteps, expected, rtol=0, atol=1e-4)
    assert sched.timesteps[0] == np.float32(1000.0)
    assert sched.timesteps[-1] == np.float32(8.928572)
    assert sched.num_inference_steps == n


def test_sigmas_end_with_zero_and_are_double_shifted() -> None:
    sched = make_scheduler("euler", 27)
    assert sched.sigmas.dtype == np.float32
    assert sched.sigmas.shape == (28,)
    assert sched.sigmas[-1] == 0.0
    assert sched.sigmas[0] == 1.0
    # Double shift: the last non-zero sigma is 1/112, not the once-shifted 1/334.
    assert sched.sigmas[-2] == pytest.approx(SIGMA_LAST, rel=1e-6)
    assert np.all(np.diff(sched.sigmas) < 0)


def test_flow_match_sigmas_is_timesteps_over_1000() -> None:
    sig = flow_match_sigmas(27)
    assert sig.dtype == np.float32
    assert sig.shape == (27,)
    np.testing.assert_allclose(sig * 1000.0, TIMESTEPS_27, atol=1e-4)


def test_once_shifted_range() -> None:
    hi, lo = shifted_sigma_range()
    assert hi == 1.0
    assert lo == pytest.approx(1.0 / 334.0, rel=1e-6)
    assert lo == pytest.approx(0.002994012087583542, abs=1e-12)


def test_audio2audio_sigma_max() -> None:
    # Strength 0.5: train range ends at 0.5 -> once shifted 1.5/2 = 0.75 -> twice 2.25/2.5 = 0.9.
    hi, _ = shifted_sigma_range(0.5)
    assert hi == pytest.approx(0.75, abs=1e-7)
    sched = make_scheduler("euler", 30, sigma_max=0.5)
    assert sched.sigma_max == pytest.approx(0.75, abs=1e-7)
    assert sched.timesteps[0] == pytest.approx(900.0, abs=1e-3)
    assert sched.timesteps[-1] == pytest.approx(1000.0 * SIGMA_LAST, abs=1e-4)


def test_single_step_schedule() -> None:
    sched = make_scheduler("euler", 1)
    np.testing.assert_array_equal(sched.sigmas, [1.0, 0.0])
    x = np.full((1, 1, 1, 2), 2.0, np.float32)
    out = sched.step(np.ones_like(x), x)
    np.testing.assert_allclose(out, 1.0, atol=1e-7)


@pytest.mark.parametrize(
    ("omega", "expected"),
    [
        (10.0, W10),
        (0.0, 1.0),
        (5.0, 1.0244918662),
        (20.0, 1.0761594156),
        (-10.0, 0.9537882843),
    ],
)
def test_omega_factor(omega: float, expected: float) -> None:
    assert omega_factor(omega) == pytest.approx(expected, abs=1e-10)


def test_omega_factor_bounds() -> None:
    assert omega_factor(1e4) == pytest.approx(1.1)
    assert omega_factor(-1e4) == pytest.approx(0.9)


def test_make_scheduler_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown scheduler"):
        make_scheduler("dpm", 10)
    with pytest.raises(ValueError, match="num_steps"):
        make_scheduler("euler", 0)


def test_make_scheduler_types() -> None:
    assert isinstance(make_scheduler("euler", 4), EulerScheduler)
    assert isinstance(make_scheduler("heun", 4), HeunScheduler)
    assert isinstance(make_scheduler("pingpong", 4), PingPongScheduler)
    assert make_scheduler("pingpong", 4).needs_noise
    assert not make_scheduler("euler", 4).needs_noise
    assert not make_scheduler("heun", 4).needs_noise


# --- Euler ----------------------------------------------------------------------------


def _two_sample_batch() -> tuple[np.ndarray, np.ndarray]:
    """x and v of shape [2, 1, 1, 2]; v has mean 2 over the whole batch."""
    x = np.array([[[[0.5, -1.0]]], [[[2.0, 0.0]]]], np.float32)
    v = np.array([[[[1.0, 3.0]]], [[[5.0, -1.0]]]], np.float32)
    return x, v


def test_euler_step_with_omega_mean_shift_by_hand() -> None:
    x, v = _two_sample_batch()
    sched = make_scheduler("euler", 27)
    out = sched.step(v, x, omega=10.0)
    assert out.dtype == np.float32
    dt = 986.882507e-3 - 1.0  # sigma_1 - sigma_0 from the N=27 list
    # dx = dt*v; mean(dx) = dt*2 over all four values; x' = x + dt*((v - 2)*w + 2).
    expected = np.array(
        [
            [[[0.5 + dt * (-1.0 * W10 + 2), -1.0 + dt * (1.0 * W10 + 2)]]],
            [[[2.0 + dt * (3.0 * W10 + 2), 0.0 + dt * (-3.0 * W10 + 2)]]],
        ]
    )
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)


def test_euler_mean_couples_the_batch() -> None:
    x, v = _two_sample_batch()
    v[1] += 4.0  # sample 0 keeps its own mean 2, the batch mean becomes 4
    dt = 986.882507e-3 - 1.0
    coupled = make_scheduler("euler", 27).step(v, x, omega=10.0)
    alone = make_scheduler("euler", 27).step(v[:1], x[:1], omega=10.0)
    # In the batch, sample 0 is shifted about the batch mean 4, alone about its own mean 2.
    np.testing.assert_allclose(coupled[0], x[0] + dt * ((v[0] - 4.0) * W10 + 4.0), atol=1e-6)
    np.testing.assert_allclose(alone[0], x[0] + dt * ((v[0] - 2.0) * W10 + 2.0), atol=1e-6)
    assert not np.allclose(coupled[0], alone[0], atol=1e-3)


def test_euler_omega_zero_is_plain_euler() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 16, 5)).astype(np.float32)
    v = rng.standard_normal((2, 8, 16, 5)).astype(np.float32)
    sched = make_scheduler("euler", 60)
    sched.step(v, x, omega=0.0)
    out = sched.step(v, x, omega=0.0)  # second step: sigma 0.99430304 -> 0.98847473
    dt = 988.474731e-3 - 994.303040e-3
    np.testing.assert_allclose(out, x.astype(np.float64) + dt * v, rtol=0, atol=2e-6)


def test_euler_constant_velocity_integrates_to_sigma_zero() -> None:
    # The deltas sum to 0 - 1 = -1, so x_final = x0 - v whatever omega is (v constant => dx-m=0).
    x = np.array([[[[3.0, -2.0, 0.25]]]], np.float32)
    v = np.full_like(x, 1.5)
    sched = make_scheduler("euler", 27)
    for _ in range(27):
        x = sched.step(v, x, omega=10.0)
    np.testing.assert_allclose(x, [[[[1.5, -3.5, -1.25]]]], atol=1e-5)
    assert sched.finished


def test_stepping_past_the_end_raises() -> None:
    x = np.zeros((1, 1, 1, 2), np.float32)
    sched = make_scheduler("euler", 3)
    for _ in range(3):
        x = sched.step(x, x)
    with pytest.raises(RuntimeError, match="already took all 3 steps"):
        sched.step(x, x)


def test_shape_mismatch_raises() -> None:
    sched = make_scheduler("euler", 3)
    with pytest.raises(ValueError, match="shape"):
        sched.step(np.zeros((1, 8, 16, 4)), np.zeros((1, 8, 16, 5)))


def test_step_returns_float32_for_float16_inputs() -> None:
    x = np.ones((1, 8, 16, 3), np.float16)
    out = make_scheduler("euler", 5).step(x, x, omega=10.0)
    assert out.dtype == np.float32
    assert out.shape == (1, 8, 16, 3)


# --- Heun -----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 27, 60])
def test_heun_schedule_layout(n: int) -> None:
    sched = make_scheduler("heun", n)
    euler = make_scheduler("euler", n)
    assert len(sched.timesteps) == 2 * n - 1
    assert len(sched.sigmas) == 2 * n
    assert sched.num_inference_steps == n
    assert sched.timesteps[0] == euler.timesteps[0]
    np.testing.assert_array_equal(sched.timesteps[1::2], euler.timesteps[1:])
    np.testing.assert_array_equal(sched.timesteps[2::2], euler.timesteps[1:])
    assert sched.sigmas[-1] == 0.0
    np.testing.assert_array_equal(sched.sigmas[1:-1:2], sched.sigmas[2::2])


def test_heun_takes_exactly_2n_minus_1_steps_and_ends_first_order() -> None:
    n = 4
    sched = make_scheduler("heun", n)
    assert isinstance(sched, HeunScheduler)
    x = np.ones((1, 1, 1, 3), np.float32)
    orders = []
    for _ in range(2 * n - 1):
        orders.append(sched.in_first_order)
        x = sched.step(x, x)
    assert orders == [True, False, True, False, True, False, True]
    assert sched.finished
    with pytest.raises(RuntimeError):
        sched.step(x, x)


def test_heun_agrees_with_euler_for_constant_velocity() -> None:
    n = 27
    rng = np.random.default_rng(3)
    x0 = rng.standard_normal((2, 8, 16, 4)).astype(np.float32)
    v = rng.standard_normal((2, 8, 16, 4)).astype(np.float32)
    heun, euler = make_scheduler("heun", n), make_scheduler("euler", n)
    xh, xe = x0, x0
    xe = euler.step(v, xe, omega=10.0)
    xh = heun.step(v, xh, omega=10.0)
    np.testing.assert_allclose(xh, xe, atol=1e-6)  # the predictor is an Euler step
    for _ in range(1, n):
        xh = heun.step(v, xh, omega=10.0)  # corrector: same derivative, same result
        np.testing.assert_allclose(xh, xe, atol=1e-5)
        xe = euler.step(v, xe, omega=10.0)
        xh = heun.step(v, xh, omega=10.0)
    np.testing.assert_allclose(xh, xe, atol=1e-5)
    assert heun.finished and euler.finished


def test_heun_two_steps_by_hand_plain() -> None:
    # N=2: sigmas 1 -> s -> 0 with s = 1/112; loop t = [1000, 1000s, 1000s]. Field v(x) = x.
    # Predictor x1 = x0 (1 + d) with d = s - 1; corrector x2 = x0 + d (x0 + x1)/2
    # = x0 (1 + d + d^2/2); last (first-order) step x3 = x2 + (0 - s) x2 = x2 (1 - s).
    s = SIGMA_LAST
    d = s - 1.0
    x0 = np.array([[[[2.0, -1.0, 0.5]]]], np.float32)
    sched = make_scheduler("heun", 2)
    x1 = sched.step(x0, x0)
    np.testing.assert_allclose(x1, x0 * (1 + d), atol=1e-6)
    x2 = sched.step(x1, x1)
    np.testing.assert_allclose(x2, x0 * (1 + d + d * d / 2), atol=1e-6)
    x3 = sched.step(x2, x2)
    np.testing.assert_allclose(x3, x0 * (1 + d + d * d / 2) * (1 - s), atol=1e-6)


def test_heun_two_steps_by_hand_with_mean_shift() -> None:
    # Same field v(x) = x on two values [1, 3], omega 10 (factor w). Every update is
    # shifted about its own mean: ms(u) = (u - mean(u)) w + mean(u).
    s = SIGMA_LAST
    d = s - 1.0
    w = W10
    a0, b0 = 1.0, 3.0
    # predictor: dx = d [1, 3], mean 2d -> x1 = [1 + d (2 - w), 3 + d (2 + w)]
    a1, b1 = a0 + d * (2 - w), b0 + d * (2 + w)
    # corrector: averaged derivative D = ([1, 3] + x1) / 2, start again from x0
    da, db = (a0 + a1) / 2, (b0 + b1) / 2
    md = (da + db) / 2
    a2 = a0 + d * ((da - md) * w + md)
    b2 = b0 + d * ((db - md) * w + md)
    # final first-order step to 0: dx = -s x2
    m2 = (a2 + b2) / 2
    a3 = a2 - s * ((a2 - m2) * w + m2)
    b3 = b2 - s * ((b2 - m2) * w + m2)

    x = np.array([[[[a0, b0]]]], np.float32)
    sched = make_scheduler("heun", 2)
    x = sched.step(x, x, omega=10.0)
    np.testing.assert_allclose(x.ravel(), [a1, b1], atol=1e-6)
    x = sched.step(x, x, omega=10.0)
    np.testing.assert_allclose(x.ravel(), [a2, b2], atol=1e-6)
    x = sched.step(x, x, omega=10.0)
    np.testing.assert_allclose(x.ravel(), [a3, b3], atol=1e-6)


# --- PingPong -------------------------------------------------------------------------


def test_pingpong_step_formula() -> None:
    rng = np.random.default_rng(4)
    shape = (2, 8, 16, 3)
    x = rng.standard_normal(shape).astype(np.float32)
    v = rng.standard_normal(shape).astype(np.float32)
    eps = rng.standard_normal(shape).astype(np.float32)
    sched = make_scheduler("pingpong", 27)
    sched.step(v, x, noise=eps)
    out = sched.step(v, x, noise=eps, omega=10.0)  # step 1: sigma 0.98688 -> 0.97306
    s, sn = 986.882507e-3, 973.058228e-3
    expected = (1 - sn) * (x.astype(np.float64) - s * v) + sn * eps
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=0, atol=2e-6)


def test_pingpong_ignores_omega() -> None:
    x = np.array([[[[1.0, 2.0, 4.0]]]], np.float32)
    v = np.array([[[[0.5, -1.0, 3.0]]]], np.float32)
    eps = np.array([[[[0.1, 0.2, -0.3]]]], np.float32)
    a = make_scheduler("pingpong", 5).step(v, x, noise=eps, omega=0.0)
    b = make_scheduler("pingpong", 5).step(v, x, noise=eps, omega=50.0)
    np.testing.assert_array_equal(a, b)


def test_pingpong_last_step_returns_x0() -> None:
    x = np.array([[[[1.0, 2.0, 4.0]]]], np.float32)
    v = np.array([[[[0.5, -1.0, 3.0]]]], np.float32)
    eps = np.full_like(x, 7.0)
    sched = make_scheduler("pingpong", 2)
    sched.step(v, x, noise=eps)
    out = sched.step(v, x, noise=eps)  # sigma 1/112 -> 0: x0 = x - v/112, no noise left
    np.testing.assert_allclose(out, x - SIGMA_LAST * v, atol=1e-6)
    assert sched.finished


def test_pingpong_requires_noise() -> None:
    x = np.zeros((1, 8, 16, 2), np.float32)
    sched = make_scheduler("pingpong", 3)
    with pytest.raises(ValueError, match="noise"):
        sched.step(x, x)
    with pytest.raises(ValueError, match="noise shape"):
        sched.step(x, x, noise=np.zeros((1, 8, 16, 3), np.float32))
    assert sched.step_index == 0  # failed calls do not advance the schedule
