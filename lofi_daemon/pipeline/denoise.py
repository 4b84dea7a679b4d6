"""The denoising loop: schedulers and guidance in numpy, one batched denoiser call per step.

Upstream: ``acestep/pipeline_ace_step.py: ACEStepPipeline.text2music_diffusion_process``, which
runs the branches as separate forward passes; here they share one batch.

Inside the guidance interval the conditional, (text-only) and unconditional branches are stacked into
one batch; outside it only the conditional branch runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from lofi_daemon.pipeline import guidance
from lofi_daemon.pipeline.conditioning import Conditions, erg_scale_rows
from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.pipeline.schedulers import FlowMatchScheduler

RunDenoiser = Callable[[dict[str, np.ndarray]], np.ndarray]


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
) -> np.ndarray:
    """Run every scheduler step from ``latents`` (x_T); return x_0. ``on_step`` is called before each step
    (it may raise to cancel)."""
    n = scheduler.num_inference_steps
    start, end = guidance.guidance_interval(n, params.guidance_interval)
    guided_run = guidance.cfg_enabled(params.guidance_scale) and conditions.null is not None
    double = conditions.text_only is not None
    momentum = guidance.MomentumBuffer()
    x = latents.astype(np.float32, copy=True)
    ones = np.ones((1, n_layers), dtype=np.float32)
    for i, t in enumerate(scheduler.timesteps):
        if on_step is not None:
            on_step(i)
        guided = guided_run and start <= i < end
        if guided:
            assert conditions.null is not None  # guided_run requires it
            branches = [conditions.cond]
            if conditions.text_only is not None:
                branches.append(conditions.text_only)
            branches.append(conditions.null)
            erg = [False] * (len(branches) - 1) + [params.use_erg_diffusion]
            batch = len(branches)
            v_all = run(
                {
                    "latents": np.repeat(x, batch, axis=0),
                    "timestep": np.full((batch,), t, dtype=np.float32),
                    "cond": np.concatenate(branches, axis=0),
                    "cond_mask": np.repeat(conditions.mask, batch, axis=0),
                    "q_scale": erg_scale_rows(n_layers, erg_layers, erg_scale, erg),
                }
            )
            v_cond, v_uncond = v_all[:1], v_all[-1:]
            if double:
                v = guidance.double_condition(
                    v_cond,
                    v_all[1:2],
                    v_uncond,
                    params.guidance_scale_text,
                    params.guidance_scale_lyric,
                )
            else:
                scale = guidance.guidance_scale_at(
                    i,
                    start,
                    end,
                    params.guidance_scale,
                    params.guidance_interval_decay,
                    params.min_guidance_scale,
                )
                if params.cfg_type == "apg":
                    v = guidance.apg(v_cond, v_uncond, scale, momentum)
                elif params.cfg_type == "cfg":
                    v = guidance.cfg(v_cond, v_uncond, scale)
                else:
                    v = guidance.cfg_star(v_cond, v_uncond, scale, i)
        else:
            v = run(
                {
                    "latents": x,
                    "timestep": np.full((1,), t, dtype=np.float32),
                    "cond": conditions.cond,
                    "cond_mask": conditions.mask,
                    "q_scale": ones,
                }
            )
        noise = rng.standard_normal(x.shape, dtype=np.float32) if scheduler.needs_noise else None
        x = scheduler.step(
            v.astype(np.float32, copy=False), x, omega=params.omega_scale, noise=noise
        )
    return x
