"""``lofi-daemon setup ace-step-1.5`` end to end: the tiny 1.5 checkpoint served by the fake hub
(beside the planner LM it must not fetch), exported by the real ``lofi-export onnx``, verified and
installed beside an existing v1 installation that stays untouched; then the daemon's setup
runner finds it installed and names the backend whose engine must reload.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from fake_hub import TURBO_DECOY_LM, FakeHub, turbo_decoys
from install.support import copy_install, leftovers, run_cli

from lofi_daemon.install.verify import verify_installation
from lofi_daemon.model import turbo_layout
from lofi_daemon.model.backends import backend_models_dir
from lofi_daemon.service.install_jobs import InstallRequest, InstallRunner
from lofi_daemon.turbo.manifest import load_turbo_manifest

TURBO = turbo_layout.BACKEND


def digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_1_5_setup_from_the_hub_beside_an_installed_v1(
    installed: tuple[Path, str],
    turbo_checkpoint: Path,
    tmp_path: Path,
    hf_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    v1 = copy_install(installed, tmp_path)
    v1_before = digests(v1)
    monkeypatch.delenv("LOFI_MODELS_DIR_ACE_STEP_1_5", raising=False)
    target = backend_models_dir(TURBO, v1)
    assert target == v1.parent / TURBO
    with FakeHub(turbo_checkpoint, turbo_layout.REPO_ID, extra=turbo_decoys()) as hub:
        env = {"LOFI_MODELS_DIR": str(v1), "HF_ENDPOINT": hub.url}
        result = run_cli("setup", TURBO, "--yes", env=env)
        lm_requests = [r for r in hub.seen() if TURBO_DECOY_LM in r.path]
        extras = [r for r in hub.seen() if "README" in r.path or "chat_template" in r.path]
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(target)
    assert "[download] 100.0%" in result.stderr and "(4/4)" in result.stderr
    assert lm_requests == [] and extras == []

    manifest = load_turbo_manifest(target)
    assert manifest.raw["backend"] == TURBO
    assert set(manifest.graphs) == set(turbo_layout.GRAPHS)
    assert verify_installation(target, backend=TURBO).model_version == manifest.model_version
    assert leftovers(target) == {v1.name}  # no download, staging or lock folder left
    assert digests(v1) == v1_before  # v1 untouched and still loadable
    verify_installation(v1)

    # The daemon's setup of 1.5 (models_dir is its v1 directory) finds it installed and asks
    # for that backend's engine to reload; the hub is not contacted (nothing listens there).
    sent: list[tuple[str, dict[str, Any]]] = []
    reloaded: list[str] = []
    runner = InstallRunner(
        v1,
        lambda method, params: sent.append((method, params)),
        reloaded.append,
        options={"endpoint": "http://127.0.0.1:9"},
    )
    runner.start(InstallRequest(backend=TURBO))()
    assert runner.join(120)
    assert reloaded == [TURBO]
    method, params = sent[-1]
    assert method == "setup_complete", sent
    assert params["models_dir"] == str(target) and params["already_installed"] is True
    assert params["backend"] == TURBO and params["model_version"] == manifest.model_version
    assert digests(v1) == v1_before
