"""The export step: the exporter's ``--progress json`` lines, its failures, its command line.

Most tests here run small scripts in place of the exporter (no checkpoint is read); the two that
go through ``run_install`` use the fake exporter of ``install.support``.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from install.support import (
    Event,
    FakeExporter,
    assert_monotonic,
    assert_not_installed,
    leftovers,
    recorder,
)

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.install.export_step import (
    EXPORTED_GRAPHS,
    ExportEvent,
    export_checkpoint,
    exporter_command,
    parse_event,
)
from lofi_daemon.install.extra import INSTALL_HINT
from lofi_daemon.install.installer import run_install
from lofi_daemon.install.options import InstallOptions, resolve_precision
from lofi_daemon.install.progress import Reporter

# The start of every scripted exporter: its arguments, and emit() for one progress line.
PROLOGUE = """
import json, os, sys
from pathlib import Path

args = sys.argv[1:]
Path(os.environ["SCRIPTED_EXPORTER_ARGV"]).write_text(json.dumps(args))
out = Path(args[4])


def emit(**event):
    print(json.dumps(event), flush=True)


def write_models():
    out.mkdir(parents=True)
    (out / "manifest.json").write_text("{}")
"""

GRAPHS = [
    "text_encoder",
    "condition_encoder",
    "denoiser",
    "dcae_decoder",
    "dcae_encoder",
    "vocoder",
]


def good_lines() -> list[str]:
    lines = [json.dumps({"event": "start", "total": 6})]
    for index, graph in enumerate(GRAPHS, 1):
        event = {"event": "graph", "graph": graph, "file": f"{graph}.onnx", "done": index}
        lines.append(json.dumps({**event, "total": 6}))
    return lines


class Scripted:
    """Runs :func:`export_checkpoint` with a script (after ``PROLOGUE``) as the exporter."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp_path = tmp_path
        self.argv_file = tmp_path / "argv.json"
        monkeypatch.setenv("SCRIPTED_EXPORTER_ARGV", str(self.argv_file))
        self.events: list[Event] = []
        self.out = tmp_path / ".ace-step.setup" / "ace-step"

    def run(self, body: str) -> Path:
        script = self.tmp_path / "exporter.py"
        script.write_text(PROLOGUE + textwrap.dedent(body))
        options = InstallOptions(self.tmp_path / "ace-step", exporter=(sys.executable, str(script)))
        checkpoint = self.tmp_path / "checkpoint"
        report = Reporter(recorder(self.events))
        return export_checkpoint(checkpoint, self.out, options, report, threading.Event(), None)

    def argv(self) -> list[str]:
        args: list[str] = json.loads(self.argv_file.read_text())
        return args


@pytest.fixture
def scripted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Scripted:
    return Scripted(tmp_path, monkeypatch)


# -- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"event": "start", "total": 6}', ExportEvent("start", total=6)),
        (
            json.dumps(
                {
                    "event": "graph",
                    "graph": "denoiser",
                    "file": "denoiser.onnx",
                    "done": 3,
                    "total": 6,
                }
            ),
            ExportEvent("graph", graph="denoiser", file="denoiser.onnx", done=3, total=6),
        ),
        (
            '{"event": "done", "models_dir": "/m/ace-step"}',
            ExportEvent("done", models_dir="/m/ace-step"),
        ),
        (
            '{"event": "error", "kind": "export", "message": "disk full"}',
            ExportEvent("error", kind="export", message="disk full"),
        ),
        (
            '{"event": "start", "total": 6, "later": "fields are ignored"}',
            ExportEvent("start", total=6),
        ),
    ],
)
def test_progress_lines_are_parsed(line: str, expected: ExportEvent) -> None:
    assert parse_event(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "",
        "lofi-export: wrote denoiser.onnx (0.1 MB of weights)",
        "/tmp/models/ace-step",
        "{not json",
        "[1, 2]",
        '"start"',
        '{"total": 6}',
        '{"event": "progress", "total": 6}',
        '{"event": "start"}',
        '{"event": "start", "total": "6"}',
        '{"event": "start", "total": true}',
        '{"event": "graph", "graph": "denoiser", "file": "denoiser.onnx", "done": 3}',
        '{"event": "error", "kind": "export"}',
        '{"event": "done", "models_dir": null}',
    ],
)
def test_other_lines_are_not_events(line: str) -> None:
    assert parse_event(line) is None


# -- a scripted exporter -----------------------------------------------------------------------


def test_progress_comes_from_the_json_lines(scripted: Scripted) -> None:
    lines = good_lines()
    noise = ["garbage", "[1, 2]", '{"event": "graph", "done": "x"}', '{"event": "unknown"}']
    body = f"""
    lines, noise = {lines!r}, {noise!r}
    print(lines[0], flush=True)
    for line, junk in zip(lines[1:], noise + ["", ""]):
        print(junk, flush=True)
        print("lofi-export: wrote a graph", file=sys.stderr, flush=True)
        print(line, flush=True)
    write_models()
    print(out, flush=True)
    emit(event="done", models_dir=str(out.resolve()))
    """
    assert scripted.run(body) == scripted.out
    args = scripted.argv()
    assert args[:3] == ["--log-level", "INFO", "onnx"]
    assert args[3:5] == [str(scripted.tmp_path / "checkpoint"), str(scripted.out)]
    # auto: fp16 where a CUDA GPU works, else fp32
    assert args[5:] == ["--force", "--precision", resolve_precision("auto"), "--progress", "json"]
    export = assert_monotonic(scripted.events, "export")
    assert [e[1] for e in export] == [0, 1, 2, 3, 4, 5, 6, 6]
    assert all(e[2] == EXPORTED_GRAPHS for e in export)
    assert export[3][4] == "exported denoiser.onnx (3/6)"
    assert export[-1][4] == "exported 6 graphs"


def test_the_start_event_sets_the_number_of_graphs(scripted: Scripted) -> None:
    body = """
    emit(event="start", total=2)
    emit(event="graph", graph="a", file="a.onnx", done=1, total=2)
    emit(event="graph", graph="b", file="b.onnx", done=2, total=2)
    write_models()
    emit(event="done", models_dir=str(out))
    """
    scripted.run(body)
    export = [e for e in scripted.events if e[0] == "export"]
    assert [(e[1], e[2]) for e in export[1:]] == [(1, 2), (2, 2), (2, 2)]
    assert export[1][4] == "exported a.onnx (1/2)" and export[-1][3] == 100.0


def test_the_message_names_the_graph_being_exported_now(scripted: Scripted) -> None:
    """Issue 10, item 13: "exported condition_encoder.onnx (2/6)" stayed up while the denoiser
    exported for a minute; the message now says what is running."""
    body = f"""
    emit(event="start", total=6)
    for index, graph in enumerate({GRAPHS!r}, 1):
        emit(event="graph_start", graph=graph, file=graph + ".onnx", index=index, total=6)
        emit(event="graph", graph=graph, file=graph + ".onnx", done=index, total=6)
    write_models()
    emit(event="done", models_dir=str(out))
    """
    scripted.run(body)
    export = assert_monotonic(scripted.events, "export")
    running = [(e[1], e[4]) for e in export if e[4].startswith("exporting ") and "(" in e[4]]
    assert running == [
        (index - 1, f"exporting {graph}.onnx ({index}/6)") for index, graph in enumerate(GRAPHS, 1)
    ]
    assert not any(e[4].startswith("exported ") and "/" in e[4] for e in export)
    assert export[-1][4] == "exported 6 graphs"


def test_a_graph_start_line_is_parsed() -> None:
    line = json.dumps(
        {
            "event": "graph_start",
            "graph": "denoiser",
            "file": "denoiser.onnx",
            "index": 3,
            "total": 6,
        }
    )
    expected = ExportEvent("graph_start", graph="denoiser", file="denoiser.onnx", index=3, total=6)
    assert parse_event(line) == expected


def test_an_error_event_is_the_failure_message(scripted: Scripted) -> None:
    body = """
    emit(event="start", total=6)
    print("lofi-export: some warning", file=sys.stderr)
    print("lofi-export: error: denoiser: unsupported operator", file=sys.stderr)
    emit(event="error", kind="export", message="denoiser: unsupported operator")
    sys.exit(1)
    """
    with pytest.raises(LofiError) as info:
        scripted.run(body)
    assert info.value.code == errors.SETUP_FAILED
    assert info.value.message == (
        "the ONNX export failed (exit status 1): denoiser: unsupported operator"
    )
    assert "rerun the setup" in info.value.remedy


def test_a_missing_extra_names_the_install_command(scripted: Scripted) -> None:
    body = """
    message = "the export extra is not installed (missing: torch)"
    print("lofi-export: error: " + message, file=sys.stderr)
    emit(event="error", kind="missing_extra", message=message)
    sys.exit(2)
    """
    with pytest.raises(LofiError) as info:
        scripted.run(body)
    assert info.value.code == errors.SETUP_FAILED
    assert info.value.message == "the export extra is not installed (missing: torch)"
    assert info.value.remedy == f"Run: {INSTALL_HINT}"


def test_an_exporter_that_exits_without_its_done_event_failed(scripted: Scripted) -> None:
    body = """
    emit(event="start", total=6)
    emit(event="graph", graph="a", file="a.onnx", done=1, total=6)
    emit(event="graph", graph="b", file="b.onnx", done=2, total=6)
    write_models()
    """
    with pytest.raises(LofiError) as info:
        scripted.run(body)
    assert info.value.code == errors.SETUP_FAILED
    assert "without reporting a finished export (2 of 6 graphs reported)" in info.value.message


@pytest.mark.skipif(os.name == "nt", reason="a POSIX signal")
def test_an_exporter_that_dies_reports_its_exit_status_and_log(scripted: Scripted) -> None:
    body = """
    import signal
    emit(event="start", total=6)
    emit(event="graph", graph="a", file="a.onnx", done=1, total=6)
    print("lofi-export: wrote a.onnx", file=sys.stderr)
    print("lofi-export: exporting b", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
    with pytest.raises(LofiError) as info:
        scripted.run(body)
    assert info.value.code == errors.SETUP_FAILED
    assert info.value.message.startswith("the ONNX export failed (exit status -9): ")
    assert "lofi-export: exporting b" in info.value.message
    assert [e[1] for e in scripted.events] == [0, 1]


# -- through run_install -------------------------------------------------------------------


def test_failed_export_reports_its_error(
    tiny_checkpoint: Path, tmp_path: Path, fake_exporter: FakeExporter
) -> None:
    models = tmp_path / "models" / "ace-step"
    options = InstallOptions(models, checkpoint=tiny_checkpoint, exporter=fake_exporter("fail"))
    with pytest.raises(LofiError) as info:
        run_install(options)
    assert info.value.code == errors.SETUP_FAILED
    assert "No space left on device" in info.value.message
    assert_not_installed(models)
    assert leftovers(models) == set()


def test_an_exporter_that_cannot_start_is_a_setup_error(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models" / "ace-step"
    exporter = (str(tmp_path / "no-such-python"),)
    with pytest.raises(LofiError) as info:
        run_install(InstallOptions(models, checkpoint=tiny_checkpoint, exporter=exporter))
    assert info.value.code == errors.SETUP_FAILED
    assert "cannot start" in info.value.message
    assert_not_installed(models)
    assert leftovers(models) == set()


def test_the_exporter_is_told_the_precision_except_for_a_variant(tmp_path: Path) -> None:
    options = InstallOptions(models_dir=tmp_path / "m", precision="fp16", exporter=("x",))
    args = exporter_command(options, tmp_path / "ck", tmp_path / "out")
    assert args[args.index("--precision") + 1] == "fp16"
    variant = exporter_command(options, tmp_path / "ck", tmp_path / "out", ["--base", "b"])
    assert "--precision" not in variant  # a variant has its base's precision
    assert resolve_precision("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == "fp16"
    assert resolve_precision("auto", ["CPUExecutionProvider"]) == "fp32"
    with pytest.raises(LofiError, match="unknown precision 'bf16'"):
        InstallOptions(models_dir=tmp_path / "m", precision="bf16")
