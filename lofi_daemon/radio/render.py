"""Cutting generated or library audio into segment files that join without a seam.

Sample bookkeeping (``H`` = hold, ``X`` = crossfade samples of :class:`JoinSettings`; audio
``[N, 2]`` float32 at 48 kHz):

* first segment: ``file = fade_in(wave[:N-H])``, ``tail = wave[N-H : N-H+X]``;
* continuation (an ``extend`` output that re-decodes its context; the held tail's first sample
  lies at position ``p`` of it, fractional in general): with ``g[k] = wave(p + k)``
  (:func:`~lofi_daemon.radio.joins.read_at`) and ``L = round(N - H - p)``,
  ``file = crossfade(tail, g[:X]) ++ g[X:L]``, ``tail = g[L : L+X]`` (held at ``p + L``);
* library fill (``M = min(N, max_samples)``): ``file = crossfade(tail, lib[:X]) ++ lib[X : M-H]``,
  ``tail = lib[M-H : M-H+X]``.

The file for moment ``t`` therefore continues exactly where the previous file stopped: the
previous file ended ``H`` before its audio's end, and the next one starts at that same moment of
the (re-decoded) music. For a continuation that moment is in general between two samples of the
new output (frame boundaries are not on the 48 kHz grid,
:func:`~lofi_daemon.radio.joins.tail_position`), so the whole new file is read on the held
tail's grid: the crossfaded parts are the same music at the same instants, and there is no
grid change anywhere in the file (a head shifted alone would jump back to the output's own grid
where the crossfade ends, a sub-sample splice). The station's files thus all keep the first
segment's grid; :attr:`Rendered.tail_at` carries where each tail lies for the next join. A tail
from a library fill (other music) has no such position: the continuation then starts at the
rounded context end (``context_samples(frames) - H``, a whole sample, an exact copy).

Bad shapes and lengths raise ``ValueError``; the service reports them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.pipeline import audio
from lofi_daemon.radio.joins import SAMPLE_RATE, JoinSettings, crossfade, fade_in, read_at

CHANNELS = 2


@dataclass(frozen=True)
class Rendered:
    audio: np.ndarray
    """``[N, 2]`` float32: the segment file's samples."""
    tail: np.ndarray
    """``[crossfade_samples, 2]`` float32: held back for the next join."""
    tail_at: float
    """Where ``tail`` starts in the ``wave`` this was rendered from, in samples (fractional
    after a sub-sample alignment): with the wave's own timing, where the next join aligns."""


def _check_audio(name: str, wave: np.ndarray) -> None:
    if wave.ndim != 2 or wave.shape[1] != CHANNELS:
        raise ValueError(f"{name} must be [samples, {CHANNELS}] audio, got shape {wave.shape}")


def _check_tail(tail: np.ndarray, join: JoinSettings) -> None:
    want = (join.crossfade_samples, CHANNELS)
    if tail.shape != want:
        raise ValueError(f"the held tail must have shape {want}, got {tail.shape}")


def _f32(wave: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(wave, dtype=np.float32)


def render_first(wave: np.ndarray, join: JoinSettings) -> Rendered:
    """The station's first file: ``wave`` faded in, its last ``hold`` samples held back.

    Raises:
        ValueError: ``wave`` is not ``[N, 2]`` or leaves fewer than ``max(1, fade_in)`` samples
            once the hold is taken off.
    """
    _check_audio("the first segment's audio", wave)
    n, hold, x = wave.shape[0], join.hold_samples, join.crossfade_samples
    need = hold + max(1, join.fade_in_samples)
    if n < need:
        raise ValueError(f"the first segment's audio has {n} samples; it needs at least {need}")
    return Rendered(
        audio=fade_in(wave[: n - hold], join.fade_in_samples),
        tail=_f32(wave[n - hold : n - hold + x]),
        tail_at=float(n - hold),
    )


def render_continuation(
    tail: np.ndarray, wave: np.ndarray, tail_at: float, join: JoinSettings
) -> Rendered:
    """A continuation's file from its ``extend`` output ``wave``, read on the held ``tail``'s
    grid (module docstring).

    Args:
        tail: the held tail the file starts from, ``[crossfade_samples, 2]``.
        wave: the ``extend`` output, ``[N, 2]`` 48 kHz.
        tail_at: where ``tail``'s first sample lies in ``wave``, in samples: for a tail held
            back by the segment this one continues,
            :func:`~lofi_daemon.radio.joins.tail_position`; for any other tail, the rounded
            ``context_samples(context_frames) - hold``.
        join: the join settings.

    Raises:
        ValueError: Bad shapes, a ``tail_at`` that is negative or not finite, or fewer than
            ``crossfade`` samples of ``wave`` after the hold past ``tail_at``.
    """
    _check_audio("the continuation's audio", wave)
    _check_tail(tail, join)
    n, hold, x = wave.shape[0], join.hold_samples, join.crossfade_samples
    if not math.isfinite(tail_at):
        raise ValueError(f"the held tail's position must be finite, got {tail_at!r}")
    if tail_at < 0:
        raise ValueError(
            f"the held tail lies at sample {tail_at:.3f}, before the continuation's audio "
            f"(a context shorter than the hold of {hold} samples?)"
        )
    length = round(n - hold - tail_at)
    if length < x:
        raise ValueError(
            f"the continuation's audio has {n} samples; it needs at least {n + x - length} "
            f"(the held tail's position {tail_at:.3f} + hold {hold} + crossfade {x})"
        )
    grid = read_at(wave, tail_at, length + x)
    return Rendered(
        audio=np.concatenate([crossfade(_f32(tail), grid[:x]), grid[x:length]]),
        tail=grid[length:].copy(),  # not a view that keeps the whole grid alive
        tail_at=tail_at + length,
    )


def min_fill_samples(join: JoinSettings) -> int:
    """The shortest library excerpt :func:`render_fill` accepts: the hold plus the crossfade."""
    return join.hold_samples + join.crossfade_samples


def render_fill(
    tail: np.ndarray | None,
    wave: np.ndarray,
    join: JoinSettings,
    *,
    max_samples: int | None = None,
) -> Rendered:
    """A library fill's file from the first ``max_samples`` of a cached track's ``wave``.

    Without a ``tail`` (nothing played before) the excerpt is faded in instead of crossfaded.

    Raises:
        ValueError: Bad shapes, or an excerpt shorter than :func:`min_fill_samples`.
    """
    _check_audio("the library track's audio", wave)
    if tail is not None:
        _check_tail(tail, join)
    need = min_fill_samples(join)
    if max_samples is not None and max_samples < need:
        raise ValueError(f"max_samples is {max_samples}; a fill needs at least {need} samples")
    m = wave.shape[0] if max_samples is None else min(wave.shape[0], max_samples)
    if m < need:
        raise ValueError(f"the library track has {m} samples; a fill needs at least {need}")
    hold, x = join.hold_samples, join.crossfade_samples
    if tail is None:
        body = fade_in(wave[: m - hold], join.fade_in_samples)
    else:
        head = crossfade(_f32(tail), _f32(wave[:x]))
        body = np.concatenate([head, _f32(wave[x : m - hold])])
    return Rendered(audio=body, tail=_f32(wave[m - hold : m - hold + x]), tail_at=float(m - hold))


def _unreadable(path: Path, detail: str) -> LofiError:
    return LofiError(errors.INVALID_SOURCE, f"radio audio {path}: {detail}")


def read_wave(path: Path) -> np.ndarray:
    """Read an engine output or a cached track as ``[N, 2]`` float32 at 48 kHz.

    Mono is duplicated to both channels.

    Raises:
        LofiError: INVALID_SOURCE when the file is missing or unreadable, not 48 kHz, has more
            than two channels, no samples, or non-finite samples.
    """
    path = Path(path)
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise _unreadable(path, f"cannot be read ({errors.first_line(exc, 200)})") from None
    if rate != SAMPLE_RATE:
        raise _unreadable(path, f"is {rate} Hz; the radio needs {SAMPLE_RATE} Hz audio")
    if samples.shape[1] > CHANNELS:
        raise _unreadable(path, f"has {samples.shape[1]} channels; use mono or stereo")
    if samples.shape[0] == 0:
        raise _unreadable(path, "holds no audio samples")
    if not np.isfinite(samples).all():
        raise _unreadable(path, "contains NaN or infinite samples")
    if samples.shape[1] == 1:
        samples = np.repeat(samples, CHANNELS, axis=1)
    return _f32(samples)


def write_segment(path: Path, wave: np.ndarray) -> None:
    """Write a segment file: 16-bit FLAC, atomically (nothing is left at or beside ``path`` on
    failure, and an existing file there stays as it was).

    Raises:
        ValueError: ``wave`` is not ``[N, 2]``, is empty, or has non-finite samples.
        LofiError: OUTPUT_WRITE_FAILED when the file cannot be written.
    """
    _check_audio("a segment's audio", wave)
    if wave.shape[0] == 0:
        raise ValueError("a segment's audio is empty")
    path = Path(path)
    try:
        audio.write_audio(path, _f32(wave).T, SAMPLE_RATE, "flac")
    except OSError as exc:
        raise LofiError(
            errors.OUTPUT_WRITE_FAILED, f"cannot write {path}: {exc.strerror or exc}"
        ) from exc
