"""The ``lofi-export`` command line with ACE-Step 1.5 (export/__main__.py): ``tiny --model
ace-step-1.5`` writes the 1.5 layout, ``onnx`` recognises it, and the v1-only options are refused
by name. The full export runs once per session, in the ``turbo_models`` fixture (the same command
in a subprocess); the checks here are cheap."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run_export
from lofi_export.__main__ import main
from lofi_export.errors import ExportError
from lofi_export.turbo import graphs as turbo_graphs

from lofi_daemon.model import turbo_layout

ERROR_PREFIX = "lofi-export: error: "


def test_tiny_writes_the_15_layout(turbo_checkpoint: Path) -> None:
    for relative in turbo_layout.ALLOW_PATTERNS:
        assert (turbo_checkpoint / relative).is_file(), relative


def test_onnx_output_is_a_15_model_dir(turbo_models: Path) -> None:
    manifest = json.loads((turbo_models / "manifest.json").read_text())
    assert manifest["backend"] == "ace-step-1.5"
    assert sorted(manifest["files"]) == sorted(
        p.name for p in turbo_models.iterdir() if p.name != "manifest.json"
    )


def test_tiny_model_choice_is_checked(tmp_path: Path) -> None:
    result = run_export("tiny", str(tmp_path / "ck"), "--model", "ace-step-2")
    assert result.returncode == 2 and "--model" in result.stderr
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--lora", "x"], "--lora"),
        (["--lora", "x", "--lora-weight", "0.5"], "--lora, --lora-weight"),
        (["--base", "b"], "--base"),
    ],
)
def test_v1_only_flags_are_refused(
    turbo_checkpoint: Path, tmp_path: Path, flags: list[str], named: str
) -> None:
    result = run_export("onnx", str(turbo_checkpoint), str(tmp_path / "models"), *flags)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(ERROR_PREFIX + named) and "ACE-Step 1.5" in last
    assert not (tmp_path / "models").exists()


def test_json_progress_on_failure(
    turbo_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Events are wired as for v1: start, then an error event; nothing is left behind."""

    def failing(*_args: Any, on_graph_start: Any = None, **_kwargs: Any) -> list[Any]:
        on_graph_start("text_encoder")
        raise ExportError("text_encoder.onnx: simulated failure")

    monkeypatch.setattr(turbo_graphs, "export_turbo_graphs", failing)
    dest = tmp_path / "dest"
    dest.mkdir()
    code = main(["onnx", str(turbo_checkpoint), str(dest / "models"), "--progress", "json"])
    captured = capsys.readouterr()
    events = [json.loads(line) for line in captured.out.splitlines()]
    assert code == 1
    assert events == [
        {"event": "start", "total": 4},
        {
            "event": "graph_start",
            "graph": "text_encoder",
            "file": "text_encoder.onnx",
            "index": 1,
            "total": 4,
        },
        {"event": "error", "kind": "export", "message": "text_encoder.onnx: simulated failure"},
    ]
    assert list(dest.iterdir()) == []
