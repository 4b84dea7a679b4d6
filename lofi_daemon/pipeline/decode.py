"""Latents → log-mel → 44.1 kHz stereo waveform, in overlapping windows.

Upstream decodes the whole track at once (``acestep/music_dcae/music_dcae_pipeline.py:
MusicDCAE.decode``: DCAE decoder, then the vocoder per channel).

Each window is run with ``overlap`` frames of context on both sides (clamped at the track ends) and
only its centre is kept, so peak memory depends on the window size, not on the track length. The
DCAE decoder's linear attention is global, so its windowed result is close to (not bit-equal with)
a whole-track decode; the vocoder is convolutional, and enough context makes it exact up to rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from lofi_daemon.model.constants import ModelConstants

RunGraph = Callable[[np.ndarray], np.ndarray]
RunFeeds = Callable[[dict[str, np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class DecodeSettings:
    """Window sizes for the bounded-memory decode (latent frames for the DCAE, mel frames for the vocoder)."""

    dcae_window: int = 256
    dcae_overlap: int = 32
    vocoder_window: int = 2048
    vocoder_overlap: int = 64


@dataclass(frozen=True)
class Window:
    start: int  # first kept frame
    stop: int  # one past the last kept frame
    context_start: int  # first frame fed to the model
    context_stop: int


def plan_windows(length: int, window: int, overlap: int, min_frames: int = 1) -> list[Window]:
    """Cover ``[0, length)`` with kept pieces of ``window`` frames and ``overlap`` context each side."""
    if window <= 0 or length <= window + 2 * overlap:
        return [Window(0, length, 0, length)]
    windows = []
    for start in range(0, length, window):
        stop = min(start + window, length)
        c0, c1 = max(0, start - overlap), min(length, stop + overlap)
        if c1 - c0 < min_frames:
            c0 = max(0, c1 - min_frames)
        windows.append(Window(start, stop, c0, c1))
    return windows


def run_windowed(
    run: RunGraph,
    x: np.ndarray,
    windows: list[Window],
    scale: int,
    on_window: Callable[[], None] | None = None,
) -> Iterator[np.ndarray]:
    """Yield the kept output of each window; the model maps F input frames to F·scale outputs."""
    for win in windows:
        if on_window is not None:
            on_window()
        out = run(np.ascontiguousarray(x[..., win.context_start : win.context_stop]))
        lo = (win.start - win.context_start) * scale
        hi = lo + (win.stop - win.start) * scale
        yield out[..., lo:hi]


def latents_to_dcae_input(latents: np.ndarray, scale: float, shift: float) -> np.ndarray:
    """``z = x / scale + shift``: the DCAE's latent scaling undone (``/ 0.1786 − 1.9091``).

    Upstream ``MusicDCAE.decode`` divides by ``scale_factor`` and adds ``shift_factor`` (a plus:
    ``shift_factor`` is negative), in that order.
    """
    return (latents / np.float32(scale) + np.float32(shift)).astype(np.float32)


def denormalize_mel(mel_n: np.ndarray, mel_min: float, mel_max: float) -> np.ndarray:
    """``(mel_n·0.5 + 0.5)·(max − min) + min`` = 7·mel_n − 4 for the default range."""
    return ((mel_n * 0.5 + 0.5) * (mel_max - mel_min) + mel_min).astype(np.float32)


@dataclass(frozen=True)
class DecodePlan:
    """The windows of one decode: DCAE windows over latent frames, vocoder windows over mel frames."""

    dcae: list[Window]
    vocoder: list[Window]

    @property
    def units(self) -> int:
        """Progress units: one per window."""
        return len(self.dcae) + len(self.vocoder)


def plan_decode(frames: int, constants: ModelConstants, settings: DecodeSettings) -> DecodePlan:
    """Windows for ``frames`` latent frames (the DCAE needs ≥ 4 frames of input, the vocoder ≥ 2)."""
    mel_frames = frames * constants.mel_frames_per_latent_frame
    return DecodePlan(
        dcae=plan_windows(frames, settings.dcae_window, settings.dcae_overlap, min_frames=4),
        vocoder=plan_windows(
            mel_frames, settings.vocoder_window, settings.vocoder_overlap, min_frames=2
        ),
    )


def decode_latents(
    dcae: RunFeeds,
    vocoder: RunFeeds,
    latents: np.ndarray,
    constants: ModelConstants,
    plan: DecodePlan,
    *,
    check_cancel: Callable[[], None],
    on_window: Callable[[], None],
) -> np.ndarray:
    """Latents ``[1, 8, 16, T]`` → stereo waveform ``[2, N]`` float32 at 44.1 kHz.

    ``check_cancel`` runs before each window (and may raise), ``on_window`` after each.
    """
    z = latents_to_dcae_input(latents, constants.dcae_scale, constants.dcae_shift)
    mel_n = _join(
        run_windowed(
            lambda x: dcae({"latents": x}),
            z,
            plan.dcae,
            constants.mel_frames_per_latent_frame,
            check_cancel,
        ),
        on_window,
    )
    mel = denormalize_mel(mel_n[0], constants.mel_min, constants.mel_max)
    wave = _join(
        run_windowed(
            lambda m: vocoder({"mel": m}),
            mel,
            plan.vocoder,
            constants.vocoder_hop_length,
            check_cancel,
        ),
        on_window,
    )
    return wave[:, 0, :].astype(np.float32)


def _join(pieces: Iterator[np.ndarray], on_piece: Callable[[], None]) -> np.ndarray:
    kept = []
    for piece in pieces:
        kept.append(piece)
        on_piece()
    return np.concatenate(kept, axis=-1)
