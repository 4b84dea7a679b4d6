"""``lofi-daemon generate --backend`` and the ACE-Step 1.5 flags: parsing, which backend runs, and
the errors raised before any model is loaded (in process: no model, no output file)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lofi_daemon import errors
from lofi_daemon.__main__ import build_parser
from lofi_daemon.cli.generate import run_generate
from lofi_daemon.cli.generate_args import manifest_backend, resolve_backend, turbo_fields
from lofi_daemon.errors import LofiError

TURBO = "ace-step-1.5"


def parse(*args: str | Path) -> argparse.Namespace:
    return build_parser().parse_args(["generate", "rain", *map(str, args)])


def refused(args: argparse.Namespace) -> LofiError:
    with pytest.raises(LofiError) as caught:
        run_generate(args)
    return caught.value


def write_manifest(folder: Path, backend: str | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"schema_version": 1} if backend is None else {"backend": backend}
    (folder / "manifest.json").write_text(json.dumps(data))
    return folder


def test_the_turbo_flags_become_its_fields(tmp_path: Path) -> None:
    lyrics = tmp_path / "song.txt"
    lyrics.write_text("[verse]\nrain on the window\n", encoding="utf-8")
    args = parse(
        "--backend",
        TURBO,
        "--lyrics-file",
        lyrics,
        "--language",
        "en",
        "--bpm",
        "84",
        "--key",
        "F# minor",
        "--time-signature",
        "3",
        "--shift",
        "2",
    )
    assert args.backend == TURBO
    assert turbo_fields(args) == {
        "lyrics": "[verse]\nrain on the window\n",
        "vocal_language": "en",
        "bpm": 84,
        "keyscale": "F# minor",
        "time_signature": 3,
        "shift": 2,
    }
    assert turbo_fields(parse()) == {}
    assert turbo_fields(parse("--lyrics", "la la")) == {"lyrics": "la la"}


@pytest.mark.parametrize(
    ("flags", "code", "needles"),
    [
        (["--backend", "musicgen"], errors.INVALID_BACKEND, ("unknown backend 'musicgen'",)),
        (["--backend", TURBO, "--steps", "8"], errors.INVALID_PARAMETER, ("infer_steps", TURBO)),
        (
            ["--backend", TURBO, "--guidance-scale", "5"],
            errors.INVALID_PARAMETER,
            ("guidance_scale", TURBO),
        ),
        (["--backend", TURBO, "--variant", "jazz"], errors.INVALID_PARAMETER, ("--variant", TURBO)),
        (
            ["--backend", TURBO, "--task", "retake"],
            errors.INVALID_PARAMETER,
            ("task 'retake' is not available", TURBO),
        ),
        (["--backend", TURBO, "--duration", "700"], errors.INVALID_DURATION, ("5 and 600",)),
        (["--backend", TURBO, "--key", "H major"], errors.INVALID_PARAMETER, ("unknown key",)),
        (["--backend", TURBO, "--bpm", "20"], errors.INVALID_PARAMETER, ("bpm must be",)),
        (["--backend", TURBO, "--language", "xx"], errors.INVALID_PARAMETER, ("vocal_language",)),
        (
            ["--backend", TURBO, "--lyrics", "x" * 20000],
            errors.INVALID_PARAMETER,
            ("lyrics are 20000 characters",),
        ),
        (["--backend", "ace-step", "--bpm", "90"], errors.INVALID_PARAMETER, ("bpm", "ace-step")),
        (["--backend", "ace-step", "--lyrics", "la"], errors.INVALID_PARAMETER, ("lyrics",)),
        (
            ["--lyrics", "la", "--lyrics-file", "x.txt"],
            errors.INVALID_PARAMETER,
            ("--lyrics or --lyrics-file",),
        ),
        (
            ["--lyrics-file", "missing.txt"],
            errors.INVALID_PARAMETER,
            ("cannot read --lyrics-file",),
        ),
    ],
)
def test_bad_backend_flags_fail_before_any_model(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    code: int,
    needles: tuple[str, ...],
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    models = tmp_path / "no-models"
    error = refused(parse(*flags, "--models", models, "-o", out / "x.wav"))
    assert error.code == code
    for needle in needles:
        assert needle in error.message, error.message
    assert list(out.iterdir()) == [] and not models.exists()


def test_a_lyrics_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "lyrics.txt"
    bad.write_bytes(b"\xff\xfe rain")
    with pytest.raises(LofiError) as caught:
        turbo_fields(parse("--lyrics-file", bad))
    assert caught.value.code == errors.INVALID_PARAMETER


def test_the_backend_follows_models_then_the_installed_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    turbo_dir = write_manifest(tmp_path / "t", TURBO)
    v1_dir = write_manifest(tmp_path / "v", None)
    assert manifest_backend(turbo_dir) == TURBO and manifest_backend(v1_dir) == "ace-step"
    assert manifest_backend(tmp_path / "none") is None
    assert resolve_backend(None, turbo_dir) == (TURBO, turbo_dir)
    assert resolve_backend(None, v1_dir) == ("ace-step", v1_dir)
    assert resolve_backend("ace-step", turbo_dir) == ("ace-step", turbo_dir)  # --backend wins
    root = tmp_path / "cache"
    monkeypatch.setenv("LOFI_MODELS_DIR", str(root / "ace-step"))
    monkeypatch.delenv("LOFI_MODELS_DIR_ACE_STEP_1_5", raising=False)
    assert resolve_backend(None, None) == ("ace-step", root / "ace-step")  # nothing installed
    write_manifest(root / TURBO, TURBO)
    assert resolve_backend(None, None) == (TURBO, root / TURBO)  # the only installed one
    write_manifest(root / "ace-step", None)
    assert resolve_backend(None, None) == ("ace-step", root / "ace-step")  # both: ace-step
    assert resolve_backend(TURBO, None) == (TURBO, root / TURBO)


def test_generate_help_names_the_backends(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--backend", "--lyrics-file", "--language", "--bpm", "--key", "--shift"):
        assert flag in text
    assert "ace-step | ace-step-1.5" in text and "[1, T, C] (ace-step-1.5)" in text


def run_cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lofi_daemon", *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_generate_on_the_tiny_1_5_model(turbo_models: Path, tmp_path: Path) -> None:
    """``--models`` of a 1.5 export picks that backend; ``--initial-noise`` [1, T, C] replaces
    the seed's draw, so two seeds with the same noise give the same audio."""
    noise = np.random.default_rng(0).standard_normal((1, 128, 8), dtype=np.float32)
    np.save(tmp_path / "noise.npy", noise)
    common: list[str | Path] = ["--duration", "5", "--models", turbo_models, "--threads", "1"]
    common += ["--bpm", "80"]
    common += ["--lyrics", "[verse]\nrain", "--initial-noise", tmp_path / "noise.npy"]
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"t{seed}.wav"
        result = run_cli("generate", "rain", *common, "--seed", seed, "-o", out, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"{out}\n"
        outputs.append(sf.read(out)[0])
        meta = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
        assert meta["backend"] == TURBO and meta["params"]["backend"] == TURBO
        assert (meta["params"]["bpm"], meta["params"]["lyrics"]) == (80, "[verse]\nrain")
    assert outputs[0].shape == (5 * 48000, 2)
    assert np.array_equal(outputs[0], outputs[1])
