"""FlowEdit in torch float32, written from ``acestep/pipeline_ace_step.py``:
``flowedit_diffusion_process`` and ``calc_v``.

Euler timesteps always; no ERG, no guidance interval, no omega. With guidance, each prediction is a
conditional and an unconditional pass, the unconditional one with zero text, speaker, lyric ids and
lyric mask. The source prediction feeds one momentum buffer; the target prediction has no momentum
before ``n_max`` and its own buffer from ``n_max`` on (``momentum_buffer_tar`` is only passed then).
Every forward noise comes from ``draw``, in upstream order: ``n_avg`` per step in
``[n_min, n_max)``, one more at ``i == n_max``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import guidance
from .conditions import TorchPipeline
from .schedulers import make_schedule
from .settings import Settings

Branch = tuple[torch.Tensor, torch.Tensor]  # (condition sequence, mask)


def _branches(pipe: TorchPipeline, prompt: str) -> tuple[Branch, Branch]:
    text, text_mask = pipe.text_embeddings(prompt)
    ids = torch.zeros(1, 1, dtype=torch.long)
    lyric_mask = torch.zeros(1, 1, dtype=torch.long)
    cond = pipe.encode(text, text_mask, ids, lyric_mask)
    null = pipe.encode(torch.zeros_like(text), text_mask, ids * 0, lyric_mask * 0)
    return cond, null


def _velocity(
    pipe: TorchPipeline,
    s: Settings,
    z: torch.Tensor,
    t: torch.Tensor,
    branches: tuple[Branch, Branch],
    buffer: guidance.MomentumBuffer | None,
) -> torch.Tensor:
    """One side of ``calc_v``."""
    (cond, cond_mask), (null, null_mask) = branches
    v_cond = pipe.velocity(z, t, cond, cond_mask)
    if not s.do_cfg:
        return v_cond
    v_uncond = pipe.velocity(z, t, null, null_mask)
    if s.cfg_type == "apg":
        return guidance.apg(v_cond, v_uncond, s.guidance_scale, buffer)
    if s.cfg_type == "cfg":
        return guidance.cfg(v_cond, v_uncond, s.guidance_scale)
    raise ValueError(f"calc_v has no {s.cfg_type!r} branch")


def flowedit(
    pipe: TorchPipeline,
    s: Settings,
    target_prompt: str,
    src_latents: torch.Tensor,
    draw: Callable[[], torch.Tensor],
    n_min: float = 0.0,
    n_max: float = 1.0,
    n_avg: int = 1,
) -> torch.Tensor:
    """Edit ``src_latents`` from ``s.prompt`` towards ``target_prompt``; returns the latents."""
    schedule = make_schedule("euler", s.infer_steps)
    timesteps = schedule.timesteps
    source, target = _branches(pipe, s.prompt), _branches(pipe, target_prompt)
    momentum, momentum_tar = guidance.MomentumBuffer(), guidance.MomentumBuffer()
    x_src = src_latents.to(torch.float32)
    zt_edit = x_src.clone()
    xt_tar: torch.Tensor | None = None
    first, last = int(s.infer_steps * n_min), int(s.infer_steps * n_max)
    for i, t in enumerate(timesteps):
        if i < first:
            continue
        t_i = t / 1000
        t_next = timesteps[i + 1] / 1000 if i + 1 < len(timesteps) else torch.zeros_like(t_i)
        if i < last:
            v_delta = torch.zeros_like(x_src)
            for _ in range(n_avg):
                zt_src = (1 - t_i) * x_src + t_i * draw()
                zt_tar = zt_edit + zt_src - x_src
                v_src = _velocity(pipe, s, zt_src, t, source, momentum)
                v_tar = _velocity(pipe, s, zt_tar, t, target, None)
                v_delta += (1 / n_avg) * (v_tar - v_src)
            zt_edit = zt_edit.to(torch.float32) + (t_next - t_i) * v_delta
            continue
        if i == last:
            sigma = schedule.sigmas[i]  # scheduler._init_step_index(t): t's own index
            xt_src = sigma * draw() + (1.0 - sigma) * x_src
            xt_tar = zt_edit + xt_src - x_src
        assert xt_tar is not None  # i > n_max is reached only through i == n_max
        v_tar = _velocity(pipe, s, xt_tar, t, target, momentum_tar)
        xt_tar = xt_tar.to(torch.float32) + (t_next - t_i) * v_tar
    return zt_edit if xt_tar is None else xt_tar
