"""Consent: no byte is downloaded before the user agreed to the size."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_hub import FakeHub
from install.support import assert_not_installed, checkpoint_bytes, leftovers, run_cli

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.install.installer import run_install
from lofi_daemon.install.options import REPO_ID, InstallOptions
from lofi_daemon.install.plan import InstallPlan
from lofi_daemon.install.progress import format_bytes


def test_no_consent_and_no_terminal_refuses_before_downloading(
    tiny_checkpoint: Path, tmp_path: Path, hf_home: Path
) -> None:
    models = tmp_path / "models" / "ace-step"
    with FakeHub(tiny_checkpoint, REPO_ID) as hub:
        result = run_cli("setup", "ace-step", "--models", models, env={"HF_ENDPOINT": hub.url})
        bodies = [r for r in hub.body_requests() if r.range != "bytes=0-100000"]
    assert result.returncode == 1
    size = format_bytes(checkpoint_bytes(tiny_checkpoint))
    assert f"downloading {size} from {hub.url}/{REPO_ID} needs your consent" in result.stderr
    assert "--yes" in result.stderr
    assert bodies == []
    assert not models.parent.exists() or leftovers(models) == set()
    assert_not_installed(models)


def test_a_declined_download_downloads_nothing(
    tiny_checkpoint: Path, tmp_path: Path, hf_home: Path
) -> None:
    models = tmp_path / "models" / "ace-step"
    asked: list[int] = []

    def decline(plan: InstallPlan) -> bool:
        asked.append(plan.remaining_bytes)
        return False

    with FakeHub(tiny_checkpoint, REPO_ID) as hub:
        options = InstallOptions(models, endpoint=hub.url)
        with pytest.raises(LofiError) as info:
            run_install(options, confirm=decline)
        bodies = [r for r in hub.body_requests() if r.range != "bytes=0-100000"]
    assert info.value.code == errors.SETUP_FAILED and "declined" in info.value.message
    assert asked == [checkpoint_bytes(tiny_checkpoint)]
    assert bodies == []
    assert not options.download_dir.exists()
