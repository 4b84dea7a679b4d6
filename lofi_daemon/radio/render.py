"""Cutting generated or library audio into segment files that join without a seam.

Sample bookkeeping (``H`` = hold, ``X`` = crossfade samples of :class:`JoinSettings`; audio
``[N, 2]`` float32 at 48 kHz):

* first segment: ``file = fade_in(wave[:N-H])``, ``tail = wave[N-H : N-H+X]``;
* continuation (an ``extend`` output that re-decodes its context, which ends at sample ``c``):
  ``file = crossfade(tail, wave[c-H : c-H+X]) ++ wave[c-H+X : N-H]`` (so ``N - c`` samples, as
  many as the new audio), ``tail = wave[N-H : N-H+X]``;
* library fill (``M = min(N, max_samples)``): ``file = crossfade(tail, lib[:X]) ++ lib[X : M-H]``,
  ``tail = lib[M-H : M-H+X]``.

The file for moment ``t`` therefore continues exactly where the previous file stopped: the
previous file ended ``H`` before its audio's end, and the next one starts at that same moment of
the (re-decoded) music. Bad shapes and lengths raise ``ValueError``; the service reports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.pipeline import audio
from lofi_daemon.radio.joins import SAMPLE_RATE, JoinSettings, crossfade, fade_in

CHANNELS = 2


@dataclass(frozen=True)
class Rendered:
    audio: np.ndarray
    """``[N, 2]`` float32: the segment file's samples."""
    tail: np.ndarray
    """``[crossfade_samples, 2]`` float32: held back for the next join."""


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
    )


def render_continuation(
    tail: np.ndarray, wave: np.ndarray, context_samples: int, join: JoinSettings
) -> Rendered:
    """A continuation's file from its ``extend`` output ``wave``, whose context ends at
    ``context_samples`` (:func:`~lofi_daemon.radio.joins.context_samples`).

    Raises:
        ValueError: Bad shapes, a context shorter than the hold, or fewer than ``crossfade``
            new samples after the context.
    """
    _check_audio("the continuation's audio", wave)
    _check_tail(tail, join)
    n, hold, x = wave.shape[0], join.hold_samples, join.crossfade_samples
    start = context_samples - hold
    if start < 0:
        raise ValueError(
            f"the context ends at sample {context_samples}, before the hold of {hold} samples"
        )
    if n - context_samples < x:
        raise ValueError(
            f"the continuation's audio has {n} samples; it needs at least {context_samples + x} "
            f"(context {context_samples} + crossfade {x})"
        )
    head = crossfade(_f32(tail), _f32(wave[start : start + x]))
    return Rendered(
        audio=np.concatenate([head, _f32(wave[start + x : n - hold])]),
        tail=_f32(wave[n - hold : n - hold + x]),
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
    return Rendered(audio=body, tail=_f32(wave[m - hold : m - hold + x]))


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
