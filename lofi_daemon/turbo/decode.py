"""Final latents → 48 kHz stereo waveform: tiled VAE decode, peak limit, −1 dBFS, trim.

Tiling follows upstream ``VaeDecodeChunksMixin._tiled_decode_inner`` / ``_tiled_decode_gpu`` with
the CPU chunk size of ``VaeDecodeMixin.tiled_decode`` (256 latent frames, overlap 64): up to
``chunk`` frames are decoded at once; longer latents are cut into cores of ``chunk − 2·overlap``
frames, each decoded with up to ``overlap`` frames of context on both sides and trimmed back to
its core. :func:`lofi_daemon.pipeline.decode.plan_windows` yields exactly those windows.

Output level follows ``_decode_generate_music_pred_latents`` (divide by the peak when it is above
1) and ``audio_utils.normalize_audio(target_db=-1.0)`` (scale the global peak to 10^(−1/20),
skipped below 1e-6). Upstream keeps all ``1920·T`` samples; we trim to the requested duration.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lofi_daemon.pipeline.decode import Window, plan_windows, run_windowed

CHUNK_FRAMES = 256
OVERLAP_FRAMES = 64
TARGET_DB = -1.0
SILENCE_PEAK = 1e-6

RunFeeds = Callable[[dict[str, np.ndarray]], np.ndarray]


def plan_tiles(
    frames: int, chunk: int = CHUNK_FRAMES, overlap: int = OVERLAP_FRAMES
) -> list[Window]:
    """The decode windows of ``frames`` latent frames (one window when ``frames ≤ chunk``)."""
    if chunk <= 2 * overlap:
        raise ValueError(f"chunk {chunk} must be above 2 × overlap {overlap}")
    if frames <= chunk:
        return [Window(0, frames, 0, frames)]
    return plan_windows(frames, chunk - 2 * overlap, overlap)


def decode_tiled(
    vae: RunFeeds,
    latents: np.ndarray,
    windows: list[Window],
    samples_per_frame: int,
    *,
    check_cancel: Callable[[], None],
    on_window: Callable[[], None],
) -> np.ndarray:
    """Latents ``[1, T, C]`` → waveform ``[channels, samples_per_frame·T]`` float32.

    ``check_cancel`` runs before each window (and may raise), ``on_window`` after each.
    """
    z = np.ascontiguousarray(latents.transpose(0, 2, 1), dtype=np.float32)  # [1, C, T]
    pieces = []
    for piece in run_windowed(
        lambda x: vae({"latents": x}), z, windows, samples_per_frame, check_cancel
    ):
        pieces.append(np.asarray(piece, dtype=np.float32))
        on_window()
    return np.concatenate(pieces, axis=-1)[0]


def limit_peak(wave: np.ndarray) -> np.ndarray:
    """Divide by the peak when it is above 1."""
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak > 1.0:
        return (wave / np.float32(peak)).astype(np.float32)
    return wave


def normalize_peak(wave: np.ndarray, target_db: float = TARGET_DB) -> np.ndarray:
    """Scale so the global peak is ``10^(target_db/20)``; near-silence is returned unchanged."""
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak < SILENCE_PEAK:
        return wave
    gain = 10 ** (target_db / 20.0) / peak
    return (wave * np.float32(gain)).astype(np.float32)


def finish(wave: np.ndarray, samples: int) -> np.ndarray:
    """Peak limit, −1 dBFS normalisation, then trim to at most ``samples`` samples."""
    return np.ascontiguousarray(normalize_peak(limit_peak(wave))[:, :samples])
