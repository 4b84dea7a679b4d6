"""Source audio files: the header checks, and reading them as 44.1 kHz stereo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.pipeline import source as source_module
from lofi_daemon.pipeline.source import SourceAudio, check_audio_file, load_audio


def sine(seconds: float, rate: int, channels: int = 2, freq: float = 440.0) -> np.ndarray:
    """``[N, C]`` float32, each channel a sine of its own phase."""
    t = np.arange(int(seconds * rate)) / rate
    return np.stack(
        [0.5 * np.sin(2 * np.pi * freq * t + c) for c in range(channels)], axis=1
    ).astype(np.float32)


def write(path: Path, samples: np.ndarray, rate: int, subtype: str = "FLOAT") -> Path:
    sf.write(str(path), samples, rate, subtype=subtype)
    return path


def rejected(path: Path) -> LofiError:
    with pytest.raises(LofiError) as info:
        check_audio_file(path)
    assert info.value.code == errors.INVALID_SOURCE
    assert str(path) in info.value.message  # the message names the file
    return info.value


def test_a_valid_file_reports_its_length(tmp_path: Path) -> None:
    path = write(tmp_path / "a.wav", sine(6.0, 44100), 44100)
    assert check_audio_file(path) == pytest.approx(6.0)
    flac = write(tmp_path / "a.flac", sine(5.0, 32000, 1), 32000, "PCM_16")
    assert check_audio_file(str(flac)) == pytest.approx(5.0)


def test_missing_file(tmp_path: Path) -> None:
    assert "no such file" in rejected(tmp_path / "nope.wav").message


def test_a_folder(tmp_path: Path) -> None:
    assert "folder" in rejected(tmp_path).message


def test_bytes_that_are_not_audio(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_bytes(b"these are not the samples you are looking for\n" * 100)
    assert "not a readable audio file" in rejected(path).message
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    rejected(empty)


@pytest.mark.parametrize(("seconds", "rate"), [(3.0, 44100), (4.82, 8000), (241.0, 8000)])
def test_too_short_or_too_long_is_refused_from_the_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seconds: float, rate: int
) -> None:
    # A quiet mono 8 kHz file keeps the 241 s case small (3.9 MB) and quick to write.
    path = write(tmp_path / "s.wav", np.zeros((int(seconds * rate), 1), np.float32), rate, "PCM_16")

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("the samples were decoded")

    monkeypatch.setattr(source_module.sf, "read", no_decoding)
    error = rejected(path)
    assert (
        "longer than 4.83 s and at most 240 s" in error.message
        and f"{seconds:.2f} s" in error.message
    )
    with pytest.raises(LofiError) as info:
        load_audio(path)  # load_audio checks first, too
    assert info.value.code == errors.INVALID_SOURCE


def test_more_than_two_channels_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "surround.wav", sine(5.5, 44100, channels=3), 44100)
    assert "3 channels" in rejected(path).message


def test_stereo_at_44k1_is_read_as_is(tmp_path: Path) -> None:
    samples = sine(5.5, 44100)
    wave = load_audio(write(tmp_path / "a.wav", samples, 44100))
    assert wave.dtype == np.float32 and wave.shape == (2, samples.shape[0])
    np.testing.assert_array_equal(wave, samples.T)


def test_mono_is_duplicated_to_two_channels(tmp_path: Path) -> None:
    mono = sine(5.5, 44100, channels=1)
    wave = load_audio(write(tmp_path / "mono.wav", mono, 44100))
    stereo = load_audio(write(tmp_path / "stereo.wav", np.repeat(mono, 2, axis=1), 44100))
    assert wave.shape == (2, mono.shape[0])
    np.testing.assert_array_equal(wave, stereo)
    np.testing.assert_array_equal(wave[0], mono[:, 0])


def test_another_rate_is_resampled_to_44k1(tmp_path: Path) -> None:
    samples = sine(6.0, 22050, freq=1000.0)
    wave = load_audio(write(tmp_path / "low.wav", samples, 22050))
    assert wave.dtype == np.float32 and wave.shape[0] == 2
    assert abs(wave.shape[1] - 2 * samples.shape[0]) <= 2
    # Still a 1 kHz tone: the spectrum peaks at 1000 Hz of the 44.1 kHz signal.
    spectrum = np.abs(np.fft.rfft(wave[0]))
    peak_hz = np.argmax(spectrum) * 44100 / wave.shape[1]
    assert peak_hz == pytest.approx(1000.0, abs=1.0)
    # and matches a tone written at 44.1 kHz, away from the edges
    reference = sine(6.0, 44100, freq=1000.0).T
    middle = slice(4410, 4410 * 50)
    np.testing.assert_allclose(wave[:, middle], reference[:, middle], atol=2e-3)


def test_a_source_is_named_by_its_label_or_path() -> None:
    assert SourceAudio(path=Path("/x/a.wav")).name == "/x/a.wav"
    assert SourceAudio(path=Path("/x/a.wav"), label="src_path a.wav").name == "src_path a.wav"
    latents = np.zeros((1, 8, 16, 60), np.float32)
    assert SourceAudio(latents=latents, label="track 1234").name == "track 1234"
    assert SourceAudio(latents=latents).name == "the source latents"


def test_the_shortest_track_the_plugin_makes_is_a_valid_source(tmp_path: Path) -> None:
    # A 5 s text2music track has int(5·44100/4096) = 53 latent frames; its 48 kHz file holds
    # ceil(4096·53·160/147) samples (4.92 s). It must be usable as a source.
    samples = -(-4096 * 53 * 160 // 147)
    wave = np.zeros((samples, 2), np.float32)
    path = write(tmp_path / "five.wav", wave, 48000, "PCM_16")
    assert check_audio_file(path) == pytest.approx(samples / 48000)
