"""Source audio for the audio tasks: where it comes from, and reading it as 44.1 kHz stereo.

Repaint, extend and edit start from a source track and audio2audio from a reference; upstream
reads it with ``acestep/pipeline_ace_step.py: ACEStepPipeline.infer_latents`` (``torchaudio.load``
then ``MusicDCAE.encode``, which repeats mono to two channels and resamples to 44.1 kHz). Here the
file is read with soundfile (libsndfile: WAV, FLAC, Ogg, MP3 and more) and resampled with soxr at
its "VHQ" quality (very high: linear phase, 175 dB stop band), not torchaudio's sinc kernel, so the
samples differ slightly from upstream's. The file is checked (exists, is audio, about 4.83 to 240 s) from its
header before any sample is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from lofi_daemon import errors
from lofi_daemon.errors import LofiError

SAMPLE_RATE: int = 44100
"""The rate the DCAE encoder's mel front end expects."""
MIN_SOURCE_SEC: float = 52 * 4096 / SAMPLE_RATE
"""A source must be longer than this (about 4.83 s), so that it encodes to at least 53 latent
frames: as many as the shortest text2music track (5 s), whose file is itself 4.92 s long."""
MAX_SOURCE_SEC: float = 240.0
_SOXR_QUALITY = "VHQ"


@dataclass(frozen=True)
class SourceAudio:
    """Where a task's source comes from: an audio file, or latents saved with a cached track.

    Exactly one of ``path`` and ``latents`` is set; ``label`` is how errors name the source
    (``"src_path song.wav"``, ``"track 1a2b…"``); without one the path is used.
    """

    path: Path | None = None
    latents: np.ndarray | None = None  # [1, 8, 16, T] float32
    label: str = ""

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        return str(self.path) if self.path is not None else "the source latents"


def _invalid(path: Path, detail: str) -> LofiError:
    return LofiError(errors.INVALID_SOURCE, f"source audio {path}: {detail}")


def check_audio_file(path: Path | str) -> float:
    """Check ``path`` from its header alone and return its length in seconds.

    Raises:
        LofiError: INVALID_SOURCE when the file is missing, a folder, unreadable, not audio,
            at most 4.83 s or longer than 240 s.
    """
    path = Path(path)
    if path.is_dir():
        raise _invalid(path, "is a folder, not an audio file")
    if not path.exists():
        raise _invalid(path, "no such file")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise _invalid(path, f"not a readable audio file ({_reason(exc)})") from None
    if info.samplerate <= 0 or info.frames <= 0 or info.channels <= 0:
        raise _invalid(path, "holds no audio samples")
    seconds = float(info.frames) / float(info.samplerate)
    if seconds <= MIN_SOURCE_SEC or seconds > MAX_SOURCE_SEC:
        raise _invalid(
            path,
            f"is {seconds:.2f} s long; a source must be longer than {MIN_SOURCE_SEC:.2f} s "
            f"and at most {MAX_SOURCE_SEC:g} s",
        )
    if info.channels > 2:
        raise _invalid(path, f"has {info.channels} channels; use a mono or stereo file")
    return seconds


def load_audio(path: Path | str) -> np.ndarray:
    """Read ``path`` as float32 ``[2, N]`` at 44.1 kHz (checked first by :func:`check_audio_file`).

    Mono is duplicated to two channels (upstream ``MusicDCAE.encode`` repeats it); other rates are
    resampled with soxr (VHQ).
    """
    path = Path(path)
    check_audio_file(path)
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise _invalid(path, f"cannot be decoded ({_reason(exc)})") from None
    if samples.shape[0] == 0:
        raise _invalid(path, "holds no audio samples")
    if not np.isfinite(samples).all():
        raise _invalid(path, "contains NaN or infinite samples")
    if samples.shape[1] == 1:
        samples = np.repeat(samples, 2, axis=1)
    if rate != SAMPLE_RATE:
        samples = soxr.resample(samples, rate, SAMPLE_RATE, quality=_SOXR_QUALITY)
    return np.ascontiguousarray(samples.T, dtype=np.float32)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
