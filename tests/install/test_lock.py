"""One installation at a time per model directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from install.support import FakeExporter

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.install import lock as lock_module
from lofi_daemon.install.installer import run_install
from lofi_daemon.install.lock import install_lock
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


def test_no_lock_file_is_left_behind(
    tiny_checkpoint: Path, tmp_path: Path, fake_exporter: FakeExporter
) -> None:
    """Issue 10, item 27: ``.ace-step.lock`` stayed beside the model directory."""
    models = tmp_path / "models" / "ace-step"
    run_install(InstallOptions(models, checkpoint=tiny_checkpoint, exporter=fake_exporter("ok")))
    assert sorted(p.name for p in models.parent.iterdir()) == ["ace-step"]
    with pytest.raises(LofiError):  # a failed setup removes it too
        run_install(InstallOptions(models, checkpoint=tmp_path / "no-checkpoint", force=True))
    assert sorted(p.name for p in models.parent.iterdir()) == ["ace-step"]


def test_a_file_that_replaced_the_lock_is_not_removed(tmp_path: Path) -> None:
    path = tmp_path / ".ace-step.lock"
    with install_lock(path, tmp_path / "ace-step"):
        path.unlink()
        path.write_text("not ours")
    assert path.read_text() == "not ours"


def test_a_lock_file_removed_before_it_was_locked_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The previous setup removed the file between our open and our lock: lock the new file."""
    path = tmp_path / ".ace-step.lock"
    real = lock_module._lock_fd
    calls: list[int] = []

    def removed_first(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            path.unlink()  # what the ending setup does, just before we lock
        real(fd)

    monkeypatch.setattr(lock_module, "_lock_fd", removed_first)
    with install_lock(path, tmp_path / "ace-step") as fd:
        assert len(calls) == 2
        assert os.path.samestat(os.fstat(fd), path.stat())
    assert not path.exists()
