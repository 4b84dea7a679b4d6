"""Helpers shared by the installation tests: a fake exporter, the CLI, and checks of the folders.

The fake exporter stands in for ``python -m lofi_export``: it copies an exported model directory
into OUT, reports each graph on stdout as the real one does with ``--progress json``, and
records the checkpoint's sha256s in the manifest as the real exporter does. So the tests that use
it stay fast while still going through the real child process, progress parsing, verification
and installation.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model.manifest import load_manifest

#: One progress callback call: (phase, done, total, percent, message).
Event = tuple[str, int, int, float, str]

# argv: SOURCE MODE --log-level INFO onnx CHECKPOINT OUT --force --precision P --progress json,
# MODE in ok|hang|corrupt|fail.
FAKE_EXPORTER = """
import hashlib, json, os, shutil, sys, time
from pathlib import Path

source, mode, args = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
assert args[:3] == ["--log-level", "INFO", "onnx"], args
assert args[5:7] == ["--force", "--precision"] and args[7] in ("fp32", "fp16"), args
assert args[8:] == ["--progress", "json"], args
checkpoint, out = Path(args[3]), Path(args[4])


def emit(**event):
    print(json.dumps(event), flush=True)


Path(os.environ["FAKE_EXPORTER_PIDFILE"]).write_text(str(os.getpid()))
print("lofi-export: exporting", checkpoint, file=sys.stderr, flush=True)
partial = out.with_name(out.name + ".partial")
shutil.copytree(source, partial)
graphs = sorted(partial.glob("*.onnx"))
emit(event="start", total=len(graphs))
print("a line that is not a progress event", flush=True)
for index, graph in enumerate(graphs, 1):
    emit(event="graph", graph=graph.stem, file=graph.name, done=index, total=len(graphs))
    if mode == "hang":
        time.sleep(600)
if mode == "fail":
    message = "denoiser.onnx: cannot write (No space left on device)"
    print(f"lofi-export: error: {message}", file=sys.stderr)
    emit(event="error", kind="export", message=message)
    sys.exit(1)
manifest = json.loads((partial / "manifest.json").read_text())
for name, info in manifest["source"]["files"].items():
    info["sha256"] = hashlib.sha256((checkpoint / name).read_bytes()).hexdigest()
(partial / "manifest.json").write_text(json.dumps(manifest))
if mode == "corrupt":
    target = partial / "vocoder.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
partial.rename(out)
emit(event="done", models_dir=str(out.resolve()))
"""

FakeExporter = Callable[[str], tuple[str, ...]]


def lofi_daemon() -> list[str]:
    script = Path(sys.executable).with_name("lofi-daemon")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "lofi_daemon"]


def run_cli(
    *args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``lofi-daemon ARGS`` in a subprocess, stdin closed."""
    return subprocess.run(
        [*lofi_daemon(), *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        timeout=600,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def copy_install(installed: tuple[Path, str], tmp_path: Path) -> Path:
    models = tmp_path / "models" / "ace-step"
    shutil.copytree(installed[0], models)
    return models


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def leftovers(models: Path) -> set[str]:
    """What the install left next to the model directory besides it (its lock file included)."""
    return {p.name for p in models.parent.iterdir()} - {models.name}


def assert_not_installed(models: Path) -> None:
    assert not models.exists()
    with pytest.raises(LofiError) as info:
        load_manifest(models)
    assert info.value.code == errors.MODEL_NOT_FOUND


def phases(events: list[Event]) -> list[str]:
    order: list[str] = []
    for event in events:
        if not order or order[-1] != event[0]:
            order.append(event[0])
    return order


def assert_monotonic(events: list[Event], phase: str) -> list[Event]:
    mine = [e for e in events if e[0] == phase]
    assert mine, f"no {phase} progress"
    assert all(0.0 <= e[3] <= 100.0 for e in mine)
    assert [e[3] for e in mine] == sorted(e[3] for e in mine)
    assert [e[1] for e in mine] == sorted(e[1] for e in mine)
    assert mine[-1][3] == 100.0 and mine[-1][1] == mine[-1][2]
    return mine


def recorder(events: list[Event]) -> Callable[[str, int, int, float, str], None]:
    """A progress callback that appends every call to ``events``."""

    def record(phase: str, done: int, total: int, percent: float, message: str) -> None:
        events.append((phase, done, total, percent, message))

    return record


def checkpoint_bytes(checkpoint: Path) -> int:
    return sum(p.stat().st_size for p in checkpoint.rglob("*") if p.is_file())


def fake_disk(free: int) -> Callable[[object], SimpleNamespace]:
    """A stand-in for :func:`shutil.disk_usage` that reports ``free`` bytes free."""
    return lambda path: SimpleNamespace(total=10 * free, used=9 * free, free=free)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True
