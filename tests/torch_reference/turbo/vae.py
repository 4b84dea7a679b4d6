"""The Oobleck VAE decode and the output stage.

The decoder is diffusers' ``AutoencoderOobleck`` built from ``vae/config.json`` with the
checkpoint's ``weight_g``/``weight_v`` loaded strictly. Tiling follows upstream
``VaeDecodeMixin.tiled_decode`` → ``VaeDecodeChunksMixin._tiled_decode_inner`` /
``_tiled_decode_gpu`` with the CPU chunk size of ``_get_auto_decode_chunk_size`` (256) and overlap
64; the output stage is ``_decode_generate_music_pred_latents`` (peak > 1 → divide by the peak)
then ``audio_utils.normalize_audio(target_db=-1.0)``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from diffusers import AutoencoderOobleck

from .weights import Checkpoint

CPU_CHUNK = 256
OVERLAP = 64
MIN_OVERLAP = 4


def build_vae(ck: Checkpoint) -> Any:
    """``AutoencoderOobleck`` from the checkpoint's config and weights, float32, eval."""
    config = {k: v for k, v in ck.vae_config.items() if not k.startswith("_")}
    vae: Any = AutoencoderOobleck(**config)
    vae.load_state_dict(ck.vae, strict=True)
    return vae.eval().to(torch.float32)


def _decode(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out: torch.Tensor = vae.decode(latents).sample
    return out


def tiled_decode(
    vae: Any,
    latents: torch.Tensor,
    chunk_size: int = CPU_CHUNK,
    overlap: int = OVERLAP,
) -> torch.Tensor:
    """``_tiled_decode_inner`` for one item: ``[1, C, T]`` → ``[1, 2, 1920·T]``."""
    frames = latents.shape[-1]
    effective = overlap
    while chunk_size - 2 * effective <= 0 and effective > MIN_OVERLAP:
        effective //= 2
    if effective < MIN_OVERLAP and overlap >= MIN_OVERLAP:
        effective = MIN_OVERLAP
    overlap = effective
    if frames <= chunk_size:
        return _decode(vae, latents)
    stride = chunk_size - 2 * overlap
    pieces = []
    factor: float | None = None
    for i in range(math.ceil(frames / stride)):
        core_start = i * stride
        core_end = min(core_start + stride, frames)
        win_start = max(0, core_start - overlap)
        win_end = min(frames, core_end + overlap)
        chunk = latents[:, :, win_start:win_end]
        audio = _decode(vae, chunk)
        if factor is None:
            factor = audio.shape[-1] / chunk.shape[-1]
        trim_start = round((core_start - win_start) * factor)
        trim_end = round((win_end - core_end) * factor)
        end = audio.shape[-1] - trim_end if trim_end > 0 else audio.shape[-1]
        pieces.append(audio[:, :, trim_start:end])
    return torch.cat(pieces, dim=-1)


def finish(wavs: torch.Tensor) -> torch.Tensor:
    """Peak-limit to 1 per item, then ``normalize_audio`` to −1 dBFS (global peak; left as it
    is below 1e-6)."""
    wavs = wavs.float()
    peak = wavs.abs().amax(dim=[1, 2], keepdim=True)
    if torch.any(peak > 1.0):
        wavs = wavs / peak.clamp(min=1.0)
    top = torch.max(torch.abs(wavs))
    if top < 1e-6:
        return wavs
    return wavs * ((10 ** (-1.0 / 20.0)) / top)
