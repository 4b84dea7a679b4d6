"""The encode path (audio file → source latents) against the torch reference.

Runtime: ``lofi_daemon.pipeline.source.load_audio`` (soundfile, mono duplicated, soxr to 44.1 kHz)
and ``lofi_daemon.pipeline.encode.encode_audio`` (numpy log-mel with ``mel_frontend.npz``, the
exported ``dcae_encoder`` graph in ONNX Runtime). Reference: upstream ``MusicDCAE.encode``
(``acestep/music_dcae/music_dcae_pipeline.py``) in torch (``tests/torch_reference/audio.py``), with
the vocoder's ``mel_transform`` buffers read from the tiny checkpoint itself and the project's DCAE
encoder module. Both must agree to 1e-4 on the latents.

A 48 kHz file goes through soxr on the runtime side, where upstream uses torchaudio's sinc
resampler (a documented difference, ``docs/tasks.md``): the encoders are compared on the same
resampled waveform, and the effect of the resampler alone is measured separately.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf
import torch
from lofi_export.modules.mel import LogMel
from lofi_export.reference import ReferenceModels, load_reference_models
from torch_reference.audio import encode, log_mel_module, sinc_resample

from lofi_daemon.model.manifest import load_manifest
from lofi_daemon.pipeline.encode import ENCODER_GRAPH, encode_audio, load_mel_frontend
from lofi_daemon.pipeline.source import load_audio

MAX_ABS = 1e-4


def snr_db(test: np.ndarray, reference: np.ndarray) -> float:
    err = test.astype(np.float64) - reference
    return float(10 * np.log10(np.sum(np.square(reference, dtype=np.float64)) / np.sum(err * err)))


def synthetic(seconds: float, rate: int, channels: int = 2, seed: int = 4) -> np.ndarray:
    """``[C, N]`` float32 test audio: tones at different frequencies per channel, a little noise."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.Generator(np.random.PCG64(seed))
    tones = [
        0.4 * np.sin(2 * np.pi * 196 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t)),
        0.3 * np.sin(2 * np.pi * 523 * t + np.sin(2 * np.pi * 3 * t)),
    ]
    wave = np.stack(tones[:channels]) + 0.03 * rng.standard_normal((channels, t.size))
    return wave.astype(np.float32)


@pytest.fixture(scope="module")
def torch_side(tiny_checkpoint: Path) -> Iterator[tuple[ReferenceModels, LogMel]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield load_reference_models(tiny_checkpoint), log_mel_module(tiny_checkpoint)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runtime_encode(tiny_models: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The runtime's encode of a ``[2, N]`` 44.1 kHz waveform, over the exported graph."""
    manifest = load_manifest(tiny_models)
    session = ort.InferenceSession(
        str(manifest.graph_path(ENCODER_GRAPH)), providers=["CPUExecutionProvider"]
    )
    frontend = load_mel_frontend(manifest)

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        out: np.ndarray = session.run(None, feeds)[0]
        return out

    return lambda wave: encode_audio(run, wave, frontend, manifest.constants)


def torch_encode(torch_side: tuple[ReferenceModels, LogMel], wave: np.ndarray) -> np.ndarray:
    models, log_mel = torch_side
    return encode(models, log_mel, torch.from_numpy(wave)).numpy()


def write(path: Path, wave: np.ndarray, rate: int) -> Path:
    sf.write(str(path), wave.T, rate, subtype="FLOAT")
    return path


@pytest.mark.parametrize("channels", [2, 1], ids=["stereo", "mono"])
def test_a_44k_file_encodes_as_the_reference(
    torch_side: tuple[ReferenceModels, LogMel],
    runtime_encode: Callable[[np.ndarray], np.ndarray],
    tmp_path: Path,
    channels: int,
) -> None:
    """6.3 s is not a whole number of frames: both sides right-pad to 65 frames."""
    path = write(tmp_path / "src.wav", synthetic(6.3, 44100, channels), 44100)
    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    assert rate == 44100
    wave = samples.T if channels == 2 else np.repeat(samples.T, 2, axis=0)  # upstream load_audio
    want = torch_encode(torch_side, wave)
    got = runtime_encode(load_audio(path))
    assert got.shape == want.shape == (1, 8, 16, 68)  # ceil(6.3 * 44100 / 4096)
    assert np.max(np.abs(got - want)) <= MAX_ABS
    assert np.std(want) > 0.05  # a real signal, not a constant


def test_a_48k_file_encodes_as_the_reference_on_the_same_waveform(
    torch_side: tuple[ReferenceModels, LogMel],
    runtime_encode: Callable[[np.ndarray], np.ndarray],
    tmp_path: Path,
) -> None:
    audio = synthetic(5.5, 48000)
    path = write(tmp_path / "src48.wav", audio, 48000)
    wave = load_audio(path)  # soxr 48 → 44.1 kHz
    assert wave.shape == (2, round(audio.shape[1] * 44100 / 48000))
    got = runtime_encode(wave)
    want = torch_encode(torch_side, wave)
    assert got.shape == want.shape == (1, 8, 16, 60)  # ceil(5.5 * 44100 / 4096)
    assert np.max(np.abs(got - want)) <= MAX_ABS

    # Upstream resamples with torchaudio's windowed sinc (width 6, rolloff 0.99) instead. On this
    # broadband signal the two waveforms are 32 dB apart and the latents 58 dB: the resampler
    # moves the source a little, the encoder not at all.
    upstream_wave = sinc_resample(torch.from_numpy(audio), 48000, 44100).numpy()
    assert upstream_wave.shape == wave.shape
    assert snr_db(wave, upstream_wave) > 25
    assert snr_db(got, torch_encode(torch_side, upstream_wave)) > 45
