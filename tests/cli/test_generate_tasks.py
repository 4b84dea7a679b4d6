"""``lofi-daemon generate --task retake|repaint|extend`` end to end on the tiny models: the noise
files replace the seeded draws exactly, and the sidecar records the resolved task parameters and
the source file."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

PROMPT = "lofi hip hop, mellow rhodes"
FRAMES_6S = int(6 * 44100 / 4096)  # 64 latent frames: a 6 s track is a 5.94 s source
BASE = ["--steps", "4", "--seed", "1", "--no-progress"]


def run_cli(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lofi_daemon", *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def draw(seed: int, frames: int) -> np.ndarray:
    """The standard-normal draw of the engine's seeded generators (the shared contract)."""
    return np.random.Generator(np.random.PCG64(seed)).standard_normal(
        (1, 8, 16, frames), dtype=np.float32
    )


def sidecar(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    return data


def ok(result: subprocess.CompletedProcess[str], out: Path) -> None:
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{out}\n"


@pytest.fixture(scope="module")
def work(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding source.wav, a 6 s text2music track of the tiny models."""
    folder = tmp_path_factory.mktemp("tasks")
    out = folder / "source.wav"
    args = ["generate", PROMPT, "--duration", "6", *BASE, "--models", tiny_models, "-o", out]
    ok(run_cli(*args, cwd=folder), out)
    return folder


def test_retake_with_noise_files(work: Path, tiny_models: Path) -> None:
    np.save(work / "x.npy", draw(7, FRAMES_6S))
    np.save(work / "r.npy", draw(8, FRAMES_6S))
    out = work / "retake.wav"
    noise = ["--initial-noise", work / "x.npy", "--retake-noise", work / "r.npy"]
    args = ["generate", PROMPT, "--task", "retake", "--duration", "6", *BASE, *noise]
    ok(run_cli(*args, "--models", tiny_models, "-o", out, cwd=work), out)
    params = sidecar(out)["params"]
    assert params["task"] == "retake" and params["retake_variance"] == 0.5
    assert isinstance(params["retake_seed"], int)  # drawn, recorded (the file replaced its draw)
    assert "source" not in sidecar(out)


def test_repaint_records_the_source(work: Path, tiny_models: Path) -> None:
    source = work / "source.wav"
    np.save(work / "x.npy", draw(7, FRAMES_6S))
    np.save(work / "r.npy", draw(8, FRAMES_6S))
    out = work / "repaint.wav"
    task = [
        "--task",
        "repaint",
        "--src-audio",
        source,
        "--repaint-start",
        "1",
        "--repaint-end",
        "3",
    ]
    noise = ["--initial-noise", work / "x.npy", "--retake-noise", work / "r.npy"]
    ok(
        run_cli(
            "generate", PROMPT, *task, *BASE, *noise, "--models", tiny_models, "-o", out, cwd=work
        ),
        out,
    )
    meta = sidecar(out)
    params = meta["params"]
    assert (params["task"], params["repaint_start"], params["repaint_end"]) == ("repaint", 1.0, 3.0)
    assert params["retake_variance"] == 0.5
    assert params["duration_sec"] == pytest.approx(FRAMES_6S * 4096 / 44100)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert meta["source"] == {"flag": "--src-audio", "path": str(source), "sha256": digest}
    assert sf.info(str(out)).duration == pytest.approx(sf.info(str(source)).duration, abs=0.01)


def test_extend_retake_noise_file_replaces_the_retake_seed_draw(
    work: Path, tiny_models: Path
) -> None:
    """The file holding the retake-seed 3 draw (shape max(T_src, left, right), the contract)
    gives the bytes of the run with --retake-seed 3, under another retake seed."""
    source = work / "source.wav"
    task = ["--task", "extend", "--src-audio", source, "--extend-right", "2", *BASE]
    seeded = work / "extend-seeded.wav"
    ok(
        run_cli(
            "generate",
            PROMPT,
            *task,
            "--retake-seed",
            "3",
            "--models",
            tiny_models,
            "-o",
            seeded,
            cwd=work,
        ),
        seeded,
    )
    np.save(work / "r3.npy", draw(3, FRAMES_6S))
    out = work / "extend-file.wav"
    noise = ["--retake-seed", "4", "--retake-noise", work / "r3.npy"]
    ok(
        run_cli("generate", PROMPT, *task, *noise, "--models", tiny_models, "-o", out, cwd=work),
        out,
    )
    assert out.read_bytes() == seeded.read_bytes()
    params = sidecar(out)["params"]
    assert (params["task"], params["extend_right"], params["retake_seed"]) == ("extend", 2.0, 4)
    assert params["retake_variance"] == 1.0
    frames = FRAMES_6S + int(2 * 44100 / 4096)
    assert params["duration_sec"] == pytest.approx(frames * 4096 / 44100)
    assert sidecar(out)["source"]["path"] == str(source)


def test_extend_retake_noise_of_the_wrong_shape(work: Path, tiny_models: Path) -> None:
    np.save(work / "bad.npy", draw(3, FRAMES_6S + 1))
    out = work / "bad" / "o.wav"
    out.parent.mkdir()
    task = ["--task", "extend", "--src-audio", work / "source.wav", "--extend-left", "1", *BASE]
    result = run_cli(
        "generate",
        PROMPT,
        *task,
        "--retake-noise",
        work / "bad.npy",
        "--models",
        tiny_models,
        "-o",
        out,
        cwd=work,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "retake" in result.stderr and f"{FRAMES_6S}" in result.stderr
    assert list(out.parent.iterdir()) == []
