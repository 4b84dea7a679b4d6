"""What one generation's arrays look like before any model runs: frames, context, noise.

Frame count and context follow upstream ``ConditioningTargetMixin.
_prepare_target_latents_and_wavs`` (``max(128, T)`` frames, ``silence_latent`` tiled) and
``ConditioningMaskMixin._build_chunk_masks_and_src_latents`` (text2music: silence as the source,
chunk mask 1.0). The noise is a PCG64 standard-normal draw from the seed, as v1's
(:func:`lofi_daemon.pipeline.task_setup.draw_noises`); upstream's torch draw cannot be matched,
so parity runs inject the noise instead.
"""

from __future__ import annotations

import numpy as np

from lofi_daemon.pipeline.task_setup import checked_noise


def silence_slice(silence: np.ndarray, frames: int) -> np.ndarray:
    """The first ``frames`` frames of ``silence`` ``[F, C]``, tiled when it is shorter
    (upstream ``_get_silence_latent_slice``)."""
    available = silence.shape[0]
    if frames <= available:
        return np.asarray(silence[:frames], dtype=np.float32)
    repeats = -(-frames // available)
    return np.tile(np.asarray(silence, dtype=np.float32), (repeats, 1))[:frames]


def context_latents(silence: np.ndarray, frames: int) -> np.ndarray:
    """``[1, T, 2C]``: the silence source and a chunk mask of ones (text2music)."""
    src = silence_slice(silence, frames)
    return np.concatenate([src, np.ones_like(src)], axis=-1)[None].astype(np.float32)


def noise_shape(frames: int, channels: int) -> tuple[int, int, int]:
    return (1, frames, channels)


def draw_noise(
    seed: int, frames: int, channels: int, initial_noise: np.ndarray | None = None
) -> np.ndarray:
    """x_T ``[1, T, C]`` float32: from ``seed``, or ``initial_noise`` in its place (checked:
    shape, float, finite; INVALID_PARAMETER naming the expected shape otherwise)."""
    shape = noise_shape(frames, channels)
    injected = checked_noise("initial noise", initial_noise, shape)
    if injected is not None:
        return injected
    rng = np.random.Generator(np.random.PCG64(seed))
    return rng.standard_normal(shape, dtype=np.float32)
