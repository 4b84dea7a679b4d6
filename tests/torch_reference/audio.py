"""The DCAE/vocoder ends of the reference in torch: latents → 48 kHz audio, audio → latents.

Written from ``acestep/music_dcae/music_dcae_pipeline.py: MusicDCAE.decode`` and ``encode``, with
the vocoder's ``mel_transform`` (``acestep/music_dcae/music_log_mel.py: LogMelSpectrogram``, here
``lofi_export.modules.mel.LogMel`` holding the checkpoint's own window and filterbank buffers).

44.1 → 48 kHz: upstream uses ``torchaudio.transforms.Resample`` (a windowed-sinc kernel); the
project writes its files through soxr on purpose (``docs/tasks.md``), so :func:`to_48k` calls the
soxr library with the settings the runtime documents (``VHQ``, ``ceil(N * 160 / 147)`` samples) and
:func:`sinc_resample` is torchaudio's default kernel, for measuring how far the two are apart.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import soxr
import torch
import torch.nn.functional as F
from lofi_export.modules.mel import LogMel
from safetensors.torch import load_file

from .settings import DCAE_SCALE, DCAE_SHIFT, MAX_MEL, MIN_MEL, SAMPLES_PER_FRAME

MEL_WINDOW_KEY = "mel_transform.spectrogram.window"
MEL_FB_KEY = "mel_transform.mel_scale.fb"


def log_mel_module(checkpoint: Path) -> LogMel:
    """The vocoder's ``mel_transform`` with the buffers stored in the checkpoint."""
    state = load_file(str(checkpoint / "music_vocoder" / "diffusion_pytorch_model.safetensors"))
    return LogMel(state[MEL_WINDOW_KEY].float(), state[MEL_FB_KEY].float(), hop_length=512).eval()


def decode(models: Any, latents: torch.Tensor) -> torch.Tensor:
    """``MusicDCAE.decode`` up to the resampler: latents ``[1,8,16,T]`` → ``[2, 4096 T]`` at 44.1 kHz."""
    z = latents / DCAE_SCALE + DCAE_SHIFT
    with torch.no_grad():
        mel = models.dcae_decoder(z) * 0.5 + 0.5
        mel = mel * (MAX_MEL - MIN_MEL) + MIN_MEL
        left = models.vocoder(mel[:, 0]).squeeze(1)  # one channel at a time, as upstream
        right = models.vocoder(mel[:, 1]).squeeze(1)
    return torch.cat([left, right], dim=0)


def to_48k(wave: torch.Tensor) -> np.ndarray:
    """44.1 → 48 kHz with soxr VHQ, ``ceil(N * 160 / 147)`` samples (the project's resampler)."""
    frames = np.ascontiguousarray(wave.numpy().T, dtype=np.float32)
    out = np.asarray(soxr.resample(frames, 44100, 48000, quality="VHQ"), dtype=np.float32).T
    target = -(-wave.shape[-1] * 160 // 147)
    out = out[:, :target]
    return np.pad(out, ((0, 0), (0, target - out.shape[1])))


def sinc_resample(wave: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    """``torchaudio.transforms.Resample(orig, new)`` with its defaults (acestep-v1.md §12).

    Hann-windowed sinc, ``lowpass_filter_width=6``, ``rolloff=0.99``; the kernel is computed in
    float64 (the phase offsets in float32) and applied in float32.
    """
    gcd = math.gcd(orig, new)
    orig, new = orig // gcd, new // gcd
    width_lp, base = 6, min(orig, new) * 0.99
    width = math.ceil(width_lp * orig / base)
    idx = torch.arange(-width, width + orig, dtype=torch.float64)[None, None] / orig
    t = (torch.arange(0, -new, -1, dtype=torch.float32)[:, None, None] / new + idx) * base
    t = t.clamp(-width_lp, width_lp)
    window = torch.cos(t * math.pi / width_lp / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.ones_like(t), t.sin() / t) * window * (base / orig)
    length = wave.shape[-1]
    x = F.pad(wave.reshape(-1, length).to(torch.float32), (width, width + orig))
    out = F.conv1d(x[:, None], kernel.to(torch.float32), stride=orig)
    out = out.transpose(1, 2).reshape(x.shape[0], -1)
    return out[:, : math.ceil(new * length / orig)].reshape(*wave.shape[:-1], -1)


def encode(models: Any, log_mel: LogMel, wave: torch.Tensor) -> torch.Tensor:
    """``MusicDCAE.encode`` after its resampler: ``[2, N]`` at 44.1 kHz → latents ``[1,8,16,T]``.

    Right-pads to a multiple of 4096 samples, log-mel, ``Normalize(0.5, 0.5)`` of the mel scaled
    to [0, 1] (no clamping), DCAE encoder, ``(z - shift_factor) * scale_factor``.
    """
    audio = wave.to(torch.float32)[None]
    if audio.shape[-1] % SAMPLES_PER_FRAME:
        audio = F.pad(audio, (0, SAMPLES_PER_FRAME - audio.shape[-1] % SAMPLES_PER_FRAME))
    with torch.no_grad():
        mel = log_mel(audio[0])[None]
        mel = ((mel - MIN_MEL) / (MAX_MEL - MIN_MEL) - 0.5) / 0.5
        z = models.dcae_encoder(mel)
    return (z - DCAE_SHIFT) * DCAE_SCALE
