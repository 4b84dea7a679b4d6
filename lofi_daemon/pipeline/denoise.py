"""The denoising loop: schedulers and guidance in numpy, one batched denoiser call per step.

Upstream: ``acestep/pipeline_ace_step.py: ACEStepPipeline.text2music_diffusion_process``, which
runs the branches as separate forward passes; here they share one batch.

Inside the guidance interval the conditional, (text-only) and unconditional branches are stacked into
one batch; outside it only the conditional branch runs. The guided prediction
(:class:`GuidedVelocity`) is shared by the normal scheduler loop and the repaint/extend loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from lofi_daemon.pipeline import guidance
from lofi_daemon.pipeline.conditioning import Conditions, erg_scale_rows
from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.pipeline.schedulers import FlowMatchScheduler
from lofi_daemon.pipeline.tasks import RepaintPlan

RunDenoiser = Callable[[dict[str, np.ndarray]], np.ndarray]

# Timesteps are sigma * 1000; the repaint loop works with t / 1000 (upstream's ``t_i``).
_TIME_SCALE = np.float32(1000.0)


class GuidedVelocity:
    """The (guided) velocity at one loop index, as ``text2music_diffusion_process`` computes it.

    Guidance (CFG/APG/CFG-Zero*, ERG on the null branch, double condition, scale decay) applies
    for loop indices inside the guidance interval computed on ``num_steps`` (the requested N,
    also for Heun). One APG momentum buffer lives as long as this object: build one per
    generation.
    """

    def __init__(
        self,
        run: RunDenoiser,
        conditions: Conditions,
        params: GenerationParams,
        num_steps: int,
        *,
        n_layers: int,
        erg_layers: Sequence[int],
        erg_scale: float,
    ) -> None:
        self._run = run
        self._conditions = conditions
        self._params = params
        self._n_layers = n_layers
        self._erg_layers = erg_layers
        self._erg_scale = erg_scale
        self.start, self.end = guidance.guidance_interval(num_steps, params.guidance_interval)
        self._guided_run = (
            guidance.cfg_enabled(params.guidance_scale) and conditions.null is not None
        )
        self._momentum = guidance.MomentumBuffer()

    def __call__(self, x: np.ndarray, t: np.floating, i: int) -> np.ndarray:
        """Velocity ``[1, C, H, T]`` (float32) for latents ``x`` ``[1, C, H, T]`` at timestep ``t``
        (sigma * 1000) and global loop index ``i``."""
        if self._guided_run and self.start <= i < self.end:
            v = self._guided(x, t, i)
        else:
            v = self._run(
                {
                    "latents": x,
                    "timestep": np.full((1,), t, dtype=np.float32),
                    "cond": self._conditions.cond,
                    "cond_mask": self._conditions.mask,
                    "q_scale": np.ones((1, self._n_layers), dtype=np.float32),
                }
            )
        return np.asarray(v, dtype=np.float32)

    def _guided(self, x: np.ndarray, t: np.floating, i: int) -> np.ndarray:
        conditions, params = self._conditions, self._params
        assert conditions.null is not None  # _guided_run requires it
        branches = [conditions.cond]
        if conditions.text_only is not None:
            branches.append(conditions.text_only)
        branches.append(conditions.null)
        erg = [False] * (len(branches) - 1) + [params.use_erg_diffusion]
        batch = len(branches)
        v_all = self._run(
            {
                "latents": np.repeat(x, batch, axis=0),
                "timestep": np.full((batch,), t, dtype=np.float32),
                "cond": np.concatenate(branches, axis=0),
                "cond_mask": np.repeat(conditions.mask, batch, axis=0),
                "q_scale": erg_scale_rows(self._n_layers, self._erg_layers, self._erg_scale, erg),
            }
        )
        v_cond, v_uncond = v_all[:1], v_all[-1:]
        if conditions.text_only is not None:
            return guidance.double_condition(
                v_cond,
                v_all[1:2],
                v_uncond,
                params.guidance_scale_text,
                params.guidance_scale_lyric,
            )
        scale = guidance.guidance_scale_at(
            i,
            self.start,
            self.end,
            params.guidance_scale,
            params.guidance_interval_decay,
            params.min_guidance_scale,
        )
        if params.cfg_type == "apg":
            return guidance.apg(v_cond, v_uncond, scale, self._momentum)
        if params.cfg_type == "cfg":
            return guidance.cfg(v_cond, v_uncond, scale)
        return guidance.cfg_star(v_cond, v_uncond, scale, i)


def denoise(
    run: RunDenoiser,
    scheduler: FlowMatchScheduler,
    conditions: Conditions,
    params: GenerationParams,
    latents: np.ndarray,
    rng: np.random.Generator,
    *,
    n_layers: int,
    erg_layers: Sequence[int],
    erg_scale: float,
    on_step: Callable[[int], None] | None = None,
    repaint: RepaintPlan | None = None,
) -> np.ndarray:
    """Run every entry of ``scheduler.timesteps`` from ``latents`` (x_T, ``[1, C, H, T]``); return
    x_0 (float32, same shape).

    ``on_step(i)`` is called before each loop index, skipped repaint steps included (it may raise
    to cancel).

    Without ``repaint`` each step is ``scheduler.step`` with omega (and, for PingPong, noise drawn
    from ``rng``). With ``repaint`` (repaint and extend; see :func:`_repaint_loop`) the start comes
    from the plan and ``latents`` is not used (for extend it is shorter than the output).
    """
    predict = GuidedVelocity(
        run,
        conditions,
        params,
        scheduler.num_inference_steps,
        n_layers=n_layers,
        erg_layers=erg_layers,
        erg_scale=erg_scale,
    )
    if repaint is not None:
        return _repaint_loop(predict, scheduler.timesteps, repaint, on_step)
    x = latents.astype(np.float32, copy=True)
    for i, t in enumerate(scheduler.timesteps):
        if on_step is not None:
            on_step(i)
        v = predict(x, t, i)
        noise = rng.standard_normal(x.shape, dtype=np.float32) if scheduler.needs_noise else None
        x = scheduler.step(v, x, omega=params.omega_scale, noise=noise)
    return x


def _repaint_loop(
    predict: GuidedVelocity,
    timesteps: np.ndarray,
    plan: RepaintPlan,
    on_step: Callable[[int], None] | None,
) -> np.ndarray:
    """The repaint branch of ``text2music_diffusion_process`` (spec section 13.2).

    Loop indices ``i < plan.n_min`` are skipped without a network call. At ``n_min`` the state
    becomes ``(1 - t_i) x0 + t_i z0`` (``t_i = t / 1000``). From there each step is a plain Euler
    step ``x += (t_{i+1} - t_i) v`` (``t_N = 0``; no omega, no ``scheduler.step``, no PingPong
    noise), after which every frame outside the mask is reset to ``(1 - t_{i+1}) x0 +
    t_{i+1} z0``; the last reset uses t = 0, so the result equals ``x0`` exactly there. Only the
    timestep list comes from the scheduler (Heun's repeated timesteps give zero-length steps).
    """
    x0 = plan.x0.astype(np.float32, copy=False)
    z0 = plan.z0.astype(np.float32, copy=False)
    inside = plan.mask == 1.0
    ts = np.asarray(timesteps, dtype=np.float32) / _TIME_SCALE
    x = z0.copy()
    for i, t in enumerate(timesteps):
        if on_step is not None:
            on_step(i)
        if i < plan.n_min:
            continue
        t_i = ts[i]
        t_next = ts[i + 1] if i + 1 < len(ts) else np.float32(0.0)
        if i == plan.n_min:
            x = (np.float32(1.0) - t_i) * x0 + t_i * z0
        v = predict(x, t, i)
        x = x + (t_next - t_i) * v
        x = np.where(inside, x, (np.float32(1.0) - t_next) * x0 + t_next * z0)
    return x.astype(np.float32, copy=False)
