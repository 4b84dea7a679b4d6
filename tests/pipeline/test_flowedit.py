"""FlowEdit with a fake, linear denoiser (spec section 13.5).

The reference loop below is written out from upstream ``acestep/pipeline_ace_step.py:
flowedit_diffusion_process`` and ``calc_v`` in float64; the noise draws are replayed from a
generator with the same seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from lofi_daemon.pipeline import guidance
from lofi_daemon.pipeline.conditioning import EditConditions
from lofi_daemon.pipeline.flowedit import flowedit
from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.pipeline.schedulers import make_scheduler

C, H, T, D = 2, 3, 6, 5
S_SRC, S_TAR = 4, 6
LAYERS = 4
Feeds = dict[str, np.ndarray]


def _rand(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def linear_velocity(feeds: Feeds) -> np.ndarray:
    """Linear in the latents and the masked condition; blind to masked condition tokens."""
    x = feeds["latents"].astype(np.float64)
    t = feeds["timestep"][:, None, None, None] / 1000.0
    cond = (feeds["cond"] * feeds["cond_mask"][..., None]).sum(axis=(1, 2))[:, None, None, None]
    return (-0.4 * x + 0.3 * t + 0.05 * cond).astype(np.float32)


class FakeDenoiser:
    def __init__(self, fn: Callable[[Feeds], np.ndarray] = linear_velocity) -> None:
        self.fn = fn
        self.calls: list[Feeds] = []

    def __call__(self, feeds: Feeds) -> np.ndarray:
        self.calls.append({k: v.copy() for k, v in feeds.items()})
        return self.fn(feeds)


def _conditions(guided: bool) -> EditConditions:
    def mask(n: int, zeros_at_end: int) -> np.ndarray:
        m = np.ones((1, n), np.float32)
        m[0, n - zeros_at_end :] = 0
        return m

    nulls: dict[str, Any] = {}
    if guided:
        nulls = {
            "src_null": _rand(12, (1, S_SRC, D)),
            "src_null_mask": mask(S_SRC, 2),
            "tar_null": _rand(13, (1, S_TAR, D)),
            "tar_null_mask": mask(S_TAR, 2),
        }
    return EditConditions(
        src=_rand(10, (1, S_SRC, D)),
        src_mask=mask(S_SRC, 1),
        tar=_rand(11, (1, S_TAR, D)),
        tar_mask=mask(S_TAR, 1),
        **nulls,
    )


def _params(**kw: Any) -> GenerationParams:
    base: dict[str, Any] = {"prompt": "x", "task": "edit", "edit_prompt": "y", "infer_steps": 8}
    base.update(kw)
    return GenerationParams(**base)


def _edit(
    params: GenerationParams,
    conditions: EditConditions,
    fake: FakeDenoiser,
    seed: int = 7,
    steps: list[int] | None = None,
) -> tuple[np.ndarray, np.random.Generator]:
    rng = np.random.default_rng(seed)
    out = flowedit(
        fake,
        make_scheduler("euler", params.infer_steps),
        conditions,
        params,
        _rand(1, (1, C, H, T)),
        rng,
        n_layers=LAYERS,
        on_step=None if steps is None else steps.append,
    )
    return out, rng


def _v(x: np.ndarray, t: float, cond: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return linear_velocity(
        {
            "latents": x.astype(np.float32),
            "timestep": np.full((1,), t, np.float32),
            "cond": cond,
            "cond_mask": mask,
            "q_scale": np.ones((1, LAYERS), np.float32),
        }
    ).astype(np.float64)


def _reference(params: GenerationParams, c: EditConditions, seed: int) -> np.ndarray:
    """Upstream's FlowEdit loop with plain CFG (or none), in float64."""
    sched = make_scheduler("euler", params.infer_steps)
    n = params.infer_steps
    ts = np.append(sched.timesteps.astype(np.float64) / 1000, 0.0)
    n_min, n_max = int(n * params.edit_n_min), int(n * params.edit_n_max)
    g = params.guidance_scale
    rng = np.random.default_rng(seed)
    x_src = _rand(1, (1, C, H, T)).astype(np.float64)
    z_edit, x_tar = x_src.copy(), None

    def v_src(z: np.ndarray, t: float) -> np.ndarray:
        vc = _v(z, t, c.src, c.src_mask)
        if g in (0.0, 1.0):
            return vc
        vu = _v(z, t, c.src_null, c.src_null_mask)  # type: ignore[arg-type]
        return vu + g * (vc - vu)

    def v_tar(z: np.ndarray, t: float) -> np.ndarray:
        vc = _v(z, t, c.tar, c.tar_mask)
        if g in (0.0, 1.0):
            return vc
        vu = _v(z, t, c.tar_null, c.tar_null_mask)  # type: ignore[arg-type]
        return vu + g * (vc - vu)

    for i in range(n_min, n):
        t = sched.timesteps[i]
        if i < n_max:
            avg = np.zeros_like(x_src)
            for _ in range(params.edit_n_avg):
                eps = rng.standard_normal(x_src.shape, dtype=np.float32)
                z_src = (1 - ts[i]) * x_src + ts[i] * eps
                z_tar = z_edit + z_src - x_src
                avg += (v_tar(z_tar, t) - v_src(z_src, t)) / params.edit_n_avg
            z_edit = z_edit + (ts[i + 1] - ts[i]) * avg
        else:
            if i == n_max:
                eps = rng.standard_normal(x_src.shape, dtype=np.float32)
                sigma = float(sched.sigmas[i])
                x_tar = z_edit + sigma * eps + (1 - sigma) * x_src - x_src
            assert x_tar is not None
            x_tar = x_tar + (ts[i + 1] - ts[i]) * v_tar(x_tar, t)
    return z_edit if x_tar is None else x_tar


@pytest.mark.parametrize(
    "kw",
    [
        {
            "guidance_scale": 3.0,
            "cfg_type": "cfg",
            "edit_n_min": 0.25,
            "edit_n_max": 0.75,
            "edit_n_avg": 2,
        },
        {"guidance_scale": 1.0, "edit_n_min": 0.0, "edit_n_max": 1.0, "edit_n_avg": 1},
        {"guidance_scale": 0.0, "edit_n_min": 0.5, "edit_n_max": 0.6, "edit_n_avg": 3},
        {"guidance_scale": 5.0, "cfg_type": "cfg", "edit_n_min": 0.6, "edit_n_max": 1.0},
    ],
)
def test_flowedit_matches_the_upstream_loop(kw: dict[str, Any]) -> None:
    params = _params(**kw)
    conditions = _conditions(guided=params.guidance_scale not in (0.0, 1.0))
    out, _ = _edit(params, conditions, FakeDenoiser())
    assert out.dtype == np.float32
    assert out.shape == (1, C, H, T)
    np.testing.assert_allclose(out, _reference(params, conditions, 7), rtol=0, atol=1e-4)


def test_noise_draw_order_and_the_branch_inputs() -> None:
    params = _params(guidance_scale=3.0, edit_n_min=0.25, edit_n_max=0.75, edit_n_avg=2)
    fake = FakeDenoiser(lambda f: np.zeros_like(f["latents"]))  # z_edit stays the source
    steps: list[int] = []
    out, rng = _edit(params, _conditions(True), fake, seed=3, steps=steps)
    assert steps == list(range(8))
    replay = np.random.default_rng(3)
    eps = [replay.standard_normal((1, C, H, T), dtype=np.float32) for _ in range(9)]
    # the generator was used for exactly those 9 draws: 2 per step in [2, 6), 1 at i == 6
    np.testing.assert_array_equal(rng.standard_normal(4), replay.standard_normal(4))
    sched = make_scheduler("euler", 8)
    x_src = _rand(1, (1, C, H, T)).astype(np.float64)
    assert len(fake.calls) == 8 + 2  # 4 edited steps x n_avg 2, then steps 6 and 7
    for k, call in enumerate(fake.calls[:8]):
        i = 2 + k // 2
        t = float(sched.timesteps[i]) / 1000
        z_src = (1 - t) * x_src + t * eps[k]
        assert call["latents"].shape[0] == 4  # src cond, src null, tar cond, tar null
        for row in range(4):  # z_tar = z_edit + z_src - x_src = z_src here
            np.testing.assert_allclose(call["latents"][row], z_src[0], atol=1e-6)
        np.testing.assert_array_equal(call["timestep"], np.full(4, sched.timesteps[i]))
    sigma = float(sched.sigmas[6])
    x_tar = sigma * eps[8] + (1 - sigma) * x_src
    for call in fake.calls[8:]:
        assert call["latents"].shape[0] == 2  # target only: cond, null
        np.testing.assert_allclose(call["latents"][0], x_tar[0], atol=1e-6)
    np.testing.assert_allclose(out, x_tar, atol=1e-6)


def test_no_draw_after_the_last_step_when_n_max_is_n() -> None:
    params = _params(guidance_scale=1.0, edit_n_min=0.5, edit_n_max=1.0, edit_n_avg=2)
    fake = FakeDenoiser()
    _, rng = _edit(params, _conditions(False), fake, seed=4)
    replay = np.random.default_rng(4)
    for _ in range(8):  # 4 steps x 2
        replay.standard_normal((1, C, H, T), dtype=np.float32)
    np.testing.assert_array_equal(rng.standard_normal(3), replay.standard_normal(3))
    assert len(fake.calls) == 8
    assert all(c["latents"].shape[0] == 2 for c in fake.calls)  # src, tar; no null rows


def test_conditions_are_padded_at_the_end_and_masked() -> None:
    conditions = _conditions(True)
    fake = FakeDenoiser()
    _edit(_params(guidance_scale=3.0, edit_n_max=0.5), conditions, fake)
    call = fake.calls[0]
    assert call["cond"].shape == (4, S_TAR, D)
    np.testing.assert_array_equal(call["cond"][0, :S_SRC], conditions.src[0])
    np.testing.assert_array_equal(call["cond"][0, S_SRC:], 0)
    np.testing.assert_array_equal(call["cond_mask"][0], [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(call["cond_mask"][1], [1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(call["cond"][2], conditions.tar[0])
    np.testing.assert_array_equal(call["cond_mask"][3], conditions.tar_null_mask[0])  # type: ignore[index]
    np.testing.assert_array_equal(call["q_scale"], np.ones((4, LAYERS)))  # no ERG
    late = fake.calls[-1]
    np.testing.assert_array_equal(late["cond"][0], conditions.tar[0])


def test_apg_momentum_routing(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[guidance.MomentumBuffer | None] = []
    real_apg = guidance.apg

    def spy(v_cond: np.ndarray, v_uncond: np.ndarray, scale: float, buffer: Any) -> np.ndarray:
        assert scale == 6.0
        seen.append(buffer)
        return real_apg(v_cond, v_uncond, scale, buffer)

    monkeypatch.setattr(guidance, "apg", spy)
    params = _params(guidance_scale=6.0, cfg_type="apg", edit_n_max=0.5, edit_n_avg=2)
    _edit(params, _conditions(True), FakeDenoiser())
    # steps 0..3: n_avg 2 calls, each source (buffer A) then target (no momentum);
    # steps 4..7: target alone with its own buffer B
    early, late = seen[:16], seen[16:]
    assert len(late) == 4
    src_buffers, tar_buffers = early[0::2], early[1::2]
    buffer_a, buffer_b = src_buffers[0], late[0]
    assert isinstance(buffer_a, guidance.MomentumBuffer)
    assert isinstance(buffer_b, guidance.MomentumBuffer)
    assert buffer_a is not buffer_b
    assert all(b is buffer_a for b in src_buffers)
    assert all(b is None for b in tar_buffers)
    assert all(b is buffer_b for b in late)


def test_skipped_steps_make_no_calls() -> None:
    fake, steps = FakeDenoiser(), list[int]()
    _edit(_params(guidance_scale=1.0, edit_n_min=0.75), _conditions(False), fake, steps=steps)
    assert steps == list(range(8))
    assert len(fake.calls) == 2
    assert fake.calls[0]["timestep"][0] == make_scheduler("euler", 8).timesteps[6]


def test_flowedit_refuses_other_schedulers_and_cfg_types() -> None:
    params = _params(guidance_scale=1.0)
    src, rng = _rand(1, (1, C, H, T)), np.random.default_rng(0)
    with pytest.raises(ValueError, match="Euler"):
        flowedit(
            FakeDenoiser(),
            make_scheduler("heun", 4),
            _conditions(False),
            params,
            src,
            rng,
            n_layers=LAYERS,
        )
    star = _params(guidance_scale=3.0, cfg_type="cfg_star")
    with pytest.raises(ValueError, match="cfg_type"):
        flowedit(
            FakeDenoiser(),
            make_scheduler("euler", 4),
            _conditions(True),
            star,
            src,
            rng,
            n_layers=LAYERS,
        )
    with pytest.raises(ValueError, match="null rows"):
        flowedit(
            FakeDenoiser(),
            make_scheduler("euler", 4),
            _conditions(False),
            _params(guidance_scale=3.0),
            src,
            rng,
            n_layers=LAYERS,
        )
