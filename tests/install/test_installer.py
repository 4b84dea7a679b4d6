"""``run_install`` end to end: local checkpoint, cancellation, a verified or damaged installation.

The real export runs once here (about 90 s, the session's ``installed`` fixture); the other tests
swap the exporter for the fake one of ``install.support``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import soundfile as sf
from fake_hub import FakeHub
from install.support import (
    Event,
    FakeExporter,
    assert_monotonic,
    assert_not_installed,
    checkpoint_bytes,
    copy_install,
    flip_byte,
    leftovers,
    phases,
    recorder,
    run_cli,
)

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.install.installer import run_install
from lofi_daemon.install.options import REPO_ID, InstallOptions
from lofi_daemon.install.verify import verify_installation
from lofi_daemon.model.manifest import Manifest


def test_setup_from_local_checkpoint_then_generate(
    installed: tuple[Path, str], tmp_path: Path
) -> None:
    models, stderr = installed
    manifest = verify_installation(models)
    assert isinstance(manifest, Manifest)
    assert set(manifest.graphs) >= {"text_encoder", "denoiser", "vocoder"}
    assert leftovers(models) == set()
    assert "[export] 100.0%" in stderr and "(6/6)" in stderr
    assert "[verify] 100.0%" in stderr

    out = tmp_path / "t.wav"
    args: list[str | Path] = ["generate", "x", "--duration", "5", "--steps", "2"]
    args += ["--models", models, "-o", out]
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    info = sf.info(str(out))
    assert info.samplerate == 48000 and info.channels == 2
    assert abs(info.duration - 5.0) < 0.1


def test_cancel_during_export_leaves_no_models_dir(
    tiny_checkpoint: Path, tmp_path: Path, fake_exporter: FakeExporter
) -> None:
    models = tmp_path / "models" / "ace-step"
    cancel = threading.Event()
    events: list[Event] = []
    record = recorder(events)

    def cancel_after_first_graph(
        phase: str, done: int, total: int, percent: float, message: str
    ) -> None:
        record(phase, done, total, percent, message)
        if phase == "export" and done == 1:
            cancel.set()

    options = InstallOptions(models, checkpoint=tiny_checkpoint, exporter=fake_exporter("hang"))
    with pytest.raises(LofiError) as info:
        run_install(options, progress=cancel_after_first_graph, cancel=cancel)
    assert info.value.code == errors.GENERATION_CANCELLED
    assert_not_installed(models)
    assert leftovers(models) == set()
    pid = int(Path(os.environ["FAKE_EXPORTER_PIDFILE"]).read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the exporter was stopped and reaped

    options = InstallOptions(models, checkpoint=tiny_checkpoint, exporter=fake_exporter("ok"))
    result = run_install(options)
    assert verify_installation(models).model_version == result.model_version


def test_setup_repairs_a_corrupt_install_from_the_hub(
    installed: tuple[Path, str],
    tiny_checkpoint: Path,
    tmp_path: Path,
    hf_home: Path,
    fake_exporter: FakeExporter,
) -> None:
    models = copy_install(installed, tmp_path)
    flip_byte(models / "denoiser.onnx")
    with FakeHub(tiny_checkpoint, REPO_ID) as hub:
        options = InstallOptions(
            models, endpoint=hub.url, assume_yes=True, exporter=fake_exporter("ok")
        )
        result = run_install(options)
    assert not result.already_installed
    assert result.downloaded_bytes == checkpoint_bytes(tiny_checkpoint)
    verify_installation(models)


def test_a_verified_install_is_left_alone(installed: tuple[Path, str], tmp_path: Path) -> None:
    models = copy_install(installed, tmp_path)
    # Nothing listens on this port: the hub must not be contacted at all.
    options = InstallOptions(models, endpoint="http://127.0.0.1:9")
    events: list[Event] = []
    result = run_install(options, progress=recorder(events))
    assert result.already_installed and result.downloaded_bytes == 0
    assert phases(events) == ["verify"]
    assert_monotonic(events, "verify")


def test_refuses_to_replace_a_foreign_folder(tiny_checkpoint: Path, tmp_path: Path) -> None:
    models = tmp_path / "Documents"
    models.mkdir()
    (models / "notes.txt").write_text("mine")
    with pytest.raises(LofiError) as info:
        run_install(InstallOptions(models, checkpoint=tiny_checkpoint))
    assert "not a lofi.nvim model directory" in info.value.message
    assert (models / "notes.txt").read_text() == "mine"


def test_the_runtime_imports_neither_torch_nor_huggingface_hub_nor_the_exporter() -> None:
    modules = [
        "lofi_daemon.install.installer",
        "lofi_daemon.install.extra",
        "lofi_daemon.install.hub",
        "lofi_daemon.cli.install",
        "lofi_daemon.service.install_jobs",
        "lofi_daemon.__main__",
    ]
    code = (
        f"import sys, importlib; [importlib.import_module(m) for m in {modules!r}]; "
        "print(sorted({'torch', 'huggingface_hub', 'lofi_export'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_same_checkpoint_is_not_exported_again(
    tiny_checkpoint: Path, tmp_path: Path, fake_exporter: FakeExporter
) -> None:
    """Issue 10, item 25: a rerun from the same checkpoint re-exported everything."""
    models = tmp_path / "models" / "ace-step"
    first = run_install(
        InstallOptions(models, checkpoint=tiny_checkpoint, exporter=fake_exporter("ok"))
    )
    # The failing exporter proves that nothing is exported when the checkpoint is the same.
    again = InstallOptions(models, checkpoint=tiny_checkpoint, exporter=fake_exporter("fail"))
    result = run_install(again)
    assert result.already_installed and result.model_version == first.model_version
    with pytest.raises(LofiError, match="No space left"):  # --force exports again
        run_install(
            InstallOptions(
                models, checkpoint=tiny_checkpoint, force=True, exporter=fake_exporter("fail")
            )
        )
    verify_installation(models)  # and a failed re-export leaves the installation alone


def test_a_changed_checkpoint_is_exported(
    tiny_checkpoint: Path, tmp_path: Path, fake_exporter: FakeExporter
) -> None:
    models = tmp_path / "models" / "ace-step"
    run_install(InstallOptions(models, checkpoint=tiny_checkpoint, exporter=fake_exporter("ok")))
    changed = tmp_path / "changed"
    shutil.copytree(tiny_checkpoint, changed)
    flip_byte(changed / "music_vocoder" / "diffusion_pytorch_model.safetensors")  # same size
    options = InstallOptions(models, checkpoint=changed, exporter=fake_exporter("ok"))
    result = run_install(options)
    assert not result.already_installed
    recorded = verify_installation(models).raw["source"]["files"]
    vocoder = recorded["music_vocoder/diffusion_pytorch_model.safetensors"]["sha256"]
    assert (
        vocoder
        == hashlib.sha256(
            (changed / "music_vocoder" / "diffusion_pytorch_model.safetensors").read_bytes()
        ).hexdigest()
    )


def test_the_cli_says_the_checkpoint_is_already_installed(
    tiny_checkpoint: Path, tmp_path: Path, fake_exporter: FakeExporter
) -> None:
    models = tmp_path / "models" / "ace-step"
    run_install(InstallOptions(models, checkpoint=tiny_checkpoint, exporter=fake_exporter("ok")))
    result = run_cli("setup", "ace-step", "--checkpoint", tiny_checkpoint, "--models", models)
    assert result.returncode == 0, result.stderr
    assert "already installed from this checkpoint" in result.stderr
    assert "[export]" not in result.stderr
    assert result.stdout == f"{models}\n"
