"""Atomic writes and folder replacement (``lofi_daemon/fsutil.py``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lofi_daemon import fsutil
from lofi_daemon.fsutil import replace_dir, staging_dir, write_json_atomic


def _boom(*_args: object) -> None:
    raise OSError("injected")


def test_write_json_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "params.json"
    data = {"prompt": "lofi café ☕", "seeds": [1, 2], "a": {"z": 1, "b": 2}}
    write_json_atomic(path, data)
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == data
    assert text == json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert "café ☕" in text

    monkeypatch.setattr(fsutil.os, "replace", _boom)
    with pytest.raises(OSError):
        write_json_atomic(path, {"other": True})
    assert json.loads(path.read_text(encoding="utf-8")) == data
    assert [p.name for p in tmp_path.iterdir()] == ["params.json"]


def test_write_json_refuses_nan_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "x.json", {"v": float("nan")})
    assert list(tmp_path.iterdir()) == []


def test_replace_dir_installs_a_new_folder(tmp_path: Path) -> None:
    target = tmp_path / "models"
    staged = staging_dir(target)
    assert staged.parent == tmp_path and staged.name.startswith(".models.")
    (staged / "a.txt").write_text("new", encoding="utf-8")
    replace_dir(staged, target)
    assert (target / "a.txt").read_text(encoding="utf-8") == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


def test_replace_dir_swaps_an_existing_folder(tmp_path: Path) -> None:
    target = tmp_path / "models"
    target.mkdir()
    (target / "old.txt").write_text("old", encoding="utf-8")
    staged = staging_dir(target)
    (staged / "new.txt").write_text("new", encoding="utf-8")
    replace_dir(staged, target)
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


def test_replace_dir_keeps_the_old_folder_when_the_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "models"
    target.mkdir()
    (target / "old.txt").write_text("old", encoding="utf-8")
    staged = staging_dir(target)
    (staged / "new.txt").write_text("new", encoding="utf-8")
    monkeypatch.setattr(fsutil.os, "replace", _boom)
    with pytest.raises(OSError):
        replace_dir(staged, target)
    assert (target / "old.txt").read_text(encoding="utf-8") == "old"


def test_create_exclusive_makes_a_new_file_only(tmp_path: Path) -> None:
    path = tmp_path / "new.bin"
    fd = fsutil.create_exclusive(path)
    with open(fd, "wb") as handle:
        handle.write(b"abc")
    assert path.read_bytes() == b"abc"
    with pytest.raises(FileExistsError):
        fsutil.create_exclusive(path)
    assert path.read_bytes() == b"abc"  # the existing file is not touched


def test_create_exclusive_read_write_and_write_only(tmp_path: Path) -> None:
    fd = fsutil.create_exclusive(tmp_path / "rw.bin", read=True)
    with open(fd, "r+b") as handle:
        handle.write(b"header")
        handle.seek(0)
        assert handle.read() == b"header"
    fd = fsutil.create_exclusive(tmp_path / "w.bin")
    try:
        with pytest.raises(OSError):
            os.read(fd, 1)  # write-only: reading is refused
    finally:
        os.close(fd)


@pytest.mark.skipif(not hasattr(fsutil.os, "symlink"), reason="no symlinks here")
def test_create_exclusive_does_not_follow_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep", encoding="utf-8")
    link = tmp_path / "planted"
    link.symlink_to(victim)
    with pytest.raises(OSError):
        fsutil.create_exclusive(link)
    assert victim.read_text(encoding="utf-8") == "keep"
