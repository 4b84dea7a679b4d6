"""Shared fixtures: one random-weight checkpoint and its exported models per test session.

Both are built with the real command-line tools (``lofi-export tiny`` and ``lofi-export onnx``),
so every test that uses them also exercises the export path end to end.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_export(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``lofi-export`` in a subprocess (the installed entry point's module)."""
    return subprocess.run(
        [sys.executable, "-m", "lofi_export", *args],
        capture_output=True,
        check=False,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "checkpoint"
    result = run_export("tiny", str(path), "--seed", "0")
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture(scope="session")
def tiny_models(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "ace-step"
    result = run_export("onnx", str(tiny_checkpoint), str(path))
    assert result.returncode == 0, result.stderr
    return path
