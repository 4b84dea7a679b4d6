"""TurboEngine end to end: the tiny real export (``turbo_models``) for the audio, the synthetic
directory (tests/turbo/conftest.py) for the checks that fail before any model runs."""

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from lofi_daemon import errors
from lofi_daemon.errors import CancelledError, LofiError
from lofi_daemon.pipeline.engine import GenerationResult
from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.pipeline.progress import Progress
from lofi_daemon.turbo import TurboEngine

TURBO = "ace-step-1.5"
First = tuple[GenerationResult, Path, list[Progress]]


def _params(**kw: Any) -> GenerationParams:
    kw.setdefault("prompt", "lofi hip hop, mellow rhodes")
    kw.setdefault("duration_sec", 5.0)
    kw.setdefault("seed", 7)
    return GenerationParams(backend=TURBO, **kw)


@pytest.fixture(scope="module")
def engine(turbo_models: Path) -> Iterator[TurboEngine]:
    eng = TurboEngine(turbo_models, provider="cpu", threads=1, keep_loaded=True)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def first(engine: TurboEngine, tmp_path_factory: pytest.TempPathFactory) -> First:
    """A 6.2 s track (155 latent frames: odd, so the DiT input is padded)."""
    out = tmp_path_factory.mktemp("turbo-gen") / "a.wav"
    seen: list[Progress] = []
    result = engine.generate(_params(duration_sec=6.2), out, progress=seen.append)
    return result, out, seen


def test_writes_the_requested_duration_at_48k_stereo(engine: TurboEngine, first: First) -> None:
    result, out, seen = first
    data, rate = sf.read(out, dtype="float32", always_2d=True)
    assert rate == 48000 and data.shape == (round(6.2 * 48000), 2)
    assert result.duration_sec == pytest.approx(6.2)
    assert (result.sample_rate, result.channels, result.seed) == (48000, 2, 7)
    assert result.latents.shape == (1, 8, 155)  # [1, C, T]
    assert np.max(np.abs(data)) == pytest.approx(10 ** (-1 / 20), abs=1e-3)
    assert set(result.timings) == {"encode", "diffusion", "decode", "write", "total"}
    assert result.model_version == engine.model_version
    # 2 encoders, 8 steps, 1 decode window, the file
    assert [p.phase for p in seen] == ["encode"] * 2 + ["diffusion"] * 8 + ["decode"] * 2
    assert seen[-1].percent == 100.0
    assert engine.status()["status"] == "ready"


def test_same_seed_same_bytes_and_injected_noise_replaces_the_draw(
    engine: TurboEngine, first: First, tmp_path: Path
) -> None:
    _, out, _ = first
    again = tmp_path / "b.wav"
    engine.generate(_params(duration_sec=6.2), again)
    assert again.read_bytes() == out.read_bytes()
    draw = np.random.Generator(np.random.PCG64(7)).standard_normal((1, 155, 8), dtype=np.float32)
    injected = tmp_path / "c.wav"
    engine.generate(_params(duration_sec=6.2, seed=99), injected, initial_noise=draw)
    assert injected.read_bytes() == out.read_bytes()
    other = tmp_path / "d.wav"
    engine.generate(_params(duration_sec=6.2, seed=99), other)
    assert other.read_bytes() != out.read_bytes()


def test_five_seconds_runs_128_frames_and_is_trimmed(engine: TurboEngine, tmp_path: Path) -> None:
    result = engine.generate(_params(duration_sec=5.0, format="flac"), tmp_path / "e.flac")
    assert result.latents.shape[-1] == 128
    info = sf.info(tmp_path / "e.flac")
    assert (info.samplerate, info.channels, info.frames) == (48000, 2, 240000)


def test_cancel_between_units_leaves_no_file(engine: TurboEngine, tmp_path: Path) -> None:
    cancel = threading.Event()

    def progress(p: Progress) -> None:
        if p.phase == "diffusion" and p.step >= 4:
            cancel.set()

    out = tmp_path / "f.wav"
    with pytest.raises(CancelledError):
        engine.generate(_params(), out, progress=progress, cancel=cancel)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


# -- errors before any model runs (synthetic directory) -------------------------------------------
@pytest.mark.parametrize(
    ("params", "noise", "expected"),
    [
        ({"lyrics": "la " * 3000}, None, "tokens"),
        ({"keyscale": "H major"}, None, "H major"),
        ({}, np.zeros((1, 128, 3), np.float32), "[1, 128, 4]"),
        ({}, np.zeros((1, 4, 128), np.float32), "[1, 128, 4]"),
    ],
)
def test_bad_input_is_a_specific_error_and_writes_nothing(
    synthetic_turbo: Path,
    tmp_path: Path,
    params: dict[str, Any],
    noise: np.ndarray | None,
    expected: str,
) -> None:
    engine = TurboEngine(synthetic_turbo, provider="cpu", threads=1)
    out = tmp_path / "out" / "x.wav"
    with pytest.raises(LofiError) as info:
        engine.generate(_params(**params), out, initial_noise=noise)
    assert info.value.code == errors.INVALID_PARAMETER
    assert expected in info.value.message
    assert not out.parent.exists()


def test_v1_parameters_are_refused(synthetic_turbo: Path, tmp_path: Path) -> None:
    engine = TurboEngine(synthetic_turbo, provider="cpu", threads=1)
    with pytest.raises(LofiError) as info:
        engine.generate(GenerationParams(prompt="x", duration_sec=5.0), tmp_path / "x.wav")
    assert info.value.code == errors.INVALID_PARAMETER
    assert "ace-step" in info.value.message
    assert not (tmp_path / "x.wav").exists()


def test_synthetic_run_is_deterministic_and_status_tracks_the_disk(
    synthetic_turbo: Path, tmp_path: Path
) -> None:
    engine = TurboEngine(synthetic_turbo, provider="cpu", threads=1)
    a = engine.generate(_params(duration_sec=12.0), tmp_path / "a.wav")
    engine.generate(_params(duration_sec=12.0), tmp_path / "b.wav")
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    assert a.latents.shape == (1, 4, 300)
    assert sf.info(tmp_path / "a.wav").frames == 12 * 48000
    (synthetic_turbo / "dit.onnx").unlink()
    status = engine.status()
    assert status["status"] == "not_installed" and ":Lofi setup ace-step-1.5" in status["remedy"]
