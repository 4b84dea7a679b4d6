"""The audio tasks end to end on the tiny exported models: retake, repaint, extend, audio2audio and
edit, from a source file or from saved latents, and their errors.

Reference behaviour: upstream ``acestep/pipeline_ace_step.py`` (``text2music_diffusion_process``,
``flowedit_diffusion_process``, ``add_latents_noise``) as summarised in acestep-v1.md §13. The
source latents the tests compare against are encoded here with the engine's encode function.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model.manifest import load_manifest
from lofi_daemon.pipeline import providers as providers_module
from lofi_daemon.pipeline.encode import encode_audio, load_mel_frontend
from lofi_daemon.pipeline.engine import Engine, GenerationResult
from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.pipeline.progress import Progress
from lofi_daemon.pipeline.sessions import GraphRunner
from lofi_daemon.pipeline.source import SourceAudio, load_audio

PROMPT = "lofi hip hop, mellow rhodes"
FAST: dict[str, Any] = {"infer_steps": 4, "seed": 7}
SOURCE_SEC = 6.0
T_SRC = math.ceil(SOURCE_SEC * 44100 / 4096)  # 65 frames after padding to whole frames


def frames(seconds: float) -> int:
    return int(seconds * 44100 / 4096)


def seeded(seed: int, n_frames: int) -> np.ndarray:
    return np.random.Generator(np.random.PCG64(seed)).standard_normal(
        (1, 8, 16, n_frames), dtype=np.float32
    )


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def shared_sessions() -> Iterator[None]:
    """Create each ONNX session once for the module (sessions hold no per-run state)."""
    real = providers_module.create_session
    sessions: dict[tuple[str, tuple[str, ...], int | None], ort.InferenceSession] = {}

    def cached(
        path: Path, providers: list[str], threads: int | None, *, strict: bool = False
    ) -> ort.InferenceSession:
        key = (os.path.realpath(path), tuple(providers), threads)  # symlinked copies too
        if key not in sessions:
            sessions[key] = real(path, providers, threads, strict=strict)
        return sessions[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(providers_module, "create_session", cached)
        yield


@pytest.fixture(scope="module")
def engine(tiny_models: Path) -> Engine:
    return Engine(tiny_models, provider="cpu")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tasks")


def tone(seconds: float, rate: int, channels: int = 2) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    chans = [
        0.4 * np.sin(2 * np.pi * (220 + 110 * c) * t) * (1 + 0.5 * np.sin(t)) for c in range(2)
    ]
    return np.stack(chans[:channels], axis=1).astype(np.float32)


@pytest.fixture(scope="module")
def source_file(workdir: Path) -> Path:
    path = workdir / "source.wav"
    sf.write(str(path), tone(SOURCE_SEC, 44100), 44100, subtype="FLOAT")
    return path


@pytest.fixture(scope="module")
def source_latents(tiny_models: Path, source_file: Path) -> np.ndarray:
    """The source encoded with the engine's encode function, on its own session."""
    manifest = load_manifest(tiny_models)
    session = ort.InferenceSession(
        str(manifest.graph_path("dcae_encoder")), providers=["CPUExecutionProvider"]
    )
    latents = encode_audio(
        GraphRunner("dcae_encoder", session).first,
        load_audio(source_file),
        load_mel_frontend(manifest),
        manifest.constants,
    )
    assert latents.shape == (1, 8, 16, T_SRC)
    return latents


def make_params(task: str, **overrides: Any) -> GenerationParams:
    return GenerationParams(**{"prompt": PROMPT, "task": task, **FAST, **overrides})


def run(
    engine: Engine, out: Path, task: str, source: SourceAudio | Path | None = None, **kw: Any
) -> GenerationResult:
    noise = {k: kw.pop(k) for k in ("initial_noise", "retake_noise", "progress") if k in kw}
    if isinstance(source, Path):
        source = SourceAudio(path=source)
    return engine.generate(make_params(task, **kw), out, source=source, **noise)


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def check_file(result: GenerationResult, n_frames: int) -> None:
    """The file holds ``n_frames`` frames' worth of 48 kHz stereo audio."""
    assert result.latents.shape == (1, 8, 16, n_frames) and result.latents.dtype == np.float32
    assert result.params.duration_sec == pytest.approx(n_frames * 4096 / 44100)
    info = sf.info(str(result.path))
    assert (info.samplerate, info.channels) == (48000, 2)
    assert info.frames == int(result.params.duration_sec * 48000)
    assert result.duration_sec == pytest.approx(info.frames / 48000)


@pytest.fixture(scope="module")
def repainted(engine: Engine, workdir: Path, source_file: Path) -> GenerationResult:
    return run(
        engine, workdir / "repaint.wav", "repaint", source_file, repaint_start=1.0, repaint_end=3.5
    )


# ---------------------------------------------------------------------------------------------
# retake
# ---------------------------------------------------------------------------------------------


def test_retake_with_variance_0_is_the_text2music_track(engine: Engine, tmp_path: Path) -> None:
    plain = run(engine, tmp_path / "plain.wav", "text2music", duration_sec=5.0)
    same = run(engine, tmp_path / "same.wav", "retake", duration_sec=5.0, retake_variance=0.0)
    assert (tmp_path / "plain.wav").read_bytes() == (tmp_path / "same.wav").read_bytes()
    np.testing.assert_array_equal(plain.latents, same.latents)
    assert plain.params.retake_seed is None and plain.params.retake_variance is None

    other = run(engine, tmp_path / "other.wav", "retake", duration_sec=5.0, retake_seed=3)
    assert other.params.retake_variance == 0.5 and other.params.retake_seed == 3
    assert not np.allclose(other.latents, plain.latents)
    assert other.params.duration_sec == 5.0  # text tasks keep the asked duration
    assert "latents" not in json.dumps(other.sidecar())
    assert other.sidecar()["params"]["retake_seed"] == 3


def test_retake_noise_injection_reproduces_the_seeded_run(engine: Engine, tmp_path: Path) -> None:
    seeded_run = run(engine, tmp_path / "a.wav", "retake", duration_sec=5.0, scheduler="pingpong")
    retake_seed = seeded_run.params.retake_seed
    assert retake_seed is not None  # drawn at random, reported
    injected = run(
        engine,
        tmp_path / "b.wav",
        "retake",
        duration_sec=5.0,
        scheduler="pingpong",
        retake_seed=retake_seed + 1,  # ignored for the draw: the injected array replaces it
        initial_noise=seeded(7, frames(5.0)),
        retake_noise=seeded(retake_seed, frames(5.0)).astype(np.float64),
    )
    np.testing.assert_array_equal(injected.latents, seeded_run.latents)
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()


# ---------------------------------------------------------------------------------------------
# repaint
# ---------------------------------------------------------------------------------------------


def test_repaint_keeps_the_source_outside_the_region(
    repainted: GenerationResult, source_latents: np.ndarray
) -> None:
    s0, s1 = frames(1.0), frames(3.5)
    check_file(repainted, T_SRC)
    latents = repainted.latents
    np.testing.assert_array_equal(latents[..., :s0], source_latents[..., :s0])
    np.testing.assert_array_equal(latents[..., s1:], source_latents[..., s1:])
    assert not np.allclose(latents[..., s0:s1], source_latents[..., s0:s1])
    params = repainted.params
    assert (params.retake_variance, params.seed) == (0.5, 7)
    assert params.retake_seed is not None


def test_repaint_from_saved_latents_equals_repaint_from_the_file(
    engine: Engine,
    tmp_path: Path,
    repainted: GenerationResult,
    source_latents: np.ndarray,
) -> None:
    events: list[Progress] = []
    result = run(
        engine,
        tmp_path / "t.wav",
        "repaint",
        SourceAudio(latents=source_latents, label="track abc"),
        repaint_start=1.0,
        repaint_end=3.5,
        retake_seed=repainted.params.retake_seed,
        progress=events.append,
    )
    np.testing.assert_array_equal(result.latents, repainted.latents)
    assert (tmp_path / "t.wav").read_bytes() == repainted.path.read_bytes()
    # no audio to encode: only the two prompt encoder units
    assert [e.phase for e in events].count("encode") == 2


def test_repaint_noise_injection_reproduces_the_seeded_run(
    engine: Engine, tmp_path: Path, source_file: Path, repainted: GenerationResult
) -> None:
    retake_seed = repainted.params.retake_seed
    assert retake_seed is not None
    result = run(
        engine,
        tmp_path / "t.wav",
        "repaint",
        source_file,
        repaint_start=1.0,
        repaint_end=3.5,
        retake_seed=(retake_seed + 1) % 2**32,
        initial_noise=seeded(7, T_SRC),
        retake_noise=seeded(retake_seed, T_SRC),
    )
    np.testing.assert_array_equal(result.latents, repainted.latents)


def test_a_mono_source_equals_its_stereo_duplicate(
    engine: Engine, tmp_path: Path, source_file: Path
) -> None:
    mono = tone(SOURCE_SEC, 44100, channels=1)
    sf.write(str(tmp_path / "mono.wav"), mono, 44100, subtype="FLOAT")
    sf.write(str(tmp_path / "dup.wav"), np.repeat(mono, 2, axis=1), 44100, subtype="FLOAT")
    common: dict[str, Any] = {"repaint_start": 2.0, "repaint_end": 4.0, "retake_seed": 1}
    a = run(engine, tmp_path / "a.wav", "repaint", tmp_path / "mono.wav", **common)
    b = run(engine, tmp_path / "b.wav", "repaint", tmp_path / "dup.wav", **common)
    np.testing.assert_array_equal(a.latents, b.latents)
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()


def test_a_22050_hz_source_is_resampled(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "low.wav"
    sf.write(str(path), tone(SOURCE_SEC, 22050), 22050, subtype="PCM_16")
    result = run(engine, tmp_path / "t.wav", "audio2audio", path)
    check_file(result, T_SRC)  # 6 s at 44.1 kHz: 65 frames, as the 44.1 kHz file


# ---------------------------------------------------------------------------------------------
# extend
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "right"),
    [(1.0, 2.0), (0.0, 7.5)],  # 7.5 s: a side longer than the source (retake noise of 80 frames)
)
def test_extend_adds_frames_and_keeps_the_source(
    engine: Engine,
    tmp_path: Path,
    source_file: Path,
    source_latents: np.ndarray,
    left: float,
    right: float,
) -> None:
    result = run(
        engine, tmp_path / "t.wav", "extend", source_file, extend_left=left, extend_right=right
    )
    n_left, n_right = frames(left), frames(right)
    check_file(result, n_left + T_SRC + n_right)
    np.testing.assert_array_equal(result.latents[..., n_left : n_left + T_SRC], source_latents)
    assert result.params.retake_variance == 1.0

    # The injected noises reproduce it; the retake noise covers the longest of source and sides.
    retake_seed = result.params.retake_seed
    assert retake_seed is not None
    again = run(
        engine,
        tmp_path / "again.wav",
        "extend",
        source_file,
        extend_left=left,
        extend_right=right,
        initial_noise=seeded(7, T_SRC),
        retake_noise=seeded(retake_seed, max(T_SRC, n_left, n_right)),
    )
    np.testing.assert_array_equal(again.latents, result.latents)


# ---------------------------------------------------------------------------------------------
# audio2audio
# ---------------------------------------------------------------------------------------------


def test_audio2audio_moves_closer_to_the_reference_as_strength_grows(
    engine: Engine, tmp_path: Path, source_file: Path, source_latents: np.ndarray
) -> None:
    distances = []
    for strength in (0.2, 0.6, 0.95):
        result = run(
            engine,
            tmp_path / f"{strength}.wav",
            "audio2audio",
            source_file,
            ref_strength=strength,
            infer_steps=20,  # int(0.05 * 20) = 1 step at 0.95
        )
        check_file(result, T_SRC)
        distances.append(float(np.linalg.norm(result.latents - source_latents)))
    assert distances[0] > distances[1] > distances[2], distances


def test_audio2audio_runs_the_shortened_schedule(
    engine: Engine, tmp_path: Path, source_file: Path
) -> None:
    events: list[Progress] = []
    run(
        engine,
        tmp_path / "t.wav",
        "audio2audio",
        source_file,
        ref_strength=0.5,
        infer_steps=8,
        progress=events.append,
    )
    phases = [e.phase for e in events]
    assert phases.count("diffusion") == 4  # int((1 - 0.5) * 8)
    assert phases.count("encode") == 3  # the source, the prompt, the conditions


# ---------------------------------------------------------------------------------------------
# edit
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def edited(engine: Engine, workdir: Path, source_file: Path) -> GenerationResult:
    return run(engine, workdir / "edit.wav", "edit", source_file, edit_prompt="jazz trio, brushes")


def test_edit_changes_the_source_and_follows_the_target_prompt(
    engine: Engine,
    tmp_path: Path,
    source_file: Path,
    source_latents: np.ndarray,
    edited: GenerationResult,
) -> None:
    check_file(edited, T_SRC)
    assert not np.allclose(edited.latents, source_latents)
    other = run(engine, tmp_path / "o.wav", "edit", source_file, edit_prompt="metal, distorted")
    assert not np.allclose(other.latents, edited.latents)
    # the same seed and prompts reproduce it
    again = run(engine, tmp_path / "a.wav", "edit", source_file, edit_prompt="jazz trio, brushes")
    np.testing.assert_array_equal(again.latents, edited.latents)
    assert edited.params.retake_seed is None and edited.params.edit_prompt == "jazz trio, brushes"


def test_edit_towards_the_same_prompt_without_guidance_keeps_the_source(
    engine: Engine, tmp_path: Path, source_file: Path, source_latents: np.ndarray
) -> None:
    # FlowEdit follows V_target − V_source on identical inputs: zero, so z_edit stays the source.
    result = run(
        engine, tmp_path / "t.wav", "edit", source_file, edit_prompt=PROMPT, guidance_scale=1.0
    )
    np.testing.assert_allclose(result.latents, source_latents, atol=1e-5)


def test_edit_with_no_edited_step_samples_the_target_from_n_max(
    engine: Engine,
    tmp_path: Path,
    source_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 4 steps: int(4·0.5) = int(4·0.6) = 2, so no step follows the velocity difference; upstream
    # re-noises the source at i = n_max and samples the target prediction for steps 2 and 3.
    batches: list[int] = []
    original = GraphRunner.__call__

    def spy(self: GraphRunner, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self.graph == "denoiser":
            batches.append(feeds["latents"].shape[0])
        return original(self, feeds)

    monkeypatch.setattr(GraphRunner, "__call__", spy)
    events: list[Progress] = []
    result = run(
        engine,
        tmp_path / "t.wav",
        "edit",
        source_file,
        edit_prompt="jazz",
        edit_n_min=0.5,
        edit_n_max=0.6,
        progress=events.append,
    )
    check_file(result, T_SRC)
    assert batches == [2, 2]  # target and its null row, steps 2 and 3 only
    phases = [e.phase for e in events]
    assert phases.count("diffusion") == 4  # skipped steps count as progress
    assert phases.count("encode") == 4  # the source, two prompts, the conditions
    assert events[-1].percent == 100.0


# ---------------------------------------------------------------------------------------------
# progress
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["repaint", "extend"])
def test_progress_counts_the_encode_unit_and_skipped_steps(
    engine: Engine, tmp_path: Path, source_file: Path, task: str
) -> None:
    out = tmp_path / "t.wav"
    events: list[Progress] = []
    extra: dict[str, Any] = (
        {"repaint_start": 1.0, "repaint_end": 2.0, "retake_variance": 0.3}
        if task == "repaint"
        else {"extend_left": 1.0}
    )
    run(engine, out, task, source_file, progress=events.append, **extra)
    phases = [e.phase for e in events]
    runs = [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p]
    assert runs == ["encode", "diffusion", "decode"]
    assert phases.count("encode") == 3
    assert phases.count("diffusion") == FAST["infer_steps"]  # n_min = int(4·0.7) = 2 skipped
    assert [e.step for e in events] == list(range(1, len(events) + 1))
    assert {e.total for e in events} == {len(events)}
    assert all(b.percent > a.percent for a, b in itertools.pairwise(events))
    assert events[-1].percent == 100.0 and out.exists()


# ---------------------------------------------------------------------------------------------
# bad input: a specific error, no model run, no file
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_sources(workdir: Path) -> dict[str, Path]:
    folder = workdir / "bad"
    folder.mkdir()
    (folder / "text.wav").write_bytes(b"hello, not audio\n" * 64)
    sf.write(str(folder / "short.wav"), tone(3.0, 44100), 44100)
    sf.write(str(folder / "long.wav"), np.zeros((241 * 8000, 1), np.float32), 8000)
    return {
        "missing": folder / "missing.wav",
        "folder": folder,
        "text": folder / "text.wav",
        "short": folder / "short.wav",
        "long": folder / "long.wav",
    }


@pytest.mark.parametrize(
    ("which", "fragment"),
    [
        ("missing", "no such file"),
        ("folder", "folder"),
        ("text", "not a readable audio file"),
        ("short", "3.00 s"),
        ("long", "241.00 s"),
    ],
)
def test_a_bad_source_file_is_invalid_source(
    engine: Engine,
    tmp_path: Path,
    bad_sources: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    which: str,
    fragment: str,
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(GraphRunner, "__call__", lambda self, feeds: calls.append(self.graph))
    with pytest.raises(LofiError) as info:
        run(engine, tmp_path / "out" / "t.wav", "audio2audio", bad_sources[which])
    assert info.value.code == errors.INVALID_SOURCE
    assert str(bad_sources[which]) in info.value.message and fragment in info.value.message
    assert calls == [] and files_under(tmp_path) == []


BAD_TASKS: list[tuple[str, dict[str, Any], bool, int, str]] = [
    # (task, params, with a source, code, message fragment)
    ("repaint", {"repaint_start": 2.0, "repaint_end": 6.2}, True, errors.INVALID_PARAMETER, "6.2"),
    (
        "repaint",
        {"repaint_start": 7.0, "repaint_end": 9.0},
        True,
        errors.INVALID_PARAMETER,
        "inside",
    ),
    ("extend", {"extend_right": 234.5}, True, errors.INVALID_PARAMETER, "240 s"),
    (
        "extend",
        {"extend_left": 120.0, "extend_right": 115.0},
        True,
        errors.INVALID_PARAMETER,
        "2583",
    ),
    (
        "retake",
        {"retake_variance": 1.5, "duration_sec": 5.0},
        False,
        errors.INVALID_PARAMETER,
        "retake_variance",
    ),
    (
        "repaint",
        {"repaint_end": 2.0, "retake_variance": 0.0},
        True,
        errors.INVALID_PARAMETER,
        "retake_variance",
    ),
    ("edit", {}, True, errors.INVALID_PROMPT, "edit_prompt"),
    ("text2music", {"repaint_start": 1.0}, False, errors.INVALID_PARAMETER, "repaint_start"),
    ("audio2audio", {"extend_left": 1.0}, True, errors.INVALID_PARAMETER, "extend_left"),
    ("repaint", {"repaint_end": 2.0}, False, errors.INVALID_PARAMETER, "needs a source"),
    ("edit", {"edit_prompt": "x"}, False, errors.INVALID_PARAMETER, "needs a source"),
    ("text2music", {"duration_sec": 5.0}, True, errors.INVALID_PARAMETER, "takes no source"),
    ("retake", {"duration_sec": 5.0}, True, errors.INVALID_PARAMETER, "takes no source"),
]


@pytest.mark.parametrize(("task", "params", "with_source", "code", "fragment"), BAD_TASKS)
def test_a_bad_task_request_fails_before_any_model_runs(
    engine: Engine,
    tmp_path: Path,
    source_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    task: str,
    params: dict[str, Any],
    with_source: bool,
    code: int,
    fragment: str,
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(GraphRunner, "__call__", lambda self, feeds: calls.append(self.graph))
    with pytest.raises(LofiError) as info:
        run(
            engine, tmp_path / "out" / "t.wav", task, source_file if with_source else None, **params
        )
    assert info.value.code == code, info.value.message
    assert fragment in info.value.message
    assert calls == [] and files_under(tmp_path) == []


@pytest.mark.parametrize(
    ("task", "kw", "fragment"),
    [
        (
            "repaint",
            {"retake_noise": np.zeros((1, 8, 16, T_SRC + 1), np.float32)},
            "retake noise must",
        ),
        ("repaint", {"initial_noise": np.zeros((1, 8, 16, 53), np.float32)}, "[1, 8, 16, 65]"),
        ("extend", {"retake_noise": np.zeros((1, 8, 16, T_SRC), np.float32)}, "[1, 8, 16, 80]"),
        ("repaint", {"retake_noise": np.full((1, 8, 16, T_SRC), np.inf, np.float32)}, "NaN"),
        ("audio2audio", {"retake_noise": np.zeros((1, 8, 16, T_SRC), np.float32)}, "no retake"),
        ("edit", {"initial_noise": np.zeros((1, 8, 16, T_SRC), np.float32)}, "no initial noise"),
    ],
)
def test_bad_injected_noise_is_refused(
    engine: Engine,
    tmp_path: Path,
    source_file: Path,
    task: str,
    kw: dict[str, Any],
    fragment: str,
) -> None:
    extras: dict[str, dict[str, Any]] = {
        "repaint": {"repaint_end": 2.0},
        "extend": {"extend_right": 7.5},
        "audio2audio": {},
        "edit": {"edit_prompt": "jazz"},
    }
    extra = extras[task]
    with pytest.raises(LofiError) as info:
        run(engine, tmp_path / "out" / "t.wav", task, source_file, **kw, **extra)
    assert info.value.code == errors.INVALID_PARAMETER
    assert fragment in info.value.message
    assert files_under(tmp_path) == []


@pytest.mark.parametrize(
    ("latents", "fragment"),
    [
        (np.zeros((1, 8, 16, 20), np.float32), "20 frames"),
        (np.zeros((1, 8, 8, 65), np.float32), "shape"),
        (np.zeros((1, 8, 16, 65), np.int16), "float"),
        (np.full((1, 8, 16, 65), np.nan, np.float32), "NaN"),
    ],
)
def test_bad_saved_latents_are_invalid_source(
    engine: Engine, tmp_path: Path, latents: np.ndarray, fragment: str
) -> None:
    source = SourceAudio(latents=latents, label="track 0123")
    with pytest.raises(LofiError) as info:
        run(engine, tmp_path / "t.wav", "audio2audio", source)
    assert info.value.code == errors.INVALID_SOURCE
    assert "track 0123" in info.value.message and fragment in info.value.message
    assert files_under(tmp_path) == []


def test_a_source_must_be_a_file_or_latents_not_both(
    engine: Engine, tmp_path: Path, source_file: Path, source_latents: np.ndarray
) -> None:
    for source in (SourceAudio(), SourceAudio(path=source_file, latents=source_latents)):
        with pytest.raises(LofiError) as info:
            run(engine, tmp_path / "t.wav", "audio2audio", source)
        assert info.value.code == errors.INVALID_PARAMETER
    assert files_under(tmp_path) == []


def test_models_without_the_encoder_refuse_audio_sources_only(
    tiny_models: Path, tmp_path: Path, source_file: Path, source_latents: np.ndarray
) -> None:
    # An older export: no dcae_encoder graph. Text tasks and saved latents still work.
    models = tmp_path / "models"
    models.mkdir()
    manifest = json.loads((tiny_models / "manifest.json").read_text(encoding="utf-8"))
    del manifest["graphs"]["dcae_encoder"]
    del manifest["files"]["dcae_encoder.onnx"]
    (models / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    for name in manifest["files"]:
        os.symlink(tiny_models / name, models / name)
    engine = Engine(models, provider="cpu")
    out = tmp_path / "out"
    with pytest.raises(LofiError) as info:
        run(engine, out / "a.wav", "audio2audio", source_file)
    assert info.value.code == errors.MODEL_NOT_FOUND
    assert "dcae_encoder" in info.value.message
    assert files_under(out) == []
    run(engine, out / "b.wav", "audio2audio", SourceAudio(latents=source_latents), infer_steps=2)
    run(engine, out / "c.wav", "text2music", duration_sec=5.0, infer_steps=2)
    assert [p.name for p in files_under(out)] == ["b.wav", "c.wav"]


def test_result_params_reload_from_the_sidecar(repainted: GenerationResult) -> None:
    params = GenerationParams.from_dict(repainted.sidecar()["params"])
    assert params == repainted.params
    assert dataclasses.replace(params, duration_sec=30.0) == make_params(
        "repaint",
        repaint_start=1.0,
        repaint_end=3.5,
        retake_variance=0.5,
        retake_seed=repainted.params.retake_seed,
    )
