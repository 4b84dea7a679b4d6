"""The audio-task flags of ``lofi-daemon generate`` (lofi_daemon/cli/task_args.py): a flag for
another task, a missing or bad source and ``--duration`` for a source task fail before any model
is loaded (the models folder given here does not exist), with one clear line and no file."""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lofi_daemon.__main__ import build_parser, main
from lofi_daemon.cli.task_args import TASK_FLAGS, task_fields, variant_models_dir
from lofi_daemon.errors import LofiError


def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run ``generate`` in-process; returns its one error line (exit status 1, nothing else)."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    argv = ["generate", "lofi", "--models", str(tmp_path / "no-models"), "-o", str(out / "o.wav")]
    assert main([*argv, *args]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and list(out.iterdir()) == []
    lines = [line for line in captured.err.splitlines() if line.startswith("lofi-daemon: error:")]
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.fixture
def song(tmp_path: Path) -> Path:
    path = tmp_path / "song.wav"
    sf.write(path, np.zeros((6 * 44100, 2), np.float32), 44100)
    return path


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--repaint-start", "1"], "--repaint-start is not an option of --task text2music"),
        (["--task", "retake", "--extend-left", "2"], "--extend-left is not an option of --task"),
        (["--task", "retake", "--src-audio", "x.wav"], "--src-audio is not an option of --task"),
        (["--task", "audio2audio", "--ref-audio", "S", "--src-audio", "S"], "--src-audio is not"),
        (["--task", "extend", "--src-audio", "S", "--ref-strength", "0.2"], "--ref-strength"),
        (["--task", "repaint", "--src-audio", "S", "--edit-n-avg", "2"], "--edit-n-avg is not"),
        (["--task", "edit", "--src-audio", "S", "--retake-seed", "1"], "--retake-seed is not"),
        (["--task", "extend", "--src-audio", "S", "--duration", "30"], "--duration cannot be"),
        (["--task", "extend", "--extend-right", "5"], "--task extend needs --src-audio FILE"),
        (["--task", "audio2audio"], "--task audio2audio needs --ref-audio FILE"),
        (["--task", "remix"], "unknown task 'remix'"),
    ],
)
def test_a_flag_for_another_task_fails_before_loading_models(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    song: Path,
    args: list[str],
    fragment: str,
) -> None:
    line = run(tmp_path, capsys, *[str(song) if a == "S" else a for a in args])
    assert fragment in line, line


def test_a_missing_or_short_source_fails_before_loading_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.wav"
    line = run(
        tmp_path, capsys, "--task", "extend", "--src-audio", str(missing), "--extend-right", "2"
    )
    assert f"source audio {missing}: no such file" in line
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros((44100, 2), np.float32), 44100)
    line = run(tmp_path, capsys, "--task", "edit", "--src-audio", str(short), "--edit-prompt", "x")
    assert "is 1.00 s long" in line


def test_task_parameters_are_checked_before_loading_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], song: Path
) -> None:
    args = ["--task", "repaint", "--src-audio", str(song), "--repaint-start", "3"]
    line = run(tmp_path, capsys, *args, "--repaint-end", "2")
    assert "repaint_end (2 s) must be after repaint_start (3 s)" in line
    line = run(tmp_path, capsys, "--task", "edit", "--src-audio", str(song))
    assert "edit needs edit_prompt" in line


def test_task_fields_hold_the_given_flags_only() -> None:
    parser = build_parser()
    args = parser.parse_args(["generate", "p", "--task", "extend", "--extend-left", "2"])
    assert task_fields(args) == {"task": "extend", "extend_left": 2.0}
    args = parser.parse_args(["generate", "p", "--task", "retake", "--retake-variance", "0.2"])
    assert task_fields(args) == {"task": "retake", "retake_variance": 0.2, "duration_sec": 30.0}
    # every flag has a help text naming the task(s) that take it
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    help_text = " ".join(sub.choices["generate"].format_help().split())
    for flag in TASK_FLAGS:
        assert flag in help_text


def test_variant_resolves_through_the_variants_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--variant calls lofi_daemon.model.variants.variant_dir (here a stand-in module)."""
    calls: list[tuple[Path, str]] = []

    def variant_dir(models_dir: Path, name: str) -> Path:
        calls.append((models_dir, name))
        if name != "jazz":
            raise LofiError(-32013, f"no variant {name!r}")
        return models_dir / "variants" / name

    module = types.ModuleType("lofi_daemon.model.variants")
    module.variant_dir = variant_dir  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lofi_daemon.model.variants", module)
    assert variant_models_dir(tmp_path, None) == tmp_path and calls == []
    assert variant_models_dir(tmp_path, "jazz") == tmp_path / "variants" / "jazz"
    with pytest.raises(LofiError, match="no variant 'rock'"):
        variant_models_dir(tmp_path, "rock")
