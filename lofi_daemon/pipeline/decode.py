"""Latents → log-mel → 44.1 kHz stereo waveform, in overlapping windows (spec §11.1, §11.5).

Each window is run with ``overlap`` frames of context on both sides (clamped at the track ends) and
only its centre is kept, so peak memory depends on the window size, not on the track length. The
DCAE decoder's linear attention is global, so its windowed result is close to (not bit-equal with)
a whole-track decode; the vocoder is convolutional, and enough context makes it exact up to rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

RunGraph = Callable[[np.ndarray], np.ndarray]


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
    """``z = x / 0.1786 − 1.9091`` (spec §11.1, trap 23)."""
    return (latents / np.float32(scale) + np.float32(shift)).astype(np.float32)


def denormalize_mel(mel_n: np.ndarray, mel_min: float, mel_max: float) -> np.ndarray:
    """``(mel_n·0.5 + 0.5)·(max − min) + min`` = 7·mel_n − 4 for the default range."""
    return ((mel_n * 0.5 + 0.5) * (mel_max - mel_min) + mel_min).astype(np.float32)
