"""The plan: the checkpoint's files, the fp32 export size from the safetensors headers, the disk."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fake_hub import FakeHub
from install.support import assert_not_installed, checkpoint_bytes, fake_disk

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.install.installer import run_install
from lofi_daemon.install.options import REPO_ID, REQUIRED_FILES, InstallOptions
from lofi_daemon.install.plan import export_estimate, plan_install
from lofi_daemon.install.progress import format_bytes


def fp32_bytes_of(checkpoint: Path) -> int:
    """4 bytes per parameter of every safetensors file, read from the headers by hand."""
    fp32 = 0
    for path in checkpoint.rglob("*.safetensors"):
        with path.open("rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(length))
        for key, tensor in header.items():
            if key != "__metadata__":
                count = 1
                for dim in tensor["shape"]:
                    count *= dim
                fp32 += 4 * count
    return fp32


def test_the_plan_measures_the_fp32_export_from_the_headers(tiny_checkpoint: Path) -> None:
    plan = plan_install(InstallOptions(Path("/nonexistent/ace-step"), checkpoint=tiny_checkpoint))
    assert plan.export_bytes == export_estimate(fp32_bytes_of(tiny_checkpoint))
    assert plan.download_bytes == 0 and plan.source == "local"


def test_the_hub_plan_lists_the_files_and_measures_the_export(
    tiny_checkpoint: Path, tmp_path: Path, hf_home: Path
) -> None:
    extra = {"README.md": b"# not needed\n"}
    with FakeHub(tiny_checkpoint, REPO_ID, extra=extra) as hub:
        plan = plan_install(InstallOptions(tmp_path / "ace-step", endpoint=hub.url))
        bodies = [r for r in hub.body_requests() if r.range != "bytes=0-100000"]
    assert plan.source == "hub" and plan.revision == hub.commit
    assert {f.path for f in plan.files} == {
        p.relative_to(tiny_checkpoint).as_posix() for p in tiny_checkpoint.rglob("*") if p.is_file()
    }
    assert plan.download_bytes == checkpoint_bytes(tiny_checkpoint) and plan.downloaded_bytes == 0
    assert plan.export_bytes == export_estimate(fp32_bytes_of(tiny_checkpoint))
    assert bodies == []  # only metadata and safetensors headers were read


def test_a_hub_revision_without_a_needed_file_is_refused(
    tiny_checkpoint: Path, tmp_path: Path, hf_home: Path
) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(tiny_checkpoint, partial)
    (partial / "umt5-base/tokenizer.json").unlink()
    assert "umt5-base/tokenizer.json" in REQUIRED_FILES
    with FakeHub(partial, REPO_ID) as hub, pytest.raises(LofiError) as info:
        plan_install(InstallOptions(tmp_path / "ace-step", endpoint=hub.url))
    assert info.value.code == errors.MODEL_DOWNLOAD_FAILED
    assert "lacks umt5-base/tokenizer.json" in info.value.message


def test_a_folder_that_is_not_a_checkpoint_is_rejected(tmp_path: Path) -> None:
    options = InstallOptions(tmp_path / "ace-step", checkpoint=tmp_path)
    with pytest.raises(LofiError) as info:
        run_install(options)
    assert "is not an ACE-Step v1 checkpoint" in info.value.message
    assert "umt5-base/model.safetensors" in info.value.message


def test_insufficient_disk_space_for_the_export(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models" / "ace-step"
    options = InstallOptions(models, checkpoint=tiny_checkpoint)
    needed = plan_install(options).export_bytes
    monkeypatch.setattr(shutil, "disk_usage", fake_disk(needed - 1))
    with pytest.raises(LofiError) as info:
        run_install(options)
    assert info.value.code == errors.SETUP_FAILED
    assert "not enough free disk space" in info.value.message
    assert info.value.data["needed_bytes"] == needed
    assert "--models" in info.value.remedy
    assert_not_installed(models)


def test_insufficient_disk_space_counts_the_download(
    tiny_checkpoint: Path, tmp_path: Path, hf_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models" / "ace-step"
    with FakeHub(tiny_checkpoint, REPO_ID) as hub:
        options = InstallOptions(models, endpoint=hub.url, assume_yes=True)
        plan = plan_install(options)
        monkeypatch.setattr(shutil, "disk_usage", fake_disk(plan.export_bytes))
        with pytest.raises(LofiError) as info:
            run_install(options)
        bodies = [r for r in hub.body_requests() if r.range != "bytes=0-100000"]
    assert info.value.data["needed_bytes"] == plan.export_bytes + checkpoint_bytes(tiny_checkpoint)
    assert f"{format_bytes(checkpoint_bytes(tiny_checkpoint))} to download" in info.value.message
    assert bodies == []
    assert not options.download_dir.exists()
