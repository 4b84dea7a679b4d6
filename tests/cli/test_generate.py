"""``lofi-daemon generate`` as a user runs it: a real subprocess over the tiny exported models."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from model_damage import corrupt_keep_size, truncate

from lofi_daemon.__main__ import build_parser
from lofi_daemon.model.manifest import load_manifest
from lofi_daemon.pipeline.params import GenerationParams

PROMPT = "lofi hip hop, mellow rhodes, vinyl crackle"
FRAMES_5S = int(5 * 44100 / 4096)  # latent frames for 5 s: 4096 samples each at 44.1 kHz
SAMPLES_5S = -(-4096 * FRAMES_5S * 160 // 147)  # ceil(4096·T·160/147) at 48 kHz


def lofi_daemon() -> list[str]:
    """The installed ``lofi-daemon`` script of this interpreter, else the module it runs."""
    script = Path(sys.executable).with_name("lofi-daemon")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "lofi_daemon"]


def run_cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*lofi_daemon(), *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def generate_args(models: Path, out: Path, *extra: str) -> list[str | Path]:
    return [
        "generate",
        PROMPT,
        "--duration",
        "5",
        "--steps",
        "3",
        "--seed",
        "1",
        "--models",
        models,
        "-o",
        out,
        *extra,
    ]


def assert_clean_failure(result: subprocess.CompletedProcess[str], out: Path) -> str:
    """Exit status 1, nothing on stdout, one error line (plus its remedy), no output files."""
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("lofi-daemon: error:")]
    assert len(errors) == 1, result.stderr
    assert any(line.startswith("  remedy: ") for line in result.stderr.splitlines())
    leftovers = [p.name for p in out.parent.iterdir()] if out.parent.exists() else []
    assert leftovers == [], leftovers
    return errors[0]


def empty_out_dir(tmp_path: Path) -> Path:
    """A new, empty output folder (generate never creates the folder of -o)."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def wav_run(
    tiny_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess[str], Path]:
    work = tmp_path_factory.mktemp("cli")
    out = work / "OUT.wav"
    return run_cli(*generate_args(tiny_models, out), cwd=work), out


def test_generate_prints_only_the_output_path(
    wav_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, out = wav_run
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{out}\n"
    assert "Traceback" not in result.stderr
    info = sf.info(str(out))
    assert (info.format, info.subtype) == ("WAV", "PCM_16")
    assert (info.samplerate, info.channels, info.frames) == (48000, 2, SAMPLES_5S)


def test_generate_writes_a_complete_sidecar(
    wav_run: tuple[subprocess.CompletedProcess[str], Path], tiny_models: Path
) -> None:
    result, out = wav_run
    assert result.returncode == 0, result.stderr
    sidecar = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    params = sidecar["params"]
    assert set(params) == set(GenerationParams.field_names())
    expected = GenerationParams(prompt=PROMPT, duration_sec=5.0, seed=1, infer_steps=3)
    assert params == expected.to_dict()
    assert sidecar["seed"] == 1
    assert sidecar["model_version"] == load_manifest(tiny_models).model_version
    assert sidecar["path"] == out.name
    assert (sidecar["sample_rate"], sidecar["channels"]) == (48000, 2)
    assert sidecar["duration_sec"] == pytest.approx(SAMPLES_5S / 48000)
    timings = sidecar["timings"]
    for phase in ("encode", "diffusion", "decode", "write", "total"):
        assert timings[phase] >= 0, phase
    assert timings["total"] >= timings["encode"] + timings["diffusion"] + timings["decode"]
    assert sidecar["providers"]


@pytest.mark.parametrize(
    ("fmt", "container", "subtype"), [("flac", "FLAC", "PCM_16"), ("ogg", "OGG", "VORBIS")]
)
def test_generate_other_formats(
    tiny_models: Path, tmp_path: Path, fmt: str, container: str, subtype: str
) -> None:
    out = tmp_path / f"OUT.{fmt}"
    result = run_cli(*generate_args(tiny_models, out, "--format", fmt), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{out}\n"
    info = sf.info(str(out))
    assert (info.format, info.subtype, info.samplerate, info.channels) == (
        container,
        subtype,
        48000,
        2,
    )
    assert info.frames == SAMPLES_5S
    assert json.loads(out.with_suffix(".json").read_text())["params"]["format"] == fmt


def test_initial_noise_file_reproduces_the_seeded_run(
    wav_run: tuple[subprocess.CompletedProcess[str], Path], tiny_models: Path, tmp_path: Path
) -> None:
    seeded_result, seeded = wav_run
    assert seeded_result.returncode == 0, seeded_result.stderr
    noise = np.random.Generator(np.random.PCG64(1)).standard_normal(
        (1, 8, 16, FRAMES_5S), dtype=np.float32
    )
    np.save(tmp_path / "noise.npy", noise)
    out = tmp_path / "OUT.wav"
    # --seed 2: the file's noise, not the seed, must decide x_T (Euler draws nothing else).
    args = generate_args(tiny_models, out, "--initial-noise", str(tmp_path / "noise.npy"))
    args[args.index("--seed") + 1] = "2"
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == seeded.read_bytes()
    assert json.loads(out.with_suffix(".json").read_text())["seed"] == 2


def test_initial_noise_of_the_wrong_shape(tiny_models: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "noise.npy", np.zeros((1, 8, 16, FRAMES_5S + 3), np.float32))
    out = empty_out_dir(tmp_path) / "OUT.wav"
    result = run_cli(
        *generate_args(tiny_models, out, "--initial-noise", str(tmp_path / "noise.npy")),
        cwd=tmp_path,
    )
    line = assert_clean_failure(result, out)
    assert f"shape [1, 8, 16, {FRAMES_5S}]" in line


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--duration", "4"], "duration_sec must be between 5 and 240"),
        (["--duration", "241"], "duration_sec must be between 5 and 240"),
        (["--steps", "0"], "infer_steps"),
        (["--scheduler", "ddim"], "unknown scheduler 'ddim'"),
        (["--cfg-type", "pag"], "unknown cfg_type 'pag'"),
        (["--guidance-scale", "nan"], "guidance_scale must be finite"),
        (["--guidance-scale", "-2"], "guidance_scale must not be negative"),
        (["--guidance-scale-lyric", "-1"], "guidance_scale_lyric must not be negative"),
        (["--format", "mp3"], "unknown format 'mp3'"),
    ],
)
def test_bad_parameters_fail_cleanly(
    tiny_models: Path, tmp_path: Path, extra: list[str], fragment: str
) -> None:
    out = empty_out_dir(tmp_path) / "OUT.wav"
    # argparse takes the last occurrence of an option, so the extras override the defaults.
    line = assert_clean_failure(
        run_cli(*generate_args(tiny_models, out, *extra), cwd=tmp_path), out
    )
    assert fragment in line


@pytest.mark.parametrize(
    ("prompt", "fragment"),
    [
        ("", "prompt must be a non-empty string"),
        ("x" * 1001, "prompt is 1001 characters"),
        # argv bytes that are not UTF-8 reach Python as surrogates (issue 10, item 22)
        (os.fsdecode(b"rain \xff"), "prompt is not valid text"),
    ],
    ids=["empty", "too-long", "not-utf-8"],
)
def test_bad_prompts_fail_cleanly(
    tiny_models: Path, tmp_path: Path, prompt: str, fragment: str
) -> None:
    out = empty_out_dir(tmp_path) / "OUT.wav"
    args = generate_args(tiny_models, out)
    args[1] = prompt
    line = assert_clean_failure(run_cli(*args, cwd=tmp_path), out)
    assert fragment in line


def test_missing_models_directory_fails_cleanly(tmp_path: Path) -> None:
    out = empty_out_dir(tmp_path) / "OUT.wav"
    line = assert_clean_failure(
        run_cli(*generate_args(tmp_path / "no-models", out), cwd=tmp_path), out
    )
    assert "no models installed" in line and str(tmp_path / "no-models") in line


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [(corrupt_keep_size, "cannot load denoiser.onnx"), (truncate, "the manifest says")],
    ids=["corrupt", "truncated"],
)
def test_damaged_denoiser_fails_cleanly(
    tiny_models: Path, tmp_path: Path, damage: Callable[[Path], None], fragment: str
) -> None:
    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    damage(models / "denoiser.onnx")
    out = empty_out_dir(tmp_path) / "OUT.wav"
    result = run_cli(*generate_args(models, out), cwd=tmp_path)
    assert fragment in assert_clean_failure(result, out)
    assert "could not be initialised" not in result.stderr  # a bad file is no provider failure


# --------------------------------------------------------------------------------------------
# The output path is checked before generating (issue 10, item 17)
# --------------------------------------------------------------------------------------------


def test_a_foreign_json_beside_the_output_is_never_replaced(
    tiny_models: Path, tmp_path: Path
) -> None:
    package = tmp_path / "package.json"
    package.write_text('{"name": "my-app", "version": "1.0.0"}\n')
    before = package.read_bytes()
    result = run_cli(*generate_args(tiny_models, tmp_path / "package.wav"), cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert "is not a lofi sidecar" in result.stderr and str(package) in result.stderr
    assert package.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["package.json"]


def test_a_lofi_sidecar_is_replaced_on_a_rerun(
    wav_run: tuple[subprocess.CompletedProcess[str], Path], tiny_models: Path, tmp_path: Path
) -> None:
    first, out = wav_run
    assert first.returncode == 0, first.stderr
    again = tmp_path / out.name
    shutil.copy(out, again)
    shutil.copy(out.with_suffix(".json"), again.with_suffix(".json"))
    result = run_cli(*generate_args(tiny_models, again, "--seed", "2"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(again.with_suffix(".json").read_text())["seed"] == 2


@pytest.mark.parametrize("name", ["OUT.mp3", "model.onnx", "OUT", "OUT.wav.bak"])
def test_an_unknown_output_extension_is_refused(
    tiny_models: Path, tmp_path: Path, name: str
) -> None:
    out = empty_out_dir(tmp_path) / name
    line = assert_clean_failure(run_cli(*generate_args(tiny_models, out), cwd=tmp_path), out)
    assert ".wav, .flac, .ogg" in line and str(out) in line


@pytest.mark.parametrize(("name", "fmt"), [("OUT.FLAC", "FLAC"), ("OUT.ogg", "OGG")])
def test_the_format_follows_a_known_extension(
    tiny_models: Path, tmp_path: Path, name: str, fmt: str
) -> None:
    out = tmp_path / name
    result = run_cli(*generate_args(tiny_models, out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sf.info(str(out)).format == fmt


def test_an_output_that_is_a_folder_is_refused(tiny_models: Path, tmp_path: Path) -> None:
    folder = empty_out_dir(tmp_path) / "song.wav"
    folder.mkdir()
    result = run_cli(*generate_args(tiny_models, folder), cwd=tmp_path)
    assert result.returncode == 1 and "is a folder" in result.stderr
    assert list(folder.parent.iterdir()) == [folder] and list(folder.iterdir()) == []


@pytest.mark.parametrize("parent", ["missing", "a-file"])
def test_the_output_folder_must_exist(tiny_models: Path, tmp_path: Path, parent: str) -> None:
    work = empty_out_dir(tmp_path)
    if parent == "a-file":
        (work / parent).write_text("x")
    out = work / parent / "OUT.wav"
    result = run_cli(*generate_args(tiny_models, out), cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    what = "does not exist" if parent == "missing" else "is not a folder"
    assert f"the folder {work / parent} {what}" in result.stderr
    assert sorted(p.name for p in work.iterdir()) == ([] if parent == "missing" else [parent])


def test_an_output_inside_the_models_folder_is_refused(tiny_models: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    before = {p.name: p.read_bytes() for p in models.iterdir() if p.suffix == ".json"}
    out = models / "manifest.wav"
    result = run_cli(*generate_args(models, out), cwd=tmp_path)
    assert result.returncode == 1 and "inside the models folder" in result.stderr
    assert not out.exists()
    assert {p.name: p.read_bytes() for p in models.iterdir() if p.suffix == ".json"} == before


def test_generate_help_documents_every_option(tmp_path: Path) -> None:
    result = run_cli("generate", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "lofi-SEED.FORMAT in the current folder" in text  # where the file goes without -o
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    generate = sub.choices["generate"]
    for action in generate._actions:
        assert action.help, f"no help for {action.option_strings or action.dest}"
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            shown = f"(default: {action.default})"
            assert shown in text, f"{action.option_strings[-1]}: {shown} missing"
