"""Set-up of the source tasks' denoising loops: retake noise, repaint and extend plans, audio2audio.

Upstream: ``acestep/pipeline_ace_step.py: ACEStepPipeline.text2music_diffusion_process`` (the
``add_retake_noise`` block) and ``ACEStepPipeline.add_latents_noise``; spec sections 13.1-13.4.
Everything here is numpy on latents ``[1, C, H, T]`` (``[1, 8, 16, T]`` for ACE-Step); the loop
itself is :func:`lofi_daemon.pipeline.denoise.denoise`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model.layout import SAMPLE_RATE_MODEL, SAMPLES_PER_LATENT_FRAME
from lofi_daemon.pipeline.schedulers import FlowMatchScheduler, make_scheduler

MAX_FRAMES: Final = 2583  # int(240 * 44100 / 512 / 8): upstream's max_infer_fame_length


@dataclass(frozen=True)
class RepaintPlan:
    """What the repaint loop of :func:`lofi_daemon.pipeline.denoise.denoise` needs.

    Attributes:
        mask: ``[1, C, H, T]`` float32, 1 on the frames to regenerate, 0 elsewhere.
        x0: ``[1, C, H, T]`` float32 ground truth (the source, zero-padded for extend).
        z0: ``[1, C, H, T]`` float32 noise the loop noises ``x0`` towards.
        n_min: the loop index where repainting starts; earlier indices make no network call.
    """

    mask: np.ndarray
    x0: np.ndarray
    z0: np.ndarray
    n_min: int


def _latents(name: str, array: np.ndarray) -> np.ndarray:
    a = np.asarray(array)
    if a.ndim != 4 or a.shape[0] != 1 or not np.issubdtype(a.dtype, np.floating):
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"{name} must be float latents of shape [1, C, H, T], got {a.dtype} {list(a.shape)}",
        )
    return a.astype(np.float32, copy=False)


def _same_shape(name: str, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    a = _latents(name, array)
    if a.shape != shape:
        raise LofiError(
            errors.INVALID_PARAMETER, f"{name} must have shape {list(shape)}, got {list(a.shape)}"
        )
    return a


def _n_min(variance: float, n_steps: int, task: str) -> int:
    """``int(N * (1 - variance))``; variance 0 would repaint nothing, so it is refused."""
    if not 0.0 < variance <= 1.0:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"retake_variance must be in (0, 1] for {task}, got {variance}",
        )
    if n_steps < 1:
        raise LofiError(errors.INVALID_PARAMETER, f"steps must be at least 1, got {n_steps}")
    return int(n_steps * (1 - variance))


def mix_retake_noise(noise: np.ndarray, retake_noise: np.ndarray, variance: float) -> np.ndarray:
    """``cos(θ) noise + sin(θ) retake_noise`` with ``θ = variance π / 2`` (spec section 13.1).

    Both inputs have the same shape; the result is float32. Variance 0 returns ``noise``
    exactly; variance 1 returns ``retake_noise`` up to ``cos(π/2)`` rounding. Upstream holds θ in
    the model dtype; here it is float32.
    """
    a = np.asarray(noise, dtype=np.float32)
    b = np.asarray(retake_noise, dtype=np.float32)
    if a.shape != b.shape:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"retake noise shape {list(b.shape)} != noise shape {list(a.shape)}",
        )
    theta = np.float32(variance * math.pi / 2)
    return np.cos(theta) * a + np.sin(theta) * b


def repaint_plan(
    src: np.ndarray,
    noise: np.ndarray,
    retake_noise: np.ndarray,
    s0: int,
    s1: int,
    variance: float,
    n_steps: int,
) -> RepaintPlan:
    """Plan a repaint of frames ``[s0, s1)`` of ``src`` (spec section 13.2).

    Args:
        src: source latents ``[1, C, H, T]``.
        noise: the main noise x_T, same shape.
        retake_noise: the retake-seed noise, same shape.
        s0, s1: the frame range, ``0 <= s0 < s1 <= T`` (see :func:`lofi_daemon.pipeline.params.seconds_to_frames`).
        variance: retake variance in (0, 1]; ``n_min = int(n_steps * (1 - variance))``.
        n_steps: the requested number of steps N.

    Unlike upstream, a range covering the whole source (``s0 = 0, s1 = T``) stays a masked
    repaint; upstream turns it silently into a retake.

    Raises:
        LofiError: INVALID_PARAMETER for a bad range, variance or shape.
    """
    x0 = _latents("source latents", src)
    x_t = _same_shape("noise", noise, x0.shape)
    retake = _same_shape("retake noise", retake_noise, x0.shape)
    frames = x0.shape[-1]
    if not 0 <= s0 < s1 <= frames:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"repaint frames [{s0}, {s1}) must lie inside the source's [0, {frames}) "
            "and hold at least one frame",
        )
    n_min = _n_min(variance, n_steps, "repaint")
    mask = np.zeros(x0.shape, dtype=np.float32)
    mask[..., s0:s1] = 1.0
    z0 = np.where(mask == 1.0, mix_retake_noise(x_t, retake, variance), x_t)
    return RepaintPlan(mask=mask, x0=x0, z0=z0.astype(np.float32, copy=False), n_min=n_min)


def extend_plan(
    src: np.ndarray,
    noise: np.ndarray,
    retake_noise: np.ndarray,
    left: int,
    right: int,
    variance: float,
    n_steps: int,
) -> RepaintPlan:
    """Plan an extension of ``src`` by ``left`` and ``right`` frames (spec section 13.3).

    ``x0`` is ``src`` zero-padded to ``left + T + right`` frames, the mask is 1 on the padding,
    and ``z0 = cat(retake[..., :left], noise, retake[..., -right:])``.

    Args:
        src: source latents ``[1, C, H, T]``.
        noise: the main noise x_T, ``[1, C, H, T]``.
        retake_noise: ``[1, C, H, max(T, left, right)]``. Upstream draws it with T frames, which
            breaks when one side is longer than the source; with T frames or more this agrees
            with upstream.
        left, right: frames to add, both ``>= 0``, at least one ``> 0``, and
            ``left + T + right <= MAX_FRAMES`` (upstream crops and restores wrongly above that;
            this refuses instead).
        variance: retake variance in (0, 1] (extend's default 1.0 gives ``n_min = 0``).
        n_steps: the requested number of steps N.

    Raises:
        LofiError: INVALID_PARAMETER for bad lengths, variance or shapes.
    """
    x_src = _latents("source latents", src)
    c, h, frames = x_src.shape[1], x_src.shape[2], x_src.shape[3]
    if left < 0 or right < 0 or left + right == 0:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"extend needs left and right frame counts >= 0, at least one > 0; "
            f"got left={left}, right={right}",
        )
    total = left + frames + right
    if total > MAX_FRAMES:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"the extended track would have {total} latent frames "
            f"({total * SAMPLES_PER_LATENT_FRAME / SAMPLE_RATE_MODEL:.1f} s); the limit is {MAX_FRAMES} "
            f"frames (240 s)",
        )
    x_t = _same_shape("noise", noise, x_src.shape)
    retake = _same_shape("retake noise", retake_noise, (1, c, h, max(frames, left, right)))
    n_min = _n_min(variance, n_steps, "extend")
    pad = ((0, 0), (0, 0), (0, 0), (left, right))
    x0 = np.pad(x_src, pad)
    mask = np.pad(np.zeros_like(x_src), pad, constant_values=1.0)
    z0 = np.concatenate([retake[..., :left], x_t, retake[..., retake.shape[-1] - right :]], axis=-1)
    return RepaintPlan(mask=mask, x0=x0, z0=z0, n_min=n_min)


def audio2audio_start(
    ref: np.ndarray,
    noise: np.ndarray,
    strength: float,
    scheduler: str,
    n_steps: int,
    shift: float,
) -> tuple[np.ndarray, FlowMatchScheduler]:
    """Noise the reference latents for audio2audio (``add_latents_noise``, spec section 13.4).

    The scheduler is built with ``sigma_max = 1 - strength`` and ``N' = int((1 - strength) N)``
    steps; its first timestep is the twice-shifted ``sigma_max`` (900 at strength 0.5). The start
    is ``ref (1 - σ) + noise σ`` with the once-shifted σ (``scheduler.sigma_max``, 0.75 at
    strength 0.5), as upstream does. The normal loop then runs over that scheduler, its guidance
    interval computed on N'.

    Args:
        ref: reference latents ``[1, C, H, T]``.
        noise: the main noise x_T, same shape.
        strength: ``ref_strength``, ``0 <= strength < 1``.
        scheduler: ``"euler"``, ``"heun"`` or ``"pingpong"``.
        n_steps: the requested number of steps N.
        shift: the timestep shift (the model's ``scheduler_shift``).

    Returns:
        ``(x_start [1, C, H, T] float32, a fresh scheduler)``.

    Raises:
        LofiError: INVALID_PARAMETER for a strength out of range, ``N' < 1`` or bad shapes.
    """
    if not 0.0 <= strength < 1.0:
        raise LofiError(errors.INVALID_PARAMETER, f"ref_strength must be in [0, 1), got {strength}")
    sigma_max = 1.0 - strength
    steps = int(sigma_max * n_steps)
    if steps < 1:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"ref_strength {strength} with infer_steps {n_steps} leaves int((1 - ref_strength) "
            f"* infer_steps) = {steps} denoising steps; lower ref_strength or raise infer_steps",
        )
    x_ref = _latents("reference latents", ref)
    x_t = _same_shape("noise", noise, x_ref.shape)
    sched = make_scheduler(scheduler, steps, shift, sigma_max=sigma_max)
    sigma = sched.sigma_max
    start = x_ref * np.float32(1.0 - sigma) + x_t * np.float32(sigma)
    return start.astype(np.float32, copy=False), sched
