from typing import Any

import numpy as np
import pytest

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.turbo.schedule import dit_velocity, euler, pad_even, timesteps


@pytest.mark.parametrize("shift", [1, 2, 3])
def test_tables_follow_the_shift_formula(shift: Any) -> None:
    u = np.linspace(1.0, 0.0, 9)[:-1]
    expected = (shift * u / (1 + (shift - 1) * u)).astype(np.float32)
    ts = timesteps(shift)
    assert len(ts) == 8
    np.testing.assert_array_equal(np.asarray(ts, dtype=np.float32), expected)


def test_shift_3_table_values() -> None:
    assert timesteps(3) == tuple(
        float(np.float32(t)) for t in (1.0, 21 / 22, 0.9, 5 / 6, 0.75, 9 / 14, 0.5, 0.3)
    )


@pytest.mark.parametrize("shift", [0, 4, 2.5, True])
def test_other_shifts_are_refused(shift: Any) -> None:
    with pytest.raises(LofiError) as info:
        timesteps(shift)
    assert info.value.code == errors.INVALID_PARAMETER


def test_euler_with_a_linear_velocity_matches_the_closed_form() -> None:
    # v = a·x: each step multiplies x by (1 − a·dt); the last step integrates to t = 0.
    ts = timesteps(3)
    a = np.float32(0.7)
    x0 = np.random.default_rng(1).standard_normal((1, 9, 3)).astype(np.float32)
    seen: list[float] = []

    def velocity(x: np.ndarray, t: float) -> np.ndarray:
        seen.append(t)
        return a * x

    out = euler(x0, ts, velocity)
    edges = [*ts, 0.0]
    factor = np.prod([1 - 0.7 * (edges[i] - edges[i + 1]) for i in range(8)])
    np.testing.assert_allclose(out, x0 * factor, rtol=1e-5)
    assert seen == list(ts)
    assert out.dtype == np.float32


def test_euler_last_step_is_x_minus_v_times_t() -> None:
    # a constant velocity v moves x by v·(t0 − 0) in total: x0 = x − v
    x = np.ones((1, 4, 2), dtype=np.float32)
    out = euler(x, timesteps(2), lambda x, t: np.full_like(x, 0.25))
    np.testing.assert_allclose(out, x - 0.25, atol=1e-6)


def test_euler_step_hooks_run_around_each_step() -> None:
    calls: list[tuple[str, int]] = []
    euler(
        np.zeros((1, 2, 1), np.float32),
        timesteps(1),
        lambda x, t: x,
        before_step=lambda i: calls.append(("before", i)),
        after_step=lambda i: calls.append(("after", i)),
    )
    assert calls[:3] == [("before", 0), ("after", 0), ("before", 1)]
    assert len(calls) == 16


def test_pad_even_appends_one_zero_frame_to_odd_lengths() -> None:
    x = np.ones((1, 5, 2), np.float32)
    padded = pad_even(x)
    assert padded.shape == (1, 6, 2)
    assert not padded[:, 5].any()
    assert pad_even(padded) is padded


def test_dit_velocity_pads_odd_frames_and_crops_back() -> None:
    fed: dict[str, np.ndarray] = {}

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        fed.update(feeds)
        return feeds["hidden_states"] * 2 + feeds["context_latents"][..., :2]

    context = np.arange(1 * 7 * 4, dtype=np.float32).reshape(1, 7, 4)
    velocity = dit_velocity(run, np.zeros((1, 3, 5), np.float32), context)
    x = np.ones((1, 7, 2), np.float32)
    v = velocity(x, 0.5)
    assert fed["hidden_states"].shape == (1, 8, 2)
    assert fed["context_latents"].shape == (1, 8, 4)
    assert not fed["context_latents"][:, 7].any()
    assert fed["timestep"].dtype == np.float32 and fed["timestep"].tolist() == [0.5]
    assert v.shape == (1, 7, 2)
    np.testing.assert_array_equal(v, 2 + context[..., :2])
