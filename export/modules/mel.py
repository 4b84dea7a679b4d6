"""Log-mel front-end of the ACE-Step vocoder: filterbank builder and a torch reference.

Upstream: ``acestep/music_dcae/music_log_mel.py: LogMelSpectrogram``, held by the vocoder as
``mel_transform`` and used on the encode path. The official checkpoint stores the Hann window and the
mel filterbank as 16-bit buffers (``mel_transform.spectrogram.window`` and
``mel_transform.mel_scale.fb``); parity with the reference needs those loaded values. The builders
here recreate them from their definition, which is what a freshly constructed (for example tiny,
random-weight) vocoder holds.

:class:`LogMel` keeps its two buffers under the same sub-module names as the original, so a
vocoder that owns one as ``mel_transform`` has the official state-dict keys.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Slaney mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above it, with 27 mels
# spanning a factor of 6.4 in frequency.
_SLANEY_HZ_PER_MEL = 200.0 / 3.0
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_BREAK_MEL = _SLANEY_BREAK_HZ / _SLANEY_HZ_PER_MEL
_SLANEY_LOG_STEP = math.log(6.4) / 27.0

MAGNITUDE_EPS = 1e-6
"""Added to re² + im² before the square root."""
LOG_FLOOR = 1e-5
"""Mel energies are clamped to at least this before the natural log."""


def hz_to_mel_slaney(freq: np.ndarray | float) -> np.ndarray:
    """Convert frequencies in Hz to Slaney mels (float64)."""
    hz = np.asarray(freq, dtype=np.float64)
    linear = hz / _SLANEY_HZ_PER_MEL
    above = _SLANEY_BREAK_MEL + np.log(np.maximum(hz, _SLANEY_BREAK_HZ) / _SLANEY_BREAK_HZ) / (
        _SLANEY_LOG_STEP
    )
    return np.where(hz >= _SLANEY_BREAK_HZ, above, linear)


def mel_to_hz_slaney(mel: np.ndarray | float) -> np.ndarray:
    """Convert Slaney mels to frequencies in Hz (float64); the inverse of :func:`hz_to_mel_slaney`."""
    m = np.asarray(mel, dtype=np.float64)
    linear = m * _SLANEY_HZ_PER_MEL
    above = _SLANEY_BREAK_HZ * np.exp(
        _SLANEY_LOG_STEP * (np.maximum(m, _SLANEY_BREAK_MEL) - _SLANEY_BREAK_MEL)
    )
    return np.where(m >= _SLANEY_BREAK_MEL, above, linear)


def slaney_mel_filterbank(
    n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int
) -> np.ndarray:
    """Build triangular mel filters with Slaney scale and Slaney area normalisation.

    Same definition as torchaudio's ``melscale_fbanks(..., norm="slaney", mel_scale="slaney")``:
    ``n_mels + 2`` points equally spaced in mel between ``f_min`` and ``f_max`` give each filter's
    lower edge, centre and upper edge; the filters are evaluated at the one-sided FFT bin
    frequencies ``linspace(0, sample_rate // 2, n_freqs)`` and scaled by
    ``2 / (f_upper - f_lower)`` so that each triangle has unit area in Hz.

    The values are computed in float64 and rounded once to float32, so they can differ from
    torchaudio's float32 arithmetic in the last bits.

    Args:
        n_freqs: Number of FFT bins (``n_fft // 2 + 1``).
        f_min: Lowest filter edge in Hz.
        f_max: Highest filter edge in Hz.
        n_mels: Number of filters.
        sample_rate: Sample rate of the audio in Hz.

    Returns:
        float32 array ``[n_freqs, n_mels]``.
    """
    if n_freqs < 2 or n_mels < 1:
        raise ValueError(f"need n_freqs >= 2 and n_mels >= 1, got {n_freqs} and {n_mels}")
    if not 0.0 <= f_min < f_max:
        raise ValueError(f"need 0 <= f_min < f_max, got f_min={f_min}, f_max={f_max}")
    bin_hz = np.linspace(0.0, float(sample_rate // 2), n_freqs)
    edges_mel = np.linspace(hz_to_mel_slaney(f_min), hz_to_mel_slaney(f_max), n_mels + 2)
    edges_hz = mel_to_hz_slaney(edges_mel)
    lower, centre, upper = edges_hz[:-2], edges_hz[1:-1], edges_hz[2:]
    rising = (bin_hz[:, None] - lower) / (centre - lower)
    falling = (upper - bin_hz[:, None]) / (upper - centre)
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    return (triangles * (2.0 / (upper - lower))).astype(np.float32)


def hann_window_periodic(n: int) -> np.ndarray:
    """Periodic Hann window of length ``n`` (as ``torch.hann_window(n)``), float32."""
    if n < 1:
        raise ValueError(f"window length must be positive, got {n}")
    k = np.arange(n, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * k / n)).astype(np.float32)


class _WindowHolder(nn.Module):
    """Holds the analysis window as ``window`` (key ``spectrogram.window``)."""

    window: torch.Tensor

    def __init__(self, window: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("window", window)


class _FilterbankHolder(nn.Module):
    """Holds the mel filterbank ``[n_freqs, n_mels]`` as ``fb`` (key ``mel_scale.fb``)."""

    fb: torch.Tensor

    def __init__(self, fb: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("fb", fb)


class LogMel(nn.Module):
    """Torch reference of the vocoder's log-mel spectrogram (upstream ``LogMelSpectrogram.forward``).

    Steps: reflect-pad by ``(n_fft - hop) // 2`` on the left and ``(n_fft - hop + 1) // 2`` on the
    right, STFT without centring (one-sided, window = ``window``), magnitude
    ``sqrt(re² + im² + 1e-6)``, projection on the filterbank, ``log(max(·, 1e-5))``.
    For an input length that is a multiple of ``hop`` this gives ``N / hop`` frames.

    Args:
        window: Analysis window ``[n_fft]``; its length sets ``n_fft``.
        fb: Mel filterbank ``[n_fft // 2 + 1, n_mels]``.
        hop_length: Hop between frames in samples.
    """

    def __init__(self, window: torch.Tensor, fb: torch.Tensor, hop_length: int = 512) -> None:
        super().__init__()
        if window.ndim != 1:
            raise ValueError(f"window must be 1-D, got shape {tuple(window.shape)}")
        n_freqs = window.shape[0] // 2 + 1
        if fb.ndim != 2 or fb.shape[0] != n_freqs:
            raise ValueError(f"fb must be [{n_freqs}, n_mels], got {tuple(fb.shape)}")
        if not 0 < hop_length <= window.shape[0]:
            raise ValueError(f"hop_length must be in (0, {window.shape[0]}], got {hop_length}")
        self.hop_length = hop_length
        self.spectrogram: _WindowHolder = _WindowHolder(window)
        self.mel_scale: _FilterbankHolder = _FilterbankHolder(fb)

    @property
    def n_fft(self) -> int:
        """FFT size (= window length)."""
        return int(self.spectrogram.window.shape[0])

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Compute the log-mel spectrogram.

        Args:
            wave: Audio ``[B, N]``.

        Returns:
            Log-mel ``[B, n_mels, frames]`` in the input dtype.
        """
        n_fft, hop = self.n_fft, self.hop_length
        padded = F.pad(
            wave.unsqueeze(1), ((n_fft - hop) // 2, (n_fft - hop + 1) // 2), mode="reflect"
        ).squeeze(1)
        spec = torch.stft(
            padded.float(),
            n_fft,
            hop_length=hop,
            win_length=n_fft,
            window=self.spectrogram.window.float(),
            center=False,
            onesided=True,
            return_complex=True,
        )
        spec = torch.view_as_real(spec)
        magnitude = torch.sqrt(spec.pow(2).sum(-1) + MAGNITUDE_EPS).to(wave.dtype)
        fb = self.mel_scale.fb.to(magnitude.dtype)
        mel = torch.matmul(magnitude.transpose(-1, -2), fb).transpose(-1, -2)
        return torch.log(torch.clamp(mel, min=LOG_FLOOR))
