"""Saving a station: the exact int16 concatenation of its segment files, and every refusal."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.radio import save as save_module
from lofi_daemon.radio.joins import SAMPLE_RATE
from lofi_daemon.radio.render import write_segment
from lofi_daemon.radio.save import SAVE_FORMATS, save_concatenation


def segments(folder: Path, lengths: list[int]) -> list[Path]:
    """Segment files as the radio writes them (16-bit FLAC), of noisy audio."""
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(len(lengths))
    paths = []
    for i, n in enumerate(lengths):
        path = folder / f"seg{i}.flac"
        write_segment(path, (0.3 * rng.standard_normal((n, 2))).astype(np.float32))
        paths.append(path)
    return paths


def int16_of(paths: list[Path]) -> np.ndarray:
    return np.concatenate([sf.read(str(p), dtype="int16", always_2d=True)[0] for p in paths])


@pytest.mark.parametrize("fmt", SAVE_FORMATS)
def test_save_is_the_exact_concatenation(tmp_path: Path, fmt: str) -> None:
    # Lengths off the block size, and one longer than a block, so block edges are exercised.
    paths = segments(tmp_path / "cache", [48000 + 7, 1, (1 << 16) + 3, 24000])
    out = tmp_path / f"station.{fmt}"
    saved = save_concatenation(paths, out)
    expected = int16_of(paths)
    got, rate = sf.read(str(out), dtype="int16", always_2d=True)
    assert rate == SAMPLE_RATE
    np.testing.assert_array_equal(got, expected)
    info = sf.info(str(out))
    assert (info.format, info.subtype) == (fmt.upper(), "PCM_16")
    assert saved.path == out and saved.segments == 4
    assert saved.duration_sec == pytest.approx(expected.shape[0] / SAMPLE_RATE)
    assert sorted(os.listdir(tmp_path)) == ["cache", f"station.{fmt}"]


def test_save_accepts_an_upper_case_suffix(tmp_path: Path) -> None:
    paths = segments(tmp_path / "cache", [4800])
    saved = save_concatenation(paths, tmp_path / "STATION.FLAC")
    assert sf.info(str(saved.path)).format == "FLAC"


def test_save_streams_in_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No read takes more than one block, whatever the files' lengths."""
    monkeypatch.setattr(save_module, "_BLOCK_FRAMES", 1000)
    reads: list[int] = []
    real_read = sf.SoundFile.read

    def counting_read(self: sf.SoundFile, frames: int = -1, *args: Any, **kwargs: Any) -> Any:
        reads.append(frames)
        return real_read(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", counting_read)
    paths = segments(tmp_path / "cache", [4500, 2000])
    out = tmp_path / "s.wav"
    save_concatenation(paths, out)
    assert reads and all(0 < n <= 1000 for n in reads)
    np.testing.assert_array_equal(sf.read(str(out), dtype="int16")[0], int16_of(paths))


@pytest.mark.parametrize(
    ("make_out", "message"),
    [
        (lambda d: Path("relative.flac"), "'relative.flac' is relative; give an absolute path"),
        (lambda d: d / "station.mp3", "ends in '.mp3'; use .flac or .wav"),
        (lambda d: d / "station", "ends in 'no suffix'; use .flac or .wav"),
        (lambda d: d / "exists.flac", "already exists; choose a new file name"),
        (lambda d: d / "link.flac", "already exists; choose a new file name"),
        (lambda d: d / "nope" / "station.flac", "nope does not exist"),
        (lambda d: d / "exists.flac" / "station.flac", "exists.flac is not a folder"),
    ],
)
def test_save_refuses_bad_destinations(
    tmp_path: Path, make_out: Callable[[Path], Path], message: str
) -> None:
    paths = segments(tmp_path / "cache", [4800])
    (tmp_path / "exists.flac").write_bytes(b"keep me")
    (tmp_path / "link.flac").symlink_to(tmp_path / "dangling")
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(LofiError, match=message) as caught:
        save_concatenation(paths, make_out(tmp_path))
    assert caught.value.code == errors.INVALID_PARAMETER
    assert sorted(os.listdir(tmp_path)) == before
    assert (tmp_path / "exists.flac").read_bytes() == b"keep me"


def test_save_refuses_no_segments(tmp_path: Path) -> None:
    with pytest.raises(LofiError, match="no segments to save") as caught:
        save_concatenation([], tmp_path / "s.flac")
    assert caught.value.code == errors.INVALID_PARAMETER
    assert os.listdir(tmp_path) == []


def test_save_refuses_missing_or_mismatched_segments(tmp_path: Path) -> None:
    paths = segments(tmp_path / "cache", [4800, 4800])
    gone = tmp_path / "cache" / "gone.flac"
    with pytest.raises(LofiError, match=f"segment file {gone}: cannot be read") as caught:
        save_concatenation([paths[0], gone], tmp_path / "s.flac")
    assert caught.value.code == errors.INVALID_SOURCE
    mono = tmp_path / "cache" / "mono.flac"
    sf.write(mono, np.zeros(4800), SAMPLE_RATE, subtype="PCM_16")
    with pytest.raises(LofiError, match="with 1 channels; the first segment is 48000 Hz with 2"):
        save_concatenation([paths[0], mono], tmp_path / "s.flac")
    assert sorted(os.listdir(tmp_path)) == ["cache"]


def test_save_refuses_a_wav_over_4_gib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = segments(tmp_path / "cache", [4800])
    monkeypatch.setattr(save_module, "_WAV_MAX_DATA_BYTES", 4800 * 4 - 1)
    with pytest.raises(LofiError, match="too long for a WAV file") as caught:
        save_concatenation(paths, tmp_path / "s.wav")
    assert caught.value.code == errors.INVALID_PARAMETER
    save_concatenation(paths, tmp_path / "s.flac")  # FLAC has no such limit


def test_a_write_failure_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = segments(tmp_path / "cache", [4800, 4800])

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(save_module.os, "fsync", failing_fsync)
    with pytest.raises(LofiError, match=r"cannot write .*No space left on device") as caught:
        save_concatenation(paths, tmp_path / "s.flac")
    assert caught.value.code == errors.OUTPUT_WRITE_FAILED
    assert sorted(os.listdir(tmp_path)) == ["cache"]


def test_a_segment_that_fails_mid_copy_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = segments(tmp_path / "cache", [4800, 4800])
    real_read = sf.SoundFile.read

    def read(self: sf.SoundFile, *args: Any, **kwargs: Any) -> Any:
        if self.name == str(paths[1]):
            raise sf.LibsndfileError(1, "Internal error")
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", read)
    with pytest.raises(LofiError, match=f"segment file {paths[1]}: cannot be decoded") as caught:
        save_concatenation(paths, tmp_path / "s.wav")
    assert caught.value.code == errors.INVALID_SOURCE
    assert sorted(os.listdir(tmp_path)) == ["cache"]


def test_a_name_taken_during_the_save_is_not_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone creates the file while the samples are copied: theirs stays, ours goes."""
    paths = segments(tmp_path / "cache", [4800])
    out = tmp_path / "s.flac"
    real_copy = save_module._copy

    def copy_then_race(*args: Any, **kwargs: Any) -> int:
        written = real_copy(*args, **kwargs)
        out.write_bytes(b"theirs")
        return written

    monkeypatch.setattr(save_module, "_copy", copy_then_race)
    with pytest.raises(LofiError, match="already exists") as caught:
        save_concatenation(paths, out)
    assert caught.value.code == errors.INVALID_PARAMETER
    assert out.read_bytes() == b"theirs"
    assert sorted(os.listdir(tmp_path)) == ["cache", "s.flac"]
