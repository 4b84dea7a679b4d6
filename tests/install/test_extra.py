"""The export extra: found without importing it, and the same install hint as the exporter's."""

from __future__ import annotations

import importlib.util
from importlib.machinery import ModuleSpec
from pathlib import Path

import pytest
from install.support import assert_not_installed
from lofi_export import __main__ as export_cli

from lofi_daemon.__main__ import main
from lofi_daemon.install import extra
from lofi_daemon.install.extra import INSTALL_HINT, missing_packages


def hide(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Make :func:`importlib.util.find_spec` report ``names`` as not installed."""
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name in names else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_missing_export_extra_prints_the_install_command(
    tiny_checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hide(monkeypatch, "torch")
    models = tmp_path / "models" / "ace-step"
    code = main(
        ["setup", "ace-step", "--checkpoint", str(tiny_checkpoint), "--models", str(models)]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "missing: torch" in err
    assert INSTALL_HINT in err
    assert_not_installed(models)


def test_the_install_hint_is_the_exporters() -> None:
    assert INSTALL_HINT == export_cli.INSTALL_HINT


def test_the_packages_are_the_ones_the_exporter_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)  # nothing installed
    assert missing_packages(download=False) == export_cli.missing_export_packages()
    assert missing_packages(download=True) == [*extra.EXPORT_PACKAGES, "huggingface_hub"]


def test_huggingface_hub_is_needed_only_to_download(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "huggingface_hub", "onnxscript")
    assert missing_packages(download=False) == ["onnxscript"]
    assert missing_packages(download=True) == ["onnxscript", "huggingface_hub"]
