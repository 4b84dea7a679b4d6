"""Tests for runtime audio post-processing and atomic, deterministic file writing."""

from __future__ import annotations

import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lofi_daemon import fsutil
from lofi_daemon.pipeline.audio import (
    SAMPLE_RATE_MODEL,
    SAMPLE_RATE_OUT,
    AudioFormat,
    WavSubtype,
    fit_length,
    ogg_crc,
    prevent_clipping,
    resample_to_48k,
    write_audio,
)

FORMATS: list[tuple[AudioFormat, WavSubtype]] = [
    ("wav", "pcm16"),
    ("wav", "float"),
    ("flac", "pcm16"),
    ("ogg", "pcm16"),
]


def _stereo_tone(n: int, sr: int = SAMPLE_RATE_OUT, freq: float = 440.0) -> np.ndarray:
    t = np.arange(n) / sr
    left = 0.5 * np.sin(2 * np.pi * freq * t)
    right = 0.25 * np.sin(2 * np.pi * 1.5 * freq * t)
    return np.stack([left, right]).astype(np.float32)


def _ogg_pages(data: bytes) -> list[bytes]:
    pages, pos = [], 0
    while pos < len(data):
        assert data[pos : pos + 4] == b"OggS"
        n_seg = data[pos + 26]
        end = pos + 27 + n_seg + sum(data[pos + 27 : pos + 27 + n_seg])
        pages.append(data[pos:end])
        pos = end
    return pages


def _bitwise_ogg_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


# --------------------------------------------------------------------------------------------
# Resampling and levels
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 146, 147, 148, 1000, 4096 * 3, 44100 + 17])
def test_resample_length_is_exact(n: int) -> None:
    rng = np.random.default_rng(n)
    wave = (rng.standard_normal((2, n)) * 0.1).astype(np.float32)
    out = resample_to_48k(wave)
    assert out.shape == (2, math.ceil(n * 160 / 147))
    assert out.dtype == np.float32


def test_resample_keeps_a_sine_at_its_frequency() -> None:
    n = SAMPLE_RATE_MODEL  # 1 s → 48000 samples, FFT bins 1 Hz apart
    t = np.arange(n) / SAMPLE_RATE_MODEL
    wave = np.stack([0.5 * np.sin(2 * np.pi * 1000.0 * t)] * 2).astype(np.float32)
    out = resample_to_48k(wave)
    assert out.shape == (2, SAMPLE_RATE_OUT)
    for channel in out:
        spectrum = np.abs(np.fft.rfft(channel * np.hanning(channel.size)))
        freqs = np.fft.rfftfreq(channel.size, 1.0 / SAMPLE_RATE_OUT)
        assert freqs[np.argmax(spectrum)] == pytest.approx(1000.0, abs=1.0)
        middle = channel[2000:-2000]
        assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / np.sqrt(2), rel=1e-3)


def test_fit_length_crops_only() -> None:
    wave = np.ones((2, 100), dtype=np.float32)
    assert fit_length(wave, 60).shape == (2, 60)
    assert fit_length(wave, 100).shape == (2, 100)
    assert fit_length(wave, 500).shape == (2, 100)
    with pytest.raises(ValueError):
        fit_length(wave, -1)


def test_prevent_clipping_leaves_in_range_audio_untouched() -> None:
    rng = np.random.default_rng(3)
    wave = rng.uniform(-1.0, 1.0, size=(2, 1000)).astype(np.float32)
    wave[1, 10] = -1.0  # a peak of exactly 1.0 is not clipping
    before = wave.copy()
    out = prevent_clipping(wave)
    assert out is wave
    assert out.tobytes() == before.tobytes()


def test_prevent_clipping_scales_overs_to_unit_peak() -> None:
    rng = np.random.default_rng(4)
    wave = rng.uniform(-1.0, 1.0, size=(2, 1000)).astype(np.float32)
    wave[0, 5] = -1.37
    out = prevent_clipping(wave)
    assert out.dtype == np.float32
    assert np.max(np.abs(out)) == 1.0
    assert out[0, 5] == -1.0
    np.testing.assert_allclose(out, wave / np.float32(1.37), rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "subtype"), FORMATS)
def test_write_audio_reads_back(tmp_path: Path, fmt: AudioFormat, subtype: WavSubtype) -> None:
    wave = _stereo_tone(24_000)
    path = tmp_path / f"out.{fmt}"
    write_audio(path, wave, SAMPLE_RATE_OUT, fmt, subtype)
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    assert sr == 48_000
    assert data.shape == (24_000, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    if fmt != "ogg":  # lossless: sample-accurate within the 16-bit step
        np.testing.assert_allclose(data.T, wave, rtol=0, atol=1.0 / 32767)
    else:
        assert np.corrcoef(data[:, 0], wave[0])[0, 1] > 0.99


def test_wav_subtypes(tmp_path: Path) -> None:
    wave = _stereo_tone(4800) * np.float32(0.999)
    wave[0, 7] = 1e-6  # below one 16-bit step
    write_audio(tmp_path / "a.wav", wave, SAMPLE_RATE_OUT, "wav", "pcm16")
    write_audio(tmp_path / "b.wav", wave, SAMPLE_RATE_OUT, "wav", "float")
    assert sf.info(tmp_path / "a.wav").subtype == "PCM_16"
    assert sf.info(tmp_path / "b.wav").subtype == "FLOAT"
    as_float, _ = sf.read(tmp_path / "b.wav", dtype="float32", always_2d=True)
    assert as_float.T.tobytes() == wave.tobytes()  # float WAV is bit-exact
    as_pcm, _ = sf.read(tmp_path / "a.wav", dtype="float32", always_2d=True)
    assert as_pcm[7, 0] == 0.0
    assert sf.info(tmp_path / "a.wav").frames == 4800


def test_pcm_output_saturates_instead_of_wrapping(tmp_path: Path) -> None:
    wave = np.full((2, 100), 1.5, dtype=np.float32)
    wave[1] = -1.5
    for fmt in ("wav", "flac"):
        path = tmp_path / f"loud.{fmt}"
        write_audio(path, wave, SAMPLE_RATE_OUT, fmt)
        data, _ = sf.read(path, dtype="float32", always_2d=True)
        assert np.all(data[:, 0] > 0.99) and np.all(data[:, 1] < -0.99)


@pytest.mark.parametrize(("fmt", "subtype"), FORMATS)
def test_writes_are_byte_identical(tmp_path: Path, fmt: AudioFormat, subtype: WavSubtype) -> None:
    wave = _stereo_tone(30_000)
    first, second = tmp_path / f"a.{fmt}", tmp_path / f"b.{fmt}"
    write_audio(first, wave, SAMPLE_RATE_OUT, fmt, subtype)
    write_audio(second, wave, SAMPLE_RATE_OUT, fmt, subtype)
    assert first.read_bytes() == second.read_bytes()


def test_float_wav_peak_chunk_has_no_timestamp(tmp_path: Path) -> None:
    # libsndfile puts the wall-clock time into the PEAK chunk of float WAVs.
    path = tmp_path / "f.wav"
    write_audio(path, _stereo_tone(1000), SAMPLE_RATE_OUT, "wav", "float")
    data = path.read_bytes()
    pos = data.index(b"PEAK")
    version, timestamp = struct.unpack_from("<II", data, pos + 8)
    assert (version, timestamp) == (1, 0)


def test_ogg_pages_have_fixed_serial_and_valid_checksums(tmp_path: Path) -> None:
    path = tmp_path / "o.ogg"
    write_audio(path, _stereo_tone(48_000), SAMPLE_RATE_OUT, "ogg")
    pages = _ogg_pages(path.read_bytes())
    assert len(pages) >= 3
    serials = {struct.unpack_from("<I", page, 14)[0] for page in pages}
    assert len(serials) == 1
    sequence = [struct.unpack_from("<I", page, 18)[0] for page in pages]
    assert sequence == list(range(len(pages)))
    for page in pages:
        stored = struct.unpack_from("<I", page, 22)[0]
        assert _bitwise_ogg_crc(page[:22] + bytes(4) + page[26:]) == stored


def test_ogg_crc_matches_bitwise_definition() -> None:
    rng = np.random.default_rng(5)
    for size in (0, 1, 27, 1000):
        blob = rng.integers(0, 256, size=size, dtype=np.uint8).tobytes()
        assert ogg_crc(blob) == _bitwise_ogg_crc(blob)


def test_long_ogg_does_not_crash(tmp_path: Path) -> None:
    # A single large Vorbis write overflows the stack inside libvorbis (seen at 60 s stereo).
    rng = np.random.default_rng(6)
    wave = (rng.standard_normal((2, SAMPLE_RATE_OUT * 70)) * 0.05).astype(np.float32)
    path = tmp_path / "long.ogg"
    write_audio(path, wave, SAMPLE_RATE_OUT, "ogg")
    assert sf.info(path).frames == wave.shape[1]


# --------------------------------------------------------------------------------------------
# Failure handling
# --------------------------------------------------------------------------------------------


def test_missing_directory_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "out.wav"
    with pytest.raises(FileNotFoundError):
        write_audio(target, _stereo_tone(100), SAMPLE_RATE_OUT, "wav")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_injected_failure_removes_temp_and_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    target = tmp_path / "out.flac"
    target.write_bytes(b"previous")

    def boom(*_args: object, **_kwargs: object) -> None:
        raise OSError("injected")

    monkeypatch.setattr(fsutil.os, failing, boom)
    with pytest.raises(OSError, match="injected"):
        write_audio(target, _stereo_tone(100), SAMPLE_RATE_OUT, "flac")
    assert [p.name for p in tmp_path.iterdir()] == ["out.flac"]
    assert target.read_bytes() == b"previous"


@pytest.mark.parametrize(
    ("fmt", "subtype", "wave"),
    [
        ("mp3", "pcm16", np.zeros((2, 10), np.float32)),
        ("wav", "pcm24", np.zeros((2, 10), np.float32)),
        ("wav", "pcm16", np.zeros(10, np.float32)),
        ("wav", "pcm16", np.array([[0.0, np.nan]], np.float32)),
    ],
)
def test_invalid_requests_write_nothing(
    tmp_path: Path, fmt: str, subtype: str, wave: np.ndarray
) -> None:
    with pytest.raises(ValueError):
        write_audio(tmp_path / "x.out", wave, SAMPLE_RATE_OUT, fmt, subtype)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_runtime_modules_do_not_import_torch() -> None:
    code = (
        "import sys, lofi_daemon.pipeline.audio, lofi_daemon.pipeline.mel; "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 0
