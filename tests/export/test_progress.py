"""``lofi-export onnx --progress json``: the event lines the model installer reads (export/progress.py).

The format is a contract with ``lofi_daemon/install/``; these tests pin it field by field.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lofi_export import __main__ as cli
from lofi_export import export_models as export_models_module
from lofi_export.errors import ExportError
from lofi_export.graphs import GRAPH_NAMES
from lofi_export.onnx_writer import ExportedGraph
from lofi_export.progress import (
    JsonLines,
    done_event,
    error_event,
    graph_event,
    graph_start_event,
    start_event,
)

ERROR_PREFIX = "lofi-export: error: "


def _events(stdout: str) -> list[dict[str, Any]]:
    """Every stdout line parsed; fails on anything that is not one JSON object per line."""
    assert stdout.endswith("\n"), stdout
    return [json.loads(line) for line in stdout.splitlines()]


def _export(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lofi_export", "onnx", *args, "--progress", "json"],
        capture_output=True,
        check=False,
        text=True,
        timeout=900,
    )


def test_event_lines_are_exactly_the_contract() -> None:
    stream = io.StringIO()
    emit = JsonLines(stream)
    emit(start_event(6))
    emit(graph_start_event("denoiser", "denoiser.onnx", 3, 6))
    emit(graph_event("denoiser", "denoiser.onnx", 3, 6))
    emit(done_event(Path("rel") / "models"))
    emit(error_event("missing_extra", "two\nlines"))
    assert stream.getvalue().splitlines(keepends=True) == [
        '{"event": "start", "total": 6}\n',
        (
            '{"event": "graph_start", "graph": "denoiser", "file": "denoiser.onnx", "index": 3, '
            '"total": 6}\n'
        ),
        '{"event": "graph", "graph": "denoiser", "file": "denoiser.onnx", "done": 3, "total": 6}\n',
        '{"event": "done", "models_dir": "' + os.path.abspath("rel/models") + '"}\n',
        '{"event": "error", "kind": "missing_extra", "message": "two\\nlines"}\n',
    ]


def test_json_progress_of_a_whole_export(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "models"
    result = _export(str(tiny_checkpoint), str(out))
    assert result.returncode == 0, result.stderr
    events = _events(result.stdout)
    total = len(GRAPH_NAMES)
    assert total == 6
    assert events[0] == {"event": "start", "total": total}
    # Each graph is announced when it starts (issue 10, item 13), then reported once written.
    assert events[1:-1] == [
        event
        for i, name in enumerate(GRAPH_NAMES, start=1)
        for event in (
            {
                "event": "graph_start",
                "graph": name,
                "file": f"{name}.onnx",
                "index": i,
                "total": total,
            },
            {"event": "graph", "graph": name, "file": f"{name}.onnx", "done": i, "total": total},
        )
    ]
    assert events[-1] == {"event": "done", "models_dir": str(out)}
    assert Path(events[-1]["models_dir"]).is_absolute()
    assert all((out / f"{name}.onnx").is_file() for name in GRAPH_NAMES)
    assert (out / "manifest.json").is_file()
    # The logs are still there, on stderr.
    assert "lofi-export: wrote denoiser.onnx" in result.stderr


def test_json_progress_reports_a_bad_checkpoint(tmp_path: Path) -> None:
    result = _export(str(tmp_path / "nowhere"), str(tmp_path / "models"))
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    assert len(error) == 1 and "does not exist" in error[0]
    assert _events(result.stdout) == [
        {"event": "error", "kind": "export", "message": error[0].removeprefix(ERROR_PREFIX)}
    ]
    assert list(tmp_path.iterdir()) == []


def test_json_progress_reports_a_missing_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(cli, "missing_export_packages", lambda: ["torch", "onnxscript"])
    code = cli.main(["onnx", str(tmp_path / "ck"), str(tmp_path / "out"), "--progress", "json"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith(ERROR_PREFIX)
    message = captured.err.removeprefix(ERROR_PREFIX).rstrip("\n")
    assert "missing: torch, onnxscript" in message and 'pip install -e ".[export]"' in message
    assert _events(captured.out) == [
        {"event": "error", "kind": "missing_extra", "message": message}
    ]
    assert list(tmp_path.iterdir()) == []


def _fails_after_one_graph(exc: Exception) -> Any:
    def fake(_ckpt: object, out: Path, **kwargs: Any) -> list[ExportedGraph]:
        path = out / "text_encoder.onnx"
        path.write_bytes(b"graph")
        kwargs["on_graph"](ExportedGraph("text_encoder", path, None, (), (), 0))
        raise exc

    return fake


def test_json_progress_of_a_failing_export(
    tiny_checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(
        export_models_module,
        "export_all_graphs",
        _fails_after_one_graph(ExportError("denoiser.onnx: simulated failure")),
    )
    out = tmp_path / "models"
    code = cli.main(["onnx", str(tiny_checkpoint), str(out), "--progress", "json"])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.splitlines()[-1] == ERROR_PREFIX + "denoiser.onnx: simulated failure"
    assert _events(captured.out) == [
        {"event": "start", "total": 6},
        {
            "event": "graph",
            "graph": "text_encoder",
            "file": "text_encoder.onnx",
            "done": 1,
            "total": 6,
        },
        {"event": "error", "kind": "export", "message": "denoiser.onnx: simulated failure"},
    ]
    assert list(tmp_path.iterdir()) == []


def test_json_progress_reports_an_unexpected_exception_too(
    tiny_checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(
        export_models_module, "export_all_graphs", _fails_after_one_graph(RuntimeError("boom"))
    )
    with pytest.raises(RuntimeError, match="boom"):
        cli.main(["onnx", str(tiny_checkpoint), str(tmp_path / "models"), "--progress", "json"])
    events = _events(capsys.readouterr().out)
    assert events[-1] == {"event": "error", "kind": "export", "message": "RuntimeError: boom"}
    assert list(tmp_path.iterdir()) == []


_NOISY = """
import os, sys
from lofi_export.progress import JsonLines, start_event, stdout_for_events
print("before")
with stdout_for_events() as stream:
    print("python noise")
    sys.stdout.flush()
    os.write(1, b"fd noise\\n")
    JsonLines(stream)(start_event(6))
print("after")
"""


def test_nothing_else_reaches_stdout_while_events_are_written() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _NOISY], capture_output=True, check=True, text=True, timeout=60
    )
    assert result.stdout == 'before\n{"event": "start", "total": 6}\nafter\n'
    assert result.stderr.splitlines() == ["python noise", "fd noise"]
