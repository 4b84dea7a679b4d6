"""Audio post-processing and crash-safe, byte-deterministic output files (runtime, no torch).

The vocoder produces 44.1 kHz audio; output files are 48 kHz, as upstream
(``acestep/music_dcae/music_dcae_pipeline.py: MusicDCAE.decode`` resamples to ``sr=48000``;
here soxr instead of torchaudio's sinc resampler, so samples differ slightly). Every file is written
to a temporary sibling, fsynced and renamed over the destination, so a reader never sees a
partial file and a failed write leaves nothing behind.

libsndfile stamps two formats with run-dependent bytes: float WAV gets a ``PEAK`` chunk holding
the wall-clock time, and Ogg streams get a random serial number. Both are normalised here so
identical audio always gives an identical file.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import soxr

from lofi_daemon.fsutil import write_bytes_atomic

log = logging.getLogger(__name__)

SAMPLE_RATE_MODEL = 44100
"""Sample rate of the vocoder output."""
SAMPLE_RATE_OUT = 48000
"""Sample rate of the files written."""

AudioFormat = Literal["wav", "flac", "ogg"]
WavSubtype = Literal["pcm16", "float"]

_SOXR_QUALITY = "VHQ"
_OGG_SERIAL = 0x6C6F6669  # fixed stream serial ("lofi") so Ogg output is reproducible
_RESAMPLE_NUM, _RESAMPLE_DEN = 160, 147  # 48000 / 44100 in lowest terms
_WRITE_CHUNK_FRAMES = 8192


# --------------------------------------------------------------------------------------------
# Post-processing
# --------------------------------------------------------------------------------------------


def resampled_length(n_samples: int) -> int:
    """Length of ``n_samples`` at 44.1 kHz after resampling to 48 kHz: ``ceil(N·160/147)``."""
    return -(-n_samples * _RESAMPLE_NUM // _RESAMPLE_DEN)


def resample_to_48k(wave: np.ndarray) -> np.ndarray:
    """Resample 44.1 kHz audio to 48 kHz with soxr (very high quality).

    Args:
        wave: float32 ``[C, N]`` at 44.1 kHz.

    Returns:
        float32 ``[C, ceil(N·160/147)]`` at 48 kHz; soxr's own output length is padded with
        zeros or cropped (by at most a sample) to exactly that length.
    """
    _check_wave(wave)
    target = resampled_length(wave.shape[1])
    if wave.shape[1] == 0:
        return np.zeros((wave.shape[0], 0), dtype=np.float32)
    frames = np.ascontiguousarray(wave.T, dtype=np.float32)
    out = soxr.resample(frames, SAMPLE_RATE_MODEL, SAMPLE_RATE_OUT, quality=_SOXR_QUALITY)
    out = np.asarray(out, dtype=np.float32).reshape(-1, wave.shape[0]).T
    got = out.shape[1]
    if abs(got - target) > 1:
        log.warning("soxr returned %d samples, expected %d; adjusting", got, target)
    if got >= target:
        return np.ascontiguousarray(out[:, :target])
    return np.pad(out, ((0, 0), (0, target - got)))


def fit_length(wave: np.ndarray, max_samples: int) -> np.ndarray:
    """Crop ``wave`` ``[C, N]`` to at most ``max_samples`` samples (shorter input is unchanged)."""
    _check_wave(wave)
    if max_samples < 0:
        raise ValueError(f"max_samples must be >= 0, got {max_samples}")
    return wave[:, :max_samples]


def prevent_clipping(wave: np.ndarray) -> np.ndarray:
    """Scale ``wave`` down to a peak of exactly 1.0 if its peak exceeds 1.0.

    Audio whose peak is at most 1.0 (or that is empty) is returned unchanged, as the same
    array. The vocoder output is tanh-bounded, but resampling can overshoot slightly.
    """
    if wave.size == 0:
        return wave
    peak = float(np.max(np.abs(wave)))
    if not peak > 1.0:
        return wave
    log.debug("scaling audio down from peak %.6f", peak)
    return (wave / np.asarray(peak, dtype=wave.dtype)).astype(wave.dtype, copy=False)


def _check_wave(wave: np.ndarray) -> None:
    if wave.ndim != 2:
        raise ValueError(f"audio must be [channels, samples], got shape {wave.shape}")
    if wave.shape[0] < 1:
        raise ValueError("audio must have at least one channel")


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def _soundfile_format(fmt: str, wav_subtype: str) -> tuple[str, str]:
    if fmt == "wav":
        subtypes = {"pcm16": "PCM_16", "float": "FLOAT"}
        if wav_subtype not in subtypes:
            raise ValueError(f"unknown wav subtype {wav_subtype!r}; use 'pcm16' or 'float'")
        return "WAV", subtypes[wav_subtype]
    if fmt == "flac":
        return "FLAC", "PCM_16"
    if fmt == "ogg":
        return "OGG", "VORBIS"
    raise ValueError(f"unknown audio format {fmt!r}; use 'wav', 'flac' or 'ogg'")


def encode_audio(
    wave: np.ndarray, sample_rate: int, fmt: AudioFormat, wav_subtype: WavSubtype = "pcm16"
) -> bytes:
    """Encode ``wave`` ``[C, N]`` as a complete file in memory, deterministically.

    Integer (16-bit) outputs are clipped to ``[-1, 1]`` first, because libsndfile would wrap
    out-of-range samples around instead of saturating them.

    Raises:
        ValueError: Bad format, subtype, shape, or non-finite samples.
    """
    container, subtype = _soundfile_format(fmt, wav_subtype)
    _check_wave(wave)
    if not np.all(np.isfinite(wave)):
        raise ValueError("audio contains NaN or infinite samples")
    frames = np.ascontiguousarray(wave.T, dtype=np.float32)
    if subtype == "PCM_16":
        frames = np.clip(frames, -1.0, 1.0)
    buffer = io.BytesIO()
    channels = frames.shape[1]
    with sf.SoundFile(buffer, "w", sample_rate, channels, subtype, format=container) as handle:
        # Bounded writes: one large Vorbis write overflows the C stack in libvorbis
        # (libsndfile issue 1095), killing the process.
        for start in range(0, frames.shape[0], _WRITE_CHUNK_FRAMES):
            handle.write(frames[start : start + _WRITE_CHUNK_FRAMES])
    data = buffer.getvalue()
    if container == "WAV":
        return _zero_wav_peak_timestamp(data)
    if container == "OGG":
        return _set_ogg_serial(data, _OGG_SERIAL)
    return data


def _zero_wav_peak_timestamp(data: bytes) -> bytes:
    """Zero the time stamp libsndfile stores in a WAV ``PEAK`` chunk (if there is one)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE stream")
    out = bytearray(data)
    pos = 12
    while pos + 8 <= len(out):
        chunk_id = bytes(out[pos : pos + 4])
        (size,) = struct.unpack_from("<I", out, pos + 4)
        if chunk_id == b"PEAK" and size >= 8:
            struct.pack_into("<I", out, pos + 12, 0)  # after the 4-byte version field
        if chunk_id == b"data":
            break
        pos += 8 + size + (size & 1)
    return bytes(out)


_BIT_REVERSE = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def ogg_crc(page: bytes) -> int:
    """Ogg page checksum: CRC-32, polynomial 0x04C11DB7, MSB-first, init 0, no final xor.

    Computed with zlib's (LSB-first) CRC-32 on bit-reversed bytes: running the reflected
    algorithm on mirrored input yields the mirrored MSB-first checksum.
    """
    reflected = zlib.crc32(page.translate(_BIT_REVERSE), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)


def _set_ogg_serial(data: bytes, serial: int) -> bytes:
    """Rewrite the stream serial number of every Ogg page and recompute the page checksums.

    Only single-stream files (as libsndfile writes) are supported.
    """
    out = bytearray(data)
    pos = 0
    while pos < len(out):
        if out[pos : pos + 4] != b"OggS" or pos + 27 > len(out):
            raise ValueError(f"malformed Ogg page at byte {pos}")
        n_segments = out[pos + 26]
        body = sum(out[pos + 27 : pos + 27 + n_segments])
        end = pos + 27 + n_segments + body
        if end > len(out):
            raise ValueError(f"truncated Ogg page at byte {pos}")
        struct.pack_into("<I", out, pos + 14, serial)
        out[pos + 22 : pos + 26] = bytes(4)
        struct.pack_into("<I", out, pos + 22, ogg_crc(bytes(out[pos:end])))
        pos = end
    return bytes(out)


# --------------------------------------------------------------------------------------------
# Output files
# --------------------------------------------------------------------------------------------


def write_audio(
    path: Path,
    wave: np.ndarray,
    sample_rate: int,
    fmt: AudioFormat,
    wav_subtype: WavSubtype = "pcm16",
) -> None:
    """Write ``wave`` ``[C, N]`` float32 to ``path`` atomically and deterministically.

    Formats: ``wav`` (16-bit PCM or 32-bit float), ``flac`` (16-bit), ``ogg`` (Vorbis).
    The file is encoded in memory, written to a temporary file in the destination directory,
    fsynced and renamed onto ``path``. On any error the temporary file is removed and the
    exception propagates; an existing file at ``path`` is then left untouched.
    """
    payload = encode_audio(wave, sample_rate, fmt, wav_subtype)
    write_bytes_atomic(Path(path), payload)
    log.debug("wrote %s (%d bytes, %d Hz, %s)", path, len(payload), sample_rate, fmt)
