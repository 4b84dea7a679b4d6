"""Shared fixtures: one random-weight checkpoint and its exported models per test session.

Both are built with the real command-line tools (``lofi-export tiny`` and ``lofi-export onnx``),
so every test that uses them also exercises the export path end to end.

For quicker local runs, set ``LOFI_TEST_FIXTURE_CACHE=DIR``: the two folders are then kept under
``DIR/<hash of the exporter and model-contract sources>`` and reused while those sources are
unchanged. CI leaves it unset and builds them fresh.
"""

from __future__ import annotations

import fcntl
import hashlib
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


def _sources_digest() -> str:
    """A hash of everything that decides what the two fixtures contain."""
    digest = hashlib.sha256()
    files = sorted([*(ROOT / "export").rglob("*.py"), *(ROOT / "lofi_daemon" / "model").rglob("*")])
    for file in [*files, ROOT / "pyproject.toml"]:
        if file.is_file() and "__pycache__" not in file.parts:
            digest.update(str(file.relative_to(ROOT)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


def _fixture_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    cache = os.environ.get("LOFI_TEST_FIXTURE_CACHE")
    if not cache:
        return tmp_path_factory.mktemp(name)
    folder = Path(cache) / _sources_digest() / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _build_once(path: Path, *args: str) -> Path:
    """Run ``lofi-export ARGS`` unless ``path`` was already built (one builder at a time)."""
    with open(path.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            result = run_export(*args)
            assert result.returncode == 0, result.stderr
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = _fixture_dir(tmp_path_factory, "tiny") / "checkpoint"
    return _build_once(path, "tiny", str(path), "--seed", "0")


@pytest.fixture(scope="session")
def tiny_models(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = _fixture_dir(tmp_path_factory, "models") / "ace-step"
    return _build_once(path, "onnx", str(tiny_checkpoint), str(path))


@pytest.fixture(scope="session")
def fp16_models(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fp16 set of ``tiny_models`` (``lofi-export to-fp16``)."""
    path = _fixture_dir(tmp_path_factory, "models-fp16") / "ace-step"
    return _build_once(path, "to-fp16", str(tiny_models), str(path))


from turbo_fixtures import turbo_checkpoint, turbo_fp16_models, turbo_models  # noqa: F401
