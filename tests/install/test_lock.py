"""One installation at a time per model directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.install.installer import run_install
from lofi_daemon.install.options import InstallOptions


def test_one_setup_at_a_time(tiny_checkpoint: Path, tmp_path: Path) -> None:
    fcntl = pytest.importorskip("fcntl")  # the lock is msvcrt's on Windows
    models = tmp_path / "models" / "ace-step"
    models.parent.mkdir(parents=True)
    options = InstallOptions(models, checkpoint=tiny_checkpoint)
    with options.lock_path.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(LofiError) as info:
            run_install(options)
    assert info.value.code == errors.SETUP_FAILED
    assert "another setup" in info.value.message
