"""Fixtures of the installation tests: one real installation per session, the fake exporter."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from install.support import FAKE_EXPORTER, FakeExporter, run_cli


@pytest.fixture(scope="session")
def installed(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``lofi-daemon setup ace-step --checkpoint CK --models OUT --yes`` with the real exporter.

    Returns the model directory and the command's stderr.
    """
    models = tmp_path_factory.mktemp("setup") / "ace-step"
    result = run_cli(
        "setup", "ace-step", "--checkpoint", tiny_checkpoint, "--models", models, "--yes"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(models)
    return models, result.stderr


@pytest.fixture
def fake_exporter(
    installed: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> FakeExporter:
    """``fake_exporter(mode)``: the command of the fake exporter (see ``install.support``)."""
    script = tmp_path / "fake_exporter.py"
    script.write_text(FAKE_EXPORTER)
    monkeypatch.setenv("FAKE_EXPORTER_PIDFILE", str(tmp_path / "exporter.pid"))
    return lambda mode: (sys.executable, str(script), str(installed[0]), mode)


@pytest.fixture
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty huggingface_hub home for the hub child processes (no token, no cache)."""
    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return home
