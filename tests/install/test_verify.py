"""Verification: a corrupt export never replaces an installation; ``--verify`` finds damage."""

from __future__ import annotations

from pathlib import Path

import pytest
from install.support import FakeExporter, copy_install, flip_byte, leftovers, run_cli

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.install.installer import run_install
from lofi_daemon.install.options import InstallOptions
from lofi_daemon.install.verify import verify_installation


def test_checksum_mismatch_is_reported_and_keeps_the_previous_install(
    installed: tuple[Path, str],
    tiny_checkpoint: Path,
    tmp_path: Path,
    fake_exporter: FakeExporter,
) -> None:
    models = copy_install(installed, tmp_path)
    before = (models / "manifest.json").read_bytes()
    # force: the same checkpoint is otherwise not exported again (issue 10, item 25)
    options = InstallOptions(
        models, checkpoint=tiny_checkpoint, force=True, exporter=fake_exporter("corrupt")
    )
    with pytest.raises(LofiError) as info:
        run_install(options)
    assert info.value.code == errors.MODEL_LOAD_FAILED
    assert "vocoder.onnx" in info.value.message and "checksum" in info.value.message
    assert "setup ace-step" in info.value.remedy
    assert (models / "manifest.json").read_bytes() == before
    verify_installation(models)  # the old installation is untouched
    assert leftovers(models) == set()


def test_verify_detects_a_corrupt_installed_file(
    installed: tuple[Path, str], tmp_path: Path
) -> None:
    models = copy_install(installed, tmp_path)
    flip_byte(models / "denoiser.onnx")
    result = run_cli("setup", "ace-step", "--verify", "--models", models)
    assert result.returncode == 1
    assert "checksum mismatch" in result.stderr and "denoiser.onnx" in result.stderr
    assert "remedy: Run :Lofi setup ace-step" in result.stderr
