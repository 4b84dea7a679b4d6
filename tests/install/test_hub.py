"""The hub child, ``python -m lofi_daemon.install.hub``, against the local fake hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from fake_hub import FakeHub

from lofi_daemon.install.options import REPO_ID


def hub_child(*args: str, endpoint: str, home: Path) -> tuple[int, dict[str, Any]]:
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HOME": str(home)}
    env.pop("HF_HUB_OFFLINE", None)
    result = subprocess.run(
        [sys.executable, "-m", "lofi_daemon.install.hub", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout + result.stderr  # one JSON answer, nothing else
    answer: dict[str, Any] = json.loads(lines[0])
    return result.returncode, answer


def test_probe_lists_the_needed_files_with_their_checksums(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    with FakeHub(tiny_checkpoint, REPO_ID, extra={"README.md": b"# no\n"}) as hub:
        code, answer = hub_child("probe", REPO_ID, endpoint=hub.url, home=tmp_path)
    assert code == 0 and answer["ok"] is True
    assert answer["revision"] == hub.commit
    files = {f["path"]: f for f in answer["files"]}
    assert "README.md" not in files
    assert set(files) == {
        p.relative_to(tiny_checkpoint).as_posix() for p in tiny_checkpoint.rglob("*") if p.is_file()
    }
    for name, entry in files.items():
        served = hub.files[name]
        assert entry["size"] == len(served.data)
        assert entry["sha256"] == (served.sha256 if served.lfs else None)
        assert entry["blob_id"] == served.blob_id
    assert isinstance(answer["weights_fp32_bytes"], int) and answer["weights_fp32_bytes"] > 0


def test_a_failure_is_a_json_answer(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with FakeHub(tiny_checkpoint, REPO_ID) as hub:
        code, answer = hub_child("probe", "someone/else", endpoint=hub.url, home=tmp_path)
    assert code == 1 and answer["ok"] is False
    # One readable line: no exception class, request id or advice (issue 10, item 26).
    assert answer["error"] == "the hub answered HTTP 404 (Repository Not Found)"


def test_download_fetches_the_needed_files(tiny_checkpoint: Path, tmp_path: Path) -> None:
    target = tmp_path / "download"
    with FakeHub(tiny_checkpoint, REPO_ID, extra={"README.md": b"# no\n"}) as hub:
        args = ("download", REPO_ID, hub.commit, str(target))
        code, answer = hub_child(*args, endpoint=hub.url, home=tmp_path / "home")
    assert (code, answer) == (0, {"ok": True})
    for path in tiny_checkpoint.rglob("*"):
        if path.is_file():
            assert (target / path.relative_to(tiny_checkpoint)).read_bytes() == path.read_bytes()
    assert not (target / "README.md").exists()
