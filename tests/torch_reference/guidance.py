"""Guidance combiners and the guidance interval in torch, written from ``acestep/apg_guidance.py``.

``MomentumBuffer``, ``apg_forward`` (with ``project``), ``cfg_forward``, ``cfg_zero_star`` and
``cfg_double_condition_forward`` of ``acestep/apg_guidance.py``; the interval and the scale decay of
``acestep/pipeline_ace_step.py: text2music_diffusion_process``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PLANE = (-1, -2)  # APG norms and projections: per (batch, channel) over the [16, T] plane


@dataclass
class MomentumBuffer:
    """One per run; ``running_average`` starts at 0 and is fed the raw guidance difference."""

    momentum: float = -0.75
    running_average: torch.Tensor | float = 0.0

    def update(self, value: torch.Tensor) -> None:
        self.running_average = value + self.momentum * self.running_average


def apg(
    v_cond: torch.Tensor,
    v_uncond: torch.Tensor,
    scale: float,
    buffer: MomentumBuffer | None,
    eta: float = 0.0,
    norm_threshold: float = 2.5,
) -> torch.Tensor:
    """``apg_forward``: momentum, clip of the plane norm, drop the part parallel to ``v_cond``."""
    diff = v_cond - v_uncond
    if buffer is not None:
        buffer.update(diff)
        diff = torch.as_tensor(buffer.running_average)
    if norm_threshold > 0:
        norm = diff.norm(p=2, dim=PLANE, keepdim=True)
        diff = diff * torch.minimum(torch.ones_like(diff), norm_threshold / norm)
    # project(): float64, torch.nn.functional.normalize over the plane (norm floored at 1e-12)
    d64, c64 = diff.double(), v_cond.double()
    c64 = c64 / c64.norm(p=2, dim=PLANE, keepdim=True).clamp_min(1e-12)
    parallel = (d64 * c64).sum(dim=PLANE, keepdim=True) * c64
    orthogonal = d64 - parallel
    update = orthogonal.to(diff.dtype) + eta * parallel.to(diff.dtype)
    return v_cond + (scale - 1) * update


def cfg(v_cond: torch.Tensor, v_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    return v_uncond + scale * (v_cond - v_uncond)


def cfg_star(
    v_cond: torch.Tensor,
    v_uncond: torch.Tensor,
    scale: float,
    i: int,
    zero_steps: int = 1,
    use_zero_init: bool = True,
) -> torch.Tensor:
    """``cfg_zero_star``: zero output while ``i <= zero_steps``, else the optimised-scale CFG."""
    b = v_cond.shape[0]
    flat_c, flat_u = v_cond.reshape(b, -1), v_uncond.reshape(b, -1)
    alpha = (flat_c * flat_u).sum(dim=1, keepdim=True) / (
        (flat_u**2).sum(dim=1, keepdim=True) + 1e-8
    )
    alpha = alpha.view(b, 1, 1, 1)
    if i <= zero_steps and use_zero_init:
        return v_cond * 0.0
    return v_uncond * alpha + scale * (v_cond - v_uncond * alpha)


def double_condition(
    v_cond: torch.Tensor,
    v_uncond: torch.Tensor,
    v_text_only: torch.Tensor,
    scale_text: float,
    scale_lyric: float,
) -> torch.Tensor:
    return (
        (1 - scale_text) * v_uncond
        + (scale_text - scale_lyric) * v_text_only
        + scale_lyric * v_cond
    )


def interval(num_inference_steps: int, guidance_interval: float) -> tuple[int, int]:
    """``(start_idx, end_idx)``: guided loop indices are ``start_idx <= i < end_idx``."""
    start = int(num_inference_steps * ((1 - guidance_interval) / 2))
    end = int(num_inference_steps * (guidance_interval / 2 + 0.5))
    return start, end


def scale_at(i: int, start: int, end: int, scale: float, decay: float, min_scale: float) -> float:
    """The current guidance scale; upstream divides by zero when the interval has one step."""
    if decay > 0:
        progress = (i - start) / (end - start - 1)
        return scale - (scale - min_scale) * progress * decay
    return scale
