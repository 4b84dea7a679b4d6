"""Classifier-free guidance for ACE-Step v1 in numpy: interval, scale decay and combiners.

Follows ``acestep/apg_guidance.py`` and the loop in ``text2music_diffusion_process`` (spec
section 7). Guidance applies only for loop indices ``start <= i < end`` (see
:func:`guidance_interval`) and only when :func:`cfg_enabled`. Inside the interval the
combination is, in order of priority:

1. :func:`double_condition` when :func:`double_condition_enabled` (three passes; ignores the
   cfg type and the decayed scale);
2. otherwise the cfg type: :func:`apg` (the default), :func:`cfg` or :func:`cfg_star`.

Every combiner takes velocity predictions of shape ``[B, C, H, T]`` (``[B, 8, 16, T]`` for
ACE-Step) and returns float32 of the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

DEFAULT_MOMENTUM: Final = -0.75
DEFAULT_NORM_THRESHOLD: Final = 2.5
# APG norms and projections run over the (height, time) plane of each (batch, channel).
_PLANE_AXES: Final = (-2, -1)
# Floor of the v_cond norm in the projection (torch.nn.functional.normalize's eps).
_NORMALIZE_EPS: Final = 1e-12
# Added to ||v_uncond||^2 in the CFG-Zero* scale.
_CFG_STAR_EPS: Final = 1e-8


def guidance_interval(num_steps: int, interval: float) -> tuple[int, int]:
    """Return ``(start, end)``: guidance applies at loop indices ``start <= i < end``.

    ``start = int(N * (1 - interval) / 2)``, ``end = int(N * (interval / 2 + 0.5))`` with the
    same float64 arithmetic as the reference. ``num_steps`` is N as requested, also for Heun,
    whose loop has ``2N - 1`` entries (so Heun guides only an early-middle part of its loop).
    With the default 0.5: N=27 gives (6, 20) and N=60 gives (15, 45).

    Raises:
        ValueError: ``num_steps < 0`` or ``interval`` outside [0, 1].
    """
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    if not 0.0 <= interval <= 1.0:
        raise ValueError(f"guidance interval must be within [0, 1], got {interval}")
    start = int(num_steps * ((1 - interval) / 2))
    end = int(num_steps * (interval / 2 + 0.5))
    return start, end


def guidance_scale_at(
    i: int, start: int, end: int, scale: float, decay: float, min_scale: float
) -> float:
    """Return the guidance scale at loop index ``i`` inside the interval ``[start, end)``.

    With ``decay > 0`` the scale falls linearly from ``scale`` at ``start`` towards
    ``min_scale`` at ``end - 1``: ``scale - (scale - min_scale) * progress * decay`` with
    ``progress = (i - start) / (end - start - 1)``. When the interval holds a single step
    (``end - start == 1``) the reference divides by zero; here progress is defined as 0 there,
    so that step uses the full ``scale``.
    """
    if decay <= 0:
        return float(scale)
    span = end - start - 1
    progress = (i - start) / span if span > 0 else 0.0
    return float(scale - (scale - min_scale) * progress * decay)


def cfg_enabled(guidance_scale: float) -> bool:
    """Guidance runs unless the scale is exactly 0 or 1 (this also gates double condition)."""
    return guidance_scale not in (0.0, 1.0)


def double_condition_enabled(scale_text: float, scale_lyric: float) -> bool:
    """Double-condition guidance needs both the text and the lyric scale above 1."""
    return scale_text > 1.0 and scale_lyric > 1.0


@dataclass
class MomentumBuffer:
    """Running average for APG; one buffer per generation, fed only on guided APG steps.

    ``update(x)`` sets ``running_average = x + momentum * running_average``. The buffer holds
    the raw (unclipped) guidance differences. The momentum is negative by default.
    """

    momentum: float = DEFAULT_MOMENTUM
    running_average: np.ndarray | float = 0.0

    def update(self, update_value: np.ndarray) -> np.ndarray:
        """Fold ``update_value`` into the average and return the new average (float32)."""
        x = np.asarray(update_value, dtype=np.float32)
        decayed = np.float32(self.momentum) * np.asarray(self.running_average, dtype=np.float32)
        average = (x + decayed).astype(np.float32, copy=False)
        self.running_average = average
        return average


def _pair(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> tuple[np.ndarray, ...]:
    x = np.asarray(a, dtype=np.float32)
    y = np.asarray(b, dtype=np.float32)
    if x.shape != y.shape:
        raise ValueError(f"{name_a} shape {x.shape} != {name_b} shape {y.shape}")
    return x, y


def _project(diff: np.ndarray, onto: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split ``diff`` into parts parallel and orthogonal to ``onto`` per (H, T) plane.

    Computed in float64 and rounded back to float32, as the reference does.
    """
    d = diff.astype(np.float64)
    c = onto.astype(np.float64)
    norm = np.sqrt(np.sum(c * c, axis=_PLANE_AXES, keepdims=True))
    unit = c / np.maximum(norm, _NORMALIZE_EPS)
    parallel = np.sum(d * unit, axis=_PLANE_AXES, keepdims=True) * unit
    orthogonal = d - parallel
    return parallel.astype(np.float32), orthogonal.astype(np.float32)


def _clip_plane_norm(diff: np.ndarray, threshold: float) -> np.ndarray:
    """Scale each (H, T) plane of ``diff`` so that its L2 norm is at most ``threshold``."""
    norm = np.sqrt(np.sum(np.square(diff, dtype=np.float64), axis=_PLANE_AXES, keepdims=True))
    norm = norm.astype(np.float32)
    with np.errstate(divide="ignore"):
        factor = np.minimum(np.float32(1.0), np.float32(threshold) / norm)
    return diff * factor


def apg(
    v_cond: np.ndarray,
    v_uncond: np.ndarray,
    scale: float,
    buffer: MomentumBuffer | None,
    *,
    norm_threshold: float = DEFAULT_NORM_THRESHOLD,
    eta: float = 0.0,
) -> np.ndarray:
    """Adaptive projected guidance (spec section 7.2, item 3).

    ``d = v_cond - v_uncond``, passed through ``buffer`` (momentum) when one is given, then
    clipped to an L2 norm of ``norm_threshold`` per (batch, channel) over the last two axes.
    The part of ``d`` parallel to ``v_cond`` is removed (kept with weight ``eta``):
    ``v = v_cond + (scale - 1) * (d_orth + eta * d_par)``.

    Args:
        v_cond: conditional velocity ``[B, C, H, T]``.
        v_uncond: unconditional velocity, same shape.
        scale: the guidance scale at this step.
        buffer: the generation's momentum buffer, or None for no momentum.
        norm_threshold: the clip norm; ``<= 0`` disables clipping.
        eta: weight of the parallel component.

    Returns:
        float32 array of the input shape.
    """
    vc, vu = _pair("v_cond", v_cond, "v_uncond", v_uncond)
    if vc.ndim < 2:
        raise ValueError(f"apg needs at least 2 dimensions, got shape {vc.shape}")
    diff = vc - vu
    if buffer is not None:
        diff = buffer.update(diff)
    if norm_threshold > 0:
        diff = _clip_plane_norm(diff, norm_threshold)
    parallel, orthogonal = _project(diff, vc)
    update = orthogonal + np.float32(eta) * parallel
    return vc + np.float32(scale - 1) * update


def cfg(v_cond: np.ndarray, v_uncond: np.ndarray, scale: float) -> np.ndarray:
    """Plain classifier-free guidance: ``v_uncond + scale * (v_cond - v_uncond)``."""
    vc, vu = _pair("v_cond", v_cond, "v_uncond", v_uncond)
    return vu + np.float32(scale) * (vc - vu)


def cfg_star(
    v_cond: np.ndarray,
    v_uncond: np.ndarray,
    scale: float,
    step_index: int,
    *,
    zero_steps: int = 1,
    use_zero_init: bool = True,
) -> np.ndarray:
    """CFG-Zero* (spec section 7.2, item 4).

    Per sample b, ``alpha_b = <v_cond_b, v_uncond_b> / (||v_uncond_b||^2 + 1e-8)`` over all of
    its elements, and ``v = alpha * v_uncond + scale * (v_cond - alpha * v_uncond)``. With
    ``use_zero_init`` the output is all zeros while ``step_index <= zero_steps``; ``step_index``
    is the global loop index, so with the default interval this never triggers.
    """
    vc, vu = _pair("v_cond", v_cond, "v_uncond", v_uncond)
    if use_zero_init and step_index <= zero_steps:
        return np.zeros_like(vc)
    b = vc.shape[0]
    flat_c = vc.reshape(b, -1).astype(np.float64)
    flat_u = vu.reshape(b, -1).astype(np.float64)
    dot = np.sum(flat_c * flat_u, axis=1)
    sq = np.sum(flat_u * flat_u, axis=1) + _CFG_STAR_EPS
    alpha = (dot / sq).astype(np.float32).reshape((b,) + (1,) * (vc.ndim - 1))
    scaled_uncond = alpha * vu
    return scaled_uncond + np.float32(scale) * (vc - scaled_uncond)


def double_condition(
    v_cond: np.ndarray,
    v_textonly: np.ndarray,
    v_uncond: np.ndarray,
    scale_text: float,
    scale_lyric: float,
) -> np.ndarray:
    """Double-condition guidance (spec section 7.2, item 1).

    ``(1 - g_txt) * v_uncond + (g_txt - g_lyr) * v_textonly + g_lyr * v_cond``, i.e.
    ``v_uncond + g_txt * (v_textonly - v_uncond) + g_lyr * (v_cond - v_textonly)``.
    """
    vc, vt = _pair("v_cond", v_cond, "v_textonly", v_textonly)
    _, vu = _pair("v_cond", vc, "v_uncond", v_uncond)
    return (
        np.float32(1 - scale_text) * vu
        + np.float32(scale_text - scale_lyric) * vt
        + np.float32(scale_lyric) * vc
    )
