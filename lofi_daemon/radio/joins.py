"""How consecutive segment files join: the join settings and the correlation-corrected crossfade.

Each segment file holds back its last ``hold_sec``; the next file starts with the crossfade of
the first ``crossfade_sec`` of that held-back audio (the *tail*) with the new audio aligned to the
same moment (see :mod:`lofi_daemon.radio.render`). The crossfade keeps the level whether the two
parts are the same music (a continuation re-decodes its context, so the parts are nearly equal)
or unrelated music (a library fill): the fade-out gain is solved for the measured correlation.

Sub-sample alignment: a latent frame is 4096 samples at the model's 44.1 kHz, so frame
boundaries fall between samples of the 48 kHz output (:func:`frames_to_samples`). A continuation
re-decodes its context on a 48 kHz grid that starts at the context's first frame, which is a
fraction of a sample off the previous output's grid; :func:`read_at` reads audio at such
fractional positions (a windowed-sinc fractional delay), so the re-decoded music lines up with
the held tail exactly instead of up to a sample apart (a comb filter over the crossfade).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Final

import numpy as np

from lofi_daemon.model.layout import SAMPLE_RATE_MODEL, SAMPLES_PER_LATENT_FRAME
from lofi_daemon.pipeline.audio import SAMPLE_RATE_OUT

SAMPLE_RATE: Final = SAMPLE_RATE_OUT
"""The rate of every segment file (the engine's output rate)."""
JOIN_MARGIN_SEC: Final = 1.0
"""Held back beyond the crossfade, so the next file's aligned audio never starts at the very
edge of what was decoded (``hold_sec = crossfade_sec + JOIN_MARGIN_SEC``)."""
SINC_HALF_TAPS: Final = 64
"""Half the length of :func:`read_at`'s interpolation kernel (``2·64 + 1`` taps)."""
KAISER_BETA: Final = 14.0
"""The Kaiser window's shape for that kernel: with 129 taps its response stays within 4e-7 of
an exact delay up to 22.05 kHz (the engine's audio is resampled from 44.1 kHz, so it has
nothing above that); the transition band lies between 22.05 and 24 kHz."""
INTEGER_TOLERANCE: Final = 1e-6
"""A position this close to a whole sample is read as that sample (an exact copy)."""
_FRAME_SAMPLES: Final = Fraction(SAMPLES_PER_LATENT_FRAME * SAMPLE_RATE, SAMPLE_RATE_MODEL)


def _samples(seconds: float) -> int:
    return round(seconds * SAMPLE_RATE)


@dataclass(frozen=True)
class JoinSettings:
    """The lengths of a join, in seconds; the ``*_samples`` properties give them at 48 kHz.

    Raises:
        ValueError: A non-finite length, a crossfade of less than one sample, a hold shorter than
            the crossfade, or a negative fade-in.
    """

    crossfade_sec: float = 1.5
    hold_sec: float = 2.5
    fade_in_sec: float = 0.05
    """The fade-in of the station's very first samples (and of a fill that follows nothing)."""

    def __post_init__(self) -> None:
        for name in ("crossfade_sec", "hold_sec", "fade_in_sec"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
        if self.crossfade_samples < 1:
            raise ValueError(f"crossfade_sec must be at least one sample, got {self.crossfade_sec}")
        if self.hold_samples < self.crossfade_samples:
            raise ValueError(
                f"hold_sec ({self.hold_sec}) must be at least crossfade_sec ({self.crossfade_sec})"
            )
        if self.fade_in_sec < 0:
            raise ValueError(f"fade_in_sec must be >= 0, got {self.fade_in_sec}")

    @property
    def crossfade_samples(self) -> int:
        return _samples(self.crossfade_sec)

    @property
    def hold_samples(self) -> int:
        return _samples(self.hold_sec)

    @property
    def fade_in_samples(self) -> int:
        return _samples(self.fade_in_sec)

    @classmethod
    def for_crossfade(cls, crossfade_sec: float) -> JoinSettings:
        """The settings for a crossfade of ``crossfade_sec``, holding back one margin more."""
        return cls(crossfade_sec=crossfade_sec, hold_sec=crossfade_sec + JOIN_MARGIN_SEC)

    def to_json(self) -> dict[str, float]:
        return {
            "crossfade_sec": self.crossfade_sec,
            "hold_sec": self.hold_sec,
            "fade_in_sec": self.fade_in_sec,
        }


def context_samples(context_frames: int) -> int:
    """Where ``context_frames`` latent frames end in the 48 kHz output, rounded to a sample.

    A frame is ``SAMPLES_PER_LATENT_FRAME`` samples at the model's 44.1 kHz, so the end lies at
    ``frames·4096·48000/44100`` (computed exactly in integers; never a tie, as 44100 is odd).
    """
    if context_frames < 0:
        raise ValueError(f"context_frames must be >= 0, got {context_frames}")
    numerator = context_frames * SAMPLES_PER_LATENT_FRAME * SAMPLE_RATE
    return (2 * numerator + SAMPLE_RATE_MODEL) // (2 * SAMPLE_RATE_MODEL)


def frames_to_samples(frames: int) -> float:
    """Where latent frame ``frames`` starts in a 48 kHz output whose sample 0 is frame 0's start:
    ``frames·4096·48000/44100`` samples, not rounded (:func:`context_samples` rounds it)."""
    return float(frames * _FRAME_SAMPLES)


def tail_position(tail_start: float, source_frames: int, context_frames: int) -> float:
    """Where a held tail starts in a continuation's ``extend`` output, in fractional samples.

    The tail starts ``tail_start`` samples after the first latent frame of the segment it was
    held back from, whose latents have ``source_frames`` frames. The continuation's source is
    their last ``context_frames`` frames and its output's sample 0 is the first of those, which
    lies :func:`frames_to_samples` ``(source_frames - context_frames)`` after that same start.

    Raises:
        ValueError: ``context_frames`` is negative or more than ``source_frames``, or
            ``tail_start`` is not finite.
    """
    if not 0 <= context_frames <= source_frames:
        raise ValueError(
            f"context_frames must be within 0..{source_frames} (the source's frames), "
            f"got {context_frames}"
        )
    if not math.isfinite(tail_start):
        raise ValueError(f"tail_start must be a finite number of samples, got {tail_start!r}")
    return float(tail_start - (source_frames - context_frames) * _FRAME_SAMPLES)


def _sinc_kernel(fraction: float) -> np.ndarray:
    """The ``2·SINC_HALF_TAPS + 1`` taps that read a signal ``fraction`` of a sample after a
    sample: ``h[j] = sinc(j - fraction)·kaiser(j - fraction)`` for ``j = -64..64``, scaled to a
    sum of exactly 1 (a constant stays that constant)."""
    t = np.arange(-SINC_HALF_TAPS, SINC_HALF_TAPS + 1, dtype=np.float64) - fraction
    edge = np.clip(1.0 - (t / (SINC_HALF_TAPS + 1)) ** 2, 0.0, None)
    taps = np.sinc(t) * np.i0(KAISER_BETA * np.sqrt(edge)) / np.i0(KAISER_BETA)
    return np.asarray(taps / taps.sum(), dtype=np.float64)


def read_at(wave: np.ndarray, position: float, count: int) -> np.ndarray:
    """``count`` samples of ``wave`` ``[N, C]`` read at ``position + k`` (``k = 0..count-1``;
    ``position`` in samples, fractional or not), as float32 ``[count, C]``.

    A whole position (within :data:`INTEGER_TOLERANCE`) is an exact copy. Otherwise the samples
    are the band-limited interpolation of ``wave``: one fixed fractional delay, a Kaiser-windowed
    sinc of :data:`SINC_HALF_TAPS` taps each side (see :data:`KAISER_BETA` for its precision),
    applied in float64 by direct convolution (``np.correlate``). Chosen over a phase shift in
    the FFT domain because its error stays local: it has no circular wrap-around and needs no
    padded window. Edges: ``wave`` is taken as zero before its first and after its last
    sample, so the result is exact to that precision only where the kernel stays inside
    ``wave`` (``SINC_HALF_TAPS`` samples from either end); the radio reads from at least a
    hold's margin inside the decoded audio.

    Raises:
        ValueError: ``wave`` is not ``[N, C]``, ``count`` is negative or ``position`` not finite.
    """
    if wave.ndim != 2:
        raise ValueError(f"wave must be [samples, channels], got shape {wave.shape}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if not math.isfinite(position):
        raise ValueError(f"position must be a finite number of samples, got {position!r}")
    if count == 0:
        return np.zeros((0, wave.shape[1]), dtype=np.float32)
    whole = round(position)
    fraction = position - whole
    exact = abs(fraction) <= INTEGER_TOLERANCE
    reach = 0 if exact else SINC_HALF_TAPS
    lo, hi = whole - reach, whole + count + reach  # the samples the result depends on
    part = np.zeros((hi - lo, wave.shape[1]), dtype=np.float32 if exact else np.float64)
    src_lo, src_hi = max(lo, 0), min(hi, wave.shape[0])
    if src_lo < src_hi:
        part[src_lo - lo : src_hi - lo] = wave[src_lo:src_hi]
    if exact:
        return np.ascontiguousarray(part, dtype=np.float32)
    kernel = _sinc_kernel(fraction)
    out = np.empty((count, wave.shape[1]), dtype=np.float32)
    for ch in range(wave.shape[1]):
        out[:, ch] = np.correlate(part[:, ch], kernel, mode="valid")
    return out


def correlation(tail: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Per-channel normalised correlation of two ``[X, C]`` parts, clipped to ``[0, 1]``.

    ``r = Σ tail·head / sqrt(Σ tail² · Σ head²)``; a silent part (zero energy) gives 0.
    """
    a = tail.astype(np.float64)
    b = head.astype(np.float64)
    energy = np.sqrt(np.sum(a * a, axis=0) * np.sum(b * b, axis=0))
    cross = np.sum(a * b, axis=0)
    r = np.divide(cross, energy, out=np.zeros_like(cross), where=energy > 0)
    return np.asarray(np.clip(r, 0.0, 1.0), dtype=np.float64)


def crossfade_gains(length: int, r: float) -> tuple[np.ndarray, np.ndarray]:
    """The fade-out and fade-in gains ``(a, b)`` of a ``length``-sample crossfade.

    ``b = sin(π/2·x)`` for ``x = i/length`` (0 at the first sample, reaching 1 where the sample
    after the crossfade is), and ``a`` solves ``a² + 2abr + b² = 1`` — the power of ``a·s + b·t``
    for two parts of equal power and correlation ``r`` stays that power: ``r = 0`` gives the
    equal-power pair ``(cos, sin)``, ``r = 1`` the amplitude-preserving ``a = 1 - b``.
    """
    x = np.arange(length, dtype=np.float64) / length
    b = np.sin(0.5 * np.pi * x)
    a = -b * r + np.sqrt(1.0 - b * b * (1.0 - r * r))
    return a, b


def crossfade(tail: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Fade from ``tail`` into ``head`` (both ``[X, C]``), returning ``[X, C]`` float32.

    Each channel is faded with gains solved for its own correlation (:func:`correlation`), so
    a channel whose parts match is not boosted because the other one differs. The first output
    sample is exactly ``tail[0]``.

    Raises:
        ValueError: The parts differ in shape, are not ``[X, C]`` or are empty.
    """
    if tail.ndim != 2 or head.ndim != 2:
        raise ValueError(
            f"crossfade parts must be [samples, channels], got {tail.shape} and {head.shape}"
        )
    if tail.shape != head.shape:
        raise ValueError(f"crossfade parts differ in shape: {tail.shape} and {head.shape}")
    if tail.shape[0] == 0 or tail.shape[1] == 0:
        raise ValueError(f"crossfade parts are empty: {tail.shape}")
    length, channels = tail.shape
    r = correlation(tail, head)
    out = np.empty(tail.shape, dtype=np.float32)
    for ch in range(channels):
        a, b = crossfade_gains(length, float(r[ch]))
        out[:, ch] = a * tail[:, ch] + b * head[:, ch]
    return out


def fade_in(audio: np.ndarray, samples: int) -> np.ndarray:
    """``audio`` ``[N, C]`` as float32 with its first ``samples`` faded in (``sin²`` ramp)."""
    out = np.array(audio, dtype=np.float32, copy=True)
    n = min(samples, out.shape[0])
    if n > 0:
        ramp = np.sin(0.5 * np.pi * np.arange(n, dtype=np.float64) / n) ** 2
        out[:n] *= ramp[:, None].astype(np.float32)
    return out
