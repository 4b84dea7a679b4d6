"""The denoising loop with a fake, linear denoiser: the scheduler loop and the repaint loop.

Reference loops are written out here from upstream ``acestep/pipeline_ace_step.py:
text2music_diffusion_process`` (spec sections 7, 8.3, 13.2, 13.3), independently of the code under
test; only the timestep lists come from the schedulers (tested in test_schedulers.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from lofi_daemon.pipeline.conditioning import Conditions
from lofi_daemon.pipeline.denoise import denoise
from lofi_daemon.pipeline.guidance import MomentumBuffer, apg
from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.pipeline.schedulers import make_scheduler
from lofi_daemon.pipeline.tasks import RepaintPlan, extend_plan, repaint_plan

C, H, T, S, D = 2, 3, 10, 4, 5
LAYERS = 6
ERG_LAYERS = (3, 4)
ERG_SCALE = 0.01
Feeds = dict[str, np.ndarray]


def _rand(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def linear_velocity(feeds: Feeds) -> np.ndarray:
    """A velocity that depends on every input, row by row (linear in the latents)."""
    x = feeds["latents"].astype(np.float64)
    t = feeds["timestep"][:, None, None, None] / 1000.0
    cond = (feeds["cond"] * feeds["cond_mask"][..., None]).mean(axis=(1, 2))[:, None, None, None]
    q = feeds["q_scale"].mean(axis=1)[:, None, None, None]
    return (-0.3 * x + 0.2 * t + cond + 0.5 * q).astype(np.float32)


class FakeDenoiser:
    def __init__(self, fn: Callable[[Feeds], np.ndarray] = linear_velocity) -> None:
        self.fn = fn
        self.calls: list[Feeds] = []

    def __call__(self, feeds: Feeds) -> np.ndarray:
        self.calls.append({k: v.copy() for k, v in feeds.items()})
        return self.fn(feeds)


def _conditions(guided: bool) -> Conditions:
    return Conditions(
        cond=_rand(10, (1, S, D)),
        mask=np.array([[1, 1, 1, 0]], np.float32),
        null=_rand(11, (1, S, D)) if guided else None,
        text_only=None,
    )


def _params(**kw: object) -> GenerationParams:
    base: dict[str, object] = {"prompt": "x", "infer_steps": 4, "omega_scale": 0.0}
    base.update(kw)
    return GenerationParams(**base)  # type: ignore[arg-type]


def _run(
    params: GenerationParams,
    conditions: Conditions,
    latents: np.ndarray,
    fake: FakeDenoiser,
    steps: list[int] | None = None,
    **kw: object,
) -> np.ndarray:
    scheduler = make_scheduler(params.scheduler, params.infer_steps)
    return denoise(
        fake,
        scheduler,
        conditions,
        params,
        latents,
        np.random.default_rng(0),
        n_layers=LAYERS,
        erg_layers=ERG_LAYERS,
        erg_scale=ERG_SCALE,
        on_step=None if steps is None else steps.append,
        **kw,  # type: ignore[arg-type]
    )


def _v(x: np.ndarray, t: float, cond: np.ndarray, mask: np.ndarray, q: np.ndarray) -> np.ndarray:
    b = len(q)
    return linear_velocity(
        {
            "latents": np.repeat(x, b, axis=0),
            "timestep": np.full((b,), t, np.float32),
            "cond": cond,
            "cond_mask": np.repeat(mask, b, axis=0),
            "q_scale": q,
        }
    )


# --- scheduler loop ---------------------------------------------------------------------------


def test_unguided_loop_is_plain_euler() -> None:
    params = _params(guidance_scale=1.0)
    conditions = _conditions(guided=False)
    x_t = _rand(0, (1, C, H, T))
    fake, steps = FakeDenoiser(), list[int]()
    out = _run(params, conditions, x_t, fake, steps)
    sigmas = make_scheduler("euler", 4).sigmas
    x = x_t.astype(np.float64)
    ones = np.ones((1, LAYERS), np.float32)
    for i in range(4):
        v = _v(x.astype(np.float32), sigmas[i] * 1000, conditions.cond, conditions.mask, ones)
        x = x + (float(sigmas[i + 1]) - float(sigmas[i])) * v
    np.testing.assert_allclose(out, x, atol=1e-5)
    assert steps == [0, 1, 2, 3]
    assert [len(c["latents"]) for c in fake.calls] == [1, 1, 1, 1]


def test_cfg_inside_the_interval_with_erg_on_the_null_row() -> None:
    params = _params(guidance_scale=3.0, cfg_type="cfg", guidance_interval=0.5)
    conditions = _conditions(guided=True)
    assert conditions.null is not None
    x_t = _rand(0, (1, C, H, T))
    fake = FakeDenoiser()
    out = _run(params, conditions, x_t, fake)
    # N=4, interval 0.5: guided at int(4*0.25)=1 <= i < int(4*0.75)=3
    assert [len(c["latents"]) for c in fake.calls] == [1, 2, 2, 1]
    erg_row = np.ones(LAYERS, np.float32)
    erg_row[list(ERG_LAYERS)] = ERG_SCALE
    np.testing.assert_array_equal(fake.calls[1]["q_scale"], [np.ones(LAYERS), erg_row])
    sigmas = make_scheduler("euler", 4).sigmas
    x = x_t.astype(np.float64)
    ones = np.ones((1, LAYERS), np.float32)
    for i in range(4):
        xf, t = x.astype(np.float32), sigmas[i] * 1000
        v = _v(xf, t, conditions.cond, conditions.mask, ones)
        if 1 <= i < 3:
            vu = _v(xf, t, conditions.null, conditions.mask, erg_row[None])
            v = vu + 3.0 * (v - vu)
        x = x + (float(sigmas[i + 1]) - float(sigmas[i])) * v
    np.testing.assert_allclose(out, x, atol=1e-5)


# --- repaint ----------------------------------------------------------------------------------


def _plan(variance: float, steps: int, s0: int = 3, s1: int = 7) -> tuple[RepaintPlan, np.ndarray]:
    src, noise, retake = (_rand(k, (1, C, H, T)) for k in (1, 2, 3))
    return repaint_plan(src, noise, retake, s0, s1, variance, steps), noise


def _reference_repaint(
    plan: RepaintPlan, ts: np.ndarray, velocity: Callable[[np.ndarray, float, int], np.ndarray]
) -> np.ndarray:
    """Upstream's repaint branch, written out in float64 (t in sigma units, t_N = 0)."""
    x0, z0, inside = plan.x0.astype(np.float64), plan.z0.astype(np.float64), plan.mask == 1
    ts = np.append(ts.astype(np.float64) / 1000.0, 0.0)
    x = None
    for i in range(plan.n_min, len(ts) - 1):
        if i == plan.n_min:
            x = (1 - ts[i]) * x0 + ts[i] * z0
        assert x is not None
        x = x + (ts[i + 1] - ts[i]) * velocity(x.astype(np.float32), ts[i] * 1000, i)
        x = np.where(inside, x, (1 - ts[i + 1]) * x0 + ts[i + 1] * z0)
    assert x is not None
    return x


@pytest.mark.parametrize(("variance", "n_min"), [(0.5, 4), (1.0, 0), (0.2, 6), (0.05, 7)])
def test_repaint_skips_n_min_steps_without_calls(variance: float, n_min: int) -> None:
    plan, noise = _plan(variance, 8)
    assert plan.n_min == n_min
    fake, steps = FakeDenoiser(), list[int]()
    out = _run(
        _params(infer_steps=8, guidance_scale=1.0),
        _conditions(False),
        noise,
        fake,
        steps,
        repaint=plan,
    )
    assert steps == list(range(8))  # on_step sees skipped steps too
    assert len(fake.calls) == 8 - n_min
    first_t = make_scheduler("euler", 8).timesteps[n_min]
    assert fake.calls[0]["timestep"][0] == first_t
    np.testing.assert_array_equal(out[..., :3], plan.x0[..., :3])
    np.testing.assert_array_equal(out[..., 7:], plan.x0[..., 7:])


def test_repaint_unguided_matches_the_formula() -> None:
    plan, noise = _plan(0.5, 8)
    conditions = _conditions(False)
    out = _run(
        _params(infer_steps=8, guidance_scale=1.0), conditions, noise, FakeDenoiser(), repaint=plan
    )
    ones = np.ones((1, LAYERS), np.float32)
    expected = _reference_repaint(
        plan,
        make_scheduler("euler", 8).timesteps,
        lambda x, t, i: _v(x, t, conditions.cond, conditions.mask, ones),
    )
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_array_equal(out[..., :3], plan.x0[..., :3])


def test_repaint_with_zero_velocity_holds_the_start_inside() -> None:
    plan, noise = _plan(0.5, 8)
    fake = FakeDenoiser(lambda f: np.zeros_like(f["latents"]))
    out = _run(_params(infer_steps=8), _conditions(True), noise, fake, repaint=plan)
    t = np.float64(make_scheduler("euler", 8).timesteps[4]) / 1000
    start = (1 - t) * plan.x0 + t * plan.z0
    np.testing.assert_allclose(out[..., 3:7], start[..., 3:7], atol=1e-6)
    np.testing.assert_array_equal(out[..., :3], plan.x0[..., :3])


def test_repaint_with_constant_velocity_moves_by_t_n_min() -> None:
    plan, noise = _plan(1.0, 4)
    fake = FakeDenoiser(lambda f: np.full_like(f["latents"], 2.0))
    out = _run(_params(guidance_scale=1.0), _conditions(False), noise, fake, repaint=plan)
    # n_min 0, t_0 = 1: start z0, then sum of (t_{i+1} - t_i) * 2 = -2
    np.testing.assert_allclose(out[..., 3:7], plan.z0[..., 3:7] - 2.0, atol=1e-5)


def test_repaint_guided_apg_uses_the_global_index_and_momentum() -> None:
    params = _params(infer_steps=8, guidance_scale=4.0, cfg_type="apg", guidance_interval=0.5)
    conditions = _conditions(True)
    null = conditions.null
    assert null is not None
    plan, noise = _plan(0.5, 8)  # n_min 4; guidance interval [2, 6)
    fake = FakeDenoiser()
    out = _run(params, conditions, noise, fake, repaint=plan)
    assert [len(c["latents"]) for c in fake.calls] == [2, 2, 1, 1]
    erg_row = np.ones((1, LAYERS), np.float32)
    erg_row[0, list(ERG_LAYERS)] = ERG_SCALE
    ones = np.ones((1, LAYERS), np.float32)
    buffer = MomentumBuffer()

    def velocity(x: np.ndarray, t: float, i: int) -> np.ndarray:
        v = _v(x, t, conditions.cond, conditions.mask, ones)
        if 2 <= i < 6:
            vu = _v(x, t, null, conditions.mask, erg_row)
            v = apg(v, vu, 4.0, buffer)
        return v

    expected = _reference_repaint(plan, make_scheduler("euler", 8).timesteps, velocity)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_repaint_never_uses_pingpong_noise() -> None:
    plan, noise = _plan(1.0, 4)
    rng = np.random.default_rng(5)
    params = _params(scheduler="pingpong", guidance_scale=1.0)
    denoise(
        FakeDenoiser(),
        make_scheduler("pingpong", 4),
        _conditions(False),
        params,
        noise,
        rng,
        n_layers=LAYERS,
        erg_layers=ERG_LAYERS,
        erg_scale=ERG_SCALE,
        repaint=plan,
    )
    np.testing.assert_array_equal(
        rng.standard_normal(3), np.random.default_rng(5).standard_normal(3)
    )


def test_repaint_heun_takes_zero_length_repeated_steps() -> None:
    plan, noise = _plan(1.0, 3)
    fake = FakeDenoiser(lambda f: np.full_like(f["latents"], 2.0))
    params = _params(infer_steps=3, scheduler="heun", guidance_scale=1.0)
    out = _run(params, _conditions(False), noise, fake, repaint=plan)
    assert len(fake.calls) == 5  # 2N - 1 entries, each a network call
    np.testing.assert_allclose(out[..., 3:7], plan.z0[..., 3:7] - 2.0, atol=1e-5)


# --- extend -----------------------------------------------------------------------------------


def test_extend_keeps_the_source_frames_exactly() -> None:
    src, noise, retake = _rand(1, (1, C, H, T)), _rand(2, (1, C, H, T)), _rand(3, (1, C, H, T))
    plan = extend_plan(src, noise, retake, 4, 3, 1.0, 4)
    fake = FakeDenoiser()
    out = _run(_params(), _conditions(True), noise, fake, repaint=plan)  # x_T: unused, shorter
    assert out.shape == (1, C, H, 4 + T + 3)
    np.testing.assert_array_equal(out[..., 4 : 4 + T], src)
    assert len(fake.calls) == 4  # variance 1: no step skipped
    assert np.all(out[..., :4] != 0)
