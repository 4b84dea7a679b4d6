"""``text2music_diffusion_process`` in torch float32: text2music, retake, repaint, extend, audio2audio.

Written from ``acestep/pipeline_ace_step.py``: ``text2music_diffusion_process`` (the noise set-up of
retake/repaint/extend, the guided loop, the masked Euler of repaint and extend) and
``add_latents_noise`` (audio2audio). Every random tensor is given by the caller, so both sides of a
parity test see the same noise: ``x_t`` (the main seed's first draw), ``retake_noise`` (the retake
seed's draw) and ``step_noise`` (the main seed's next draw, once per pingpong step).

Two inputs differ from upstream on purpose (see ``docs/tasks.md``): the repaint/extend region is
given in frames (upstream converts seconds with ``int(s * 44100 / 4096)``, which callers do), and
the extend retake noise may be longer than the source (``max(T_src, left, right)`` frames; upstream
draws ``T_src`` frames and fails when one side is longer). Extending past 2583 frames is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import guidance
from .conditions import Conditions, TorchPipeline
from .schedulers import Stepper, make_schedule
from .settings import MAX_FRAMES, Settings

NoiseSource = Callable[[], torch.Tensor]


@dataclass(frozen=True)
class Task:
    """``name`` is text2music, retake, repaint, extend or audio2audio.

    ``start_frame``/``end_frame``: ``repaint_start_frame``/``repaint_end_frame`` of upstream
    (retake: 0 and T; extend: ``-left`` and ``T_src + right``). Upstream turns a repaint of the
    whole source into a retake that ignores the source; ``always_masked`` keeps it a masked repaint
    instead, as the project does (``docs/tasks.md``).
    """

    name: str = "text2music"
    retake_variance: float = 0.5
    start_frame: int = 0
    end_frame: int = 0
    ref_strength: float = 0.5
    always_masked: bool = False


def guided_velocity(
    pipe: TorchPipeline,
    s: Settings,
    conds: Conditions,
    x: torch.Tensor,
    t: torch.Tensor,
    i: int,
    bounds: tuple[int, int],
    momentum: guidance.MomentumBuffer,
) -> torch.Tensor:
    """One loop iteration's velocity: guided inside the interval, conditional outside it."""
    start, end = bounds
    if not (s.do_cfg and start <= i < end):
        return pipe.velocity(x, t, conds.cond, conds.mask)
    scale = guidance.scale_at(
        i, start, end, s.guidance_scale, s.guidance_interval_decay, s.min_guidance_scale
    )
    v_cond = pipe.velocity(x, t, conds.cond, conds.mask)
    v_text = None
    if s.double_condition and conds.text_only is not None:
        v_text = pipe.velocity(x, t, conds.text_only, conds.mask)
    v_uncond = pipe.velocity(x, t, conds.null, conds.mask, erg=s.use_erg_diffusion)
    if v_text is not None:
        return guidance.double_condition(
            v_cond, v_uncond, v_text, s.guidance_scale_text, s.guidance_scale_lyric
        )
    if s.cfg_type == "apg":
        return guidance.apg(v_cond, v_uncond, scale, momentum)
    if s.cfg_type == "cfg":
        return guidance.cfg(v_cond, v_uncond, scale)
    if s.cfg_type == "cfg_star":
        return guidance.cfg_star(v_cond, v_uncond, scale, i)
    raise ValueError(f"unknown cfg_type {s.cfg_type!r}")


@dataclass
class _Repaint:
    """The state of a masked run (repaint or extend): source, start noise, mask, first step."""

    x0: torch.Tensor
    z0: torch.Tensor
    mask: torch.Tensor
    n_min: int


def _retake_setup(
    task: Task, x_t: torch.Tensor, retake: torch.Tensor, src: torch.Tensor | None, steps: int
) -> tuple[torch.Tensor, _Repaint | None]:
    """The ``add_retake_noise`` block: a mixed start (retake) or a masked run (repaint, extend)."""
    frames = x_t.shape[-1]
    theta = torch.tensor(task.retake_variance * math.pi / 2, dtype=torch.float32)
    n_min = int(steps * (1 - task.retake_variance))
    s0, s1 = task.start_frame, task.end_frame
    is_extend = s0 < 0 or s1 > frames
    if s1 - s0 == frames and not is_extend and not task.always_masked:  # retake
        return torch.cos(theta) * x_t + torch.sin(theta) * retake, None
    if src is None:
        raise ValueError(f"{task.name} needs source latents")
    if not is_extend:
        mask = torch.zeros_like(x_t)
        mask[..., s0:s1] = 1.0
        mixed = torch.cos(theta) * x_t + torch.sin(theta) * retake
        return x_t, _Repaint(src, torch.where(mask == 1.0, mixed, x_t), mask, n_min)
    left, right = max(0, -s0), max(0, s1 - frames)
    x0 = F.pad(src, (left, right), "constant", 0)
    if x0.shape[-1] > MAX_FRAMES:
        raise ValueError(f"extend to {x0.shape[-1]} frames; the cap is {MAX_FRAMES}")
    mask = torch.zeros_like(x0)
    pieces = [x_t]
    if left:
        mask[..., :left] = 1.0
        pieces.insert(0, retake[..., :left])
    if right:
        mask[..., -right:] = 1.0
        pieces.append(retake[..., -right:])
    return x_t, _Repaint(x0, torch.cat(pieces, dim=-1), mask, n_min)


def diffuse(
    pipe: TorchPipeline,
    s: Settings,
    task: Task,
    x_t: torch.Tensor,
    *,
    retake_noise: torch.Tensor | None = None,
    src_latents: torch.Tensor | None = None,
    ref_latents: torch.Tensor | None = None,
    step_noise: NoiseSource | None = None,
) -> torch.Tensor:
    """Run ``text2music_diffusion_process`` for ``task``; returns the final latents."""
    schedule = make_schedule(s.scheduler_type, s.infer_steps)
    num_steps = s.infer_steps
    target = x_t.to(torch.float32)
    repaint: _Repaint | None = None
    if task.name in ("retake", "repaint", "extend"):
        if retake_noise is None:
            raise ValueError(f"{task.name} needs the retake noise")
        target, repaint = _retake_setup(task, target, retake_noise, src_latents, s.infer_steps)
    if task.name == "audio2audio":  # add_latents_noise
        if ref_latents is None:
            raise ValueError("audio2audio needs reference latents")
        sigma_max = 1 - task.ref_strength
        num_steps = int(sigma_max * s.infer_steps)
        schedule = make_schedule(s.scheduler_type, num_steps, sigma_max)
        target = ref_latents * (1 - schedule.sigma_max) + target * schedule.sigma_max
    bounds = guidance.interval(num_steps, s.guidance_interval)
    momentum = guidance.MomentumBuffer()
    conds = pipe.conditions(s)
    stepper = Stepper(schedule, s.omega_scale)
    timesteps = schedule.timesteps
    for i, t in enumerate(timesteps):
        if repaint is not None:
            if i < repaint.n_min:
                continue
            if i == repaint.n_min:
                t_i = t / 1000
                zt_src = (1 - t_i) * repaint.x0 + t_i * repaint.z0
                target = repaint.x0.clone() + zt_src - repaint.x0
        v = guided_velocity(pipe, s, conds, target, t, i, bounds, momentum)
        if repaint is not None:  # plain Euler, then the noised source outside the mask
            t_i = t / 1000
            t_next = timesteps[i + 1] / 1000 if i + 1 < len(timesteps) else torch.zeros_like(t_i)
            target = target.to(torch.float32) + (t_next - t_i) * v
            zt_src = (1 - t_next) * repaint.x0 + t_next * repaint.z0
            target = torch.where(repaint.mask == 1.0, target, zt_src)
        else:
            noise = None
            if s.scheduler_type == "pingpong":
                if step_noise is None:
                    raise ValueError("pingpong needs step noise")
                noise = step_noise()
            target = stepper.step(v, target, noise)
    return target
