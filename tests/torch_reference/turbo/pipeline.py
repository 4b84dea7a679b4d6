"""The turbo text2music path end to end: prompts → conditions → 8 Euler steps → audio.

Loop: ``AceStepConditionGenerationModel.generate_audio`` (turbo) with ``infer_method="ode"``,
Euler, no CFG; the schedule is the fixed ``SHIFT_TIMESTEPS`` table (shift snapped to 1, 2 or 3),
held as a tensor of the model dtype, and the last step returns ``x0 = x - v·t``
(``get_x0_from_noise``). Geometry: ``TaskUtilsMixin.create_target_wavs`` (duration rounded to
0.1 s), ``_prepare_target_latents_and_wavs`` (at least 128 frames, silence latent tiled) and
``_build_chunk_masks_and_src_latents`` / ``preprocess_batch`` (chunk mask 1.0 on every channel,
context = ``[silence | mask]``). The noise is injected by the caller (``prepare_noise`` replaced).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .dit import dit_forward
from .encoders import condition
from .text import (
    LYRIC_MAX_LENGTH,
    TEXT_MAX_LENGTH,
    caption_prompt,
    lyric_embeddings,
    lyric_prompt,
    qwen3_forward,
    tokenize,
)
from .vae import build_vae, finish, tiled_decode
from .weights import Checkpoint, load_checkpoint

SAMPLE_RATE = 48000
HOP = 1920
MIN_FRAMES = 128
VALID_SHIFTS = (1.0, 2.0, 3.0)
# generate_audio's SHIFT_TIMESTEPS, written out as upstream writes them (fix_nfe = 8, no final 0)
SHIFT_TIMESTEPS: dict[float, list[float]] = {
    1.0: [1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125],
    2.0: [
        1.0,
        0.9333333333333333,
        0.8571428571428571,
        0.7692307692307693,
        0.6666666666666666,
        0.5454545454545454,
        0.4,
        0.2222222222222222,
    ],
    3.0: [1.0, 0.9545454545454546, 0.9, 0.8333333333333334, 0.75, 0.6428571428571429, 0.5, 0.3],
}

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def latent_frames(duration: float) -> int:
    """``create_target_wavs`` samples ``// 1920``, at least 128 frames."""
    samples = int(max(0.1, round(duration, 1)) * SAMPLE_RATE)
    return max(MIN_FRAMES, samples // HOP)


def silence_slice(silence_latent: torch.Tensor, length: int) -> torch.Tensor:
    """``_get_silence_latent_slice``: ``[length, C]``, tiled when longer than the tensor."""
    available = silence_latent.shape[1]
    if length <= available:
        return silence_latent[0, :length, :]
    repeats = (length + available - 1) // available
    return silence_latent[0].repeat(repeats, 1)[:length, :]


def context_latents(ck: Checkpoint, frames: int) -> torch.Tensor:
    """``[src = silence | chunk mask = 1.0]`` → ``[1, T, 2C]``."""
    src = silence_slice(ck.silence_latent, frames)[None]
    return torch.cat([src, torch.ones_like(src)], dim=-1)


def turbo_loop(velocity: Velocity, noise: torch.Tensor, shift: float = 3.0) -> torch.Tensor:
    """The ODE branch of ``generate_audio``: ``velocity(x, t [B]) -> v``; returns ``x0``."""
    shift = min(VALID_SHIFTS, key=lambda s: abs(s - shift))
    bsz, dtype = noise.shape[0], noise.dtype
    schedule = torch.tensor(SHIFT_TIMESTEPS[shift], dtype=dtype)
    steps = len(schedule)
    xt = noise
    for i in range(steps):
        current = schedule[i].item()
        t = current * torch.ones((bsz,), dtype=dtype)
        vt = velocity(xt, t)
        if i == steps - 1:
            return xt - vt * t.unsqueeze(-1).unsqueeze(-1)
        dt = current - schedule[i + 1].item()
        xt = xt - vt * (dt * torch.ones((bsz,), dtype=dtype)).unsqueeze(-1).unsqueeze(-1)
    return xt


@dataclass
class Conditions:
    """What the encoders hand the loop, with the ids that produced it."""

    text_ids: torch.Tensor  # [1, Lt]
    lyric_ids: torch.Tensor  # [1, Ly]
    text_hidden: torch.Tensor  # [1, Lt, Dt]
    lyric_embeds: torch.Tensor  # [1, Ly, Dt]
    encoder_hidden_states: torch.Tensor  # [1, Ly + 1 + Lt, H]
    context: torch.Tensor  # [1, T, 2C]


def conditions(
    ck: Checkpoint,
    caption: str,
    lyrics: str,
    language: str,
    metas: dict[str, Any],
    frames: int,
) -> Conditions:
    text_ids = tokenize(ck.tokenizer_dir, caption_prompt(caption, metas), TEXT_MAX_LENGTH)
    lyric_ids = tokenize(ck.tokenizer_dir, lyric_prompt(lyrics, language), LYRIC_MAX_LENGTH)
    with torch.no_grad():
        text_hidden = qwen3_forward(ck, text_ids)
        lyric_embeds = lyric_embeddings(ck, lyric_ids)
        enc, _, _ = condition(ck, text_hidden, lyric_embeds)
    return Conditions(
        text_ids, lyric_ids, text_hidden, lyric_embeds, enc, context_latents(ck, frames)
    )


def reference_generate(
    checkpoint_dir: Path | Checkpoint,
    caption: str,
    lyrics: str,
    language: str,
    metas: dict[str, Any],
    duration: float,
    noise: torch.Tensor,
    shift: float = 3.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Upstream turbo text2music on ``noise [1, T, C]`` → ``(latents [1, T, C], audio [2, N])``.

    ``metas`` is the dict ``_build_metadata_dict`` makes (see ``text.build_metadata``). The audio
    is what upstream hands its writer: ``1920·T`` samples, peak-limited and at −1 dBFS, not
    trimmed to ``duration``."""
    ck = (
        checkpoint_dir
        if isinstance(checkpoint_dir, Checkpoint)
        else load_checkpoint(checkpoint_dir)
    )
    frames = latent_frames(duration)
    if tuple(noise.shape) != (1, frames, ck.silence_latent.shape[-1]):
        raise ValueError(f"noise must be [1, {frames}, C], got {tuple(noise.shape)}")
    cond = conditions(ck, caption, lyrics, language, metas, frames)

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return dit_forward(ck, x, t, cond.encoder_hidden_states, cond.context)

    with torch.no_grad():
        latents = turbo_loop(velocity, noise.to(torch.float32), shift)
        wavs = tiled_decode(build_vae(ck), latents.transpose(1, 2).contiguous())
    return latents, finish(wavs)[0]
