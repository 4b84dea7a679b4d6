"""Log-mel spectrogram and DCAE mel normalisation in numpy (runtime side, no torch).

Used by the encode path of the tasks that read a source (repaint, extend, audio2audio, edit):
:mod:`lofi_daemon.pipeline.encode` runs it with the exported ``mel_frontend.npz`` before the
``dcae_encoder`` graph. It is tested against the torch reference.

The encode path turns 44.1 kHz stereo audio into the normalised log-mel the DCAE encoder expects
(upstream ``acestep/music_dcae/music_dcae_pipeline.py: MusicDCAE.encode``, with the vocoder's
``mel_transform`` from ``acestep/music_dcae/music_vocoder.py``). The window and filterbank must be
the vocoder checkpoint's own buffers, which are stored in 16-bit, not values rebuilt from their
definition: rebuilt ones differ in the low bits and break parity with the reference.
"""

from __future__ import annotations

import numpy as np

MIN_MEL = -11.0
"""Log-mel value that maps to -1 after normalisation."""
MAX_MEL = 3.0
"""Log-mel value that maps to +1 after normalisation."""

_MAGNITUDE_EPS = 1e-6
_LOG_FLOOR = 1e-5
_FRAMES_PER_CHUNK = 512


def log_mel(
    wave: np.ndarray,
    window: np.ndarray,
    filterbank: np.ndarray,
    n_fft: int = 2048,
    hop: int = 512,
) -> np.ndarray:
    """Compute the vocoder's log-mel spectrogram of each channel.

    Matches the torch reference (``LogMelSpectrogram`` with ``center=False``): reflect padding
    of ``(n_fft - hop) // 2`` / ``(n_fft - hop + 1) // 2`` samples, windowed one-sided FFT,
    magnitude ``sqrt(re² + im² + 1e-6)``, filterbank projection, ``log(max(·, 1e-5))``.
    The FFT runs in float64 over bounded chunks of frames, so long inputs do not need a
    full frame matrix in memory.

    Args:
        wave: Audio ``[C, N]`` (float32), with ``N > (n_fft - hop + 1) // 2``.
        window: Analysis window ``[n_fft]``.
        filterbank: Mel filterbank ``[n_fft // 2 + 1, n_mels]``.
        n_fft: FFT size.
        hop: Hop between frames.

    Returns:
        float32 log-mel ``[C, n_mels, frames]`` with ``frames = 1 + (N - hop) // hop``
        (``N / hop`` when ``N`` is a multiple of ``hop``).
    """
    _check_inputs(wave, window, filterbank, n_fft, hop)
    pad_left, pad_right = (n_fft - hop) // 2, (n_fft - hop + 1) // 2
    padded = np.pad(wave.astype(np.float64), ((0, 0), (pad_left, pad_right)), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[:, ::hop]
    win = window.astype(np.float64)
    fb = filterbank.astype(np.float64)
    n_frames = frames.shape[1]
    out = np.empty((wave.shape[0], fb.shape[1], n_frames), dtype=np.float32)
    for start in range(0, n_frames, _FRAMES_PER_CHUNK):
        stop = min(start + _FRAMES_PER_CHUNK, n_frames)
        spectrum = np.fft.rfft(frames[:, start:stop] * win, n=n_fft, axis=-1)
        power = spectrum.real**2 + spectrum.imag**2
        magnitude = np.sqrt(power + _MAGNITUDE_EPS)
        mel = magnitude @ fb  # [C, frames, n_mels]
        out[:, :, start:stop] = np.log(np.maximum(mel, _LOG_FLOOR)).transpose(0, 2, 1)
    return out


def _check_inputs(
    wave: np.ndarray, window: np.ndarray, filterbank: np.ndarray, n_fft: int, hop: int
) -> None:
    if wave.ndim != 2:
        raise ValueError(f"wave must be [channels, samples], got shape {wave.shape}")
    if window.shape != (n_fft,):
        raise ValueError(f"window must have shape ({n_fft},), got {window.shape}")
    if filterbank.ndim != 2 or filterbank.shape[0] != n_fft // 2 + 1:
        raise ValueError(f"filterbank must be [{n_fft // 2 + 1}, n_mels], got {filterbank.shape}")
    if not 0 < hop <= n_fft:
        raise ValueError(f"hop must be in (0, {n_fft}], got {hop}")
    if wave.shape[1] <= (n_fft - hop + 1) // 2:
        raise ValueError(
            f"wave has {wave.shape[1]} samples; reflect padding needs more than "
            f"{(n_fft - hop + 1) // 2}"
        )


def normalize_mel(mel: np.ndarray) -> np.ndarray:
    """Map log-mel to the DCAE input range: ``((mel - MIN) / (MAX - MIN) - 0.5) / 0.5``.

    There is no clamping (upstream ``MusicDCAE.encode`` has none either); values outside
    ``[MIN_MEL, MAX_MEL]`` leave ``[-1, 1]``.
    """
    return ((mel - MIN_MEL) / (MAX_MEL - MIN_MEL) - 0.5) / 0.5


def denormalize_mel(mel_n: np.ndarray) -> np.ndarray:
    """Inverse of :func:`normalize_mel`: ``(mel_n * 0.5 + 0.5) * (MAX - MIN) + MIN`` (= 7x - 4)."""
    return (mel_n * 0.5 + 0.5) * (MAX_MEL - MIN_MEL) + MIN_MEL
