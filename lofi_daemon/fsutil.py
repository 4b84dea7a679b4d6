"""Atomic file and folder replacement: the one place lofi.nvim writes anything a user keeps.

Every file the program produces (audio, sidecars, cache metadata) goes through
:func:`write_bytes_atomic` or :func:`write_json_atomic`; every folder it installs (models, test
checkpoints) is assembled in a temporary sibling and moved into place by :func:`replace_dir`.
A reader therefore sees the old content or the new one, never a half-written file, and a failure
leaves nothing behind but what was there before.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any, Final

log = logging.getLogger(__name__)

# The temporary sibling of ``NAME``: ``.NAME.<32 random hex digits>.tmp`` (see :func:`temp_path`).
_TEMP_NAME_RE: Final = re.compile(r"\.(?P<target>.+)\.[0-9a-f]{32}\.tmp", re.DOTALL)
# A new file only: never an existing one, never through a symlink, not inherited by children.
_EXCLUSIVE_CREATE: Final = (
    os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


#: Reading a file the daemon did not necessarily write: never through a symlink, never hanging on
#: a FIFO named like one of ours, not inherited by children.
SAFE_READ_FLAGS: Final = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


def temp_path(path: Path) -> Path:
    """A new, unpredictable temporary sibling of ``path`` (hidden, ``.tmp``)."""
    return path.with_name(f".{path.name}.{secrets.token_hex(16)}.tmp")


def temp_target(name: str) -> str | None:
    """The file name whose temporary sibling ``name`` is (None when ``name`` is not exactly
    one of :func:`temp_path`'s names), so a sweep can match our own leftovers exactly."""
    match = _TEMP_NAME_RE.fullmatch(name)
    return match["target"] if match else None


def create_exclusive(path: Path, *, read: bool = False) -> int:
    """Create the new file ``path`` (mode 0666 less the umask) and return its descriptor.

    Fails (``FileExistsError``, or ``OSError`` for a symlink) on anything already at ``path``, so
    nothing planted there is written through. The descriptor is write-only, or read-write with
    ``read`` (for writers that seek back and read, such as libsndfile finishing a header).
    """
    access = os.O_RDWR if read else os.O_WRONLY
    return os.open(path, _EXCLUSIVE_CREATE | access, 0o666)


def write_bytes_atomic(path: Path, payload: bytes) -> None:
    """Write ``payload`` to a temporary sibling, fsync it and rename it onto ``path``.

    On any error the temporary file is removed and the exception propagates; an existing file at
    ``path`` is then left untouched. The temporary file has a random name (:func:`temp_path`) and
    is created exclusively without following symlinks, so nothing planted beside ``path`` is
    written through.
    """
    path = Path(path)
    tmp = temp_path(path)
    fd = create_exclusive(tmp)  # fails on anything already there: not ours
    try:
        with open(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def json_bytes(data: Any) -> bytes:
    """UTF-8 JSON as every lofi.nvim file has it: indent 2, sorted keys, trailing newline."""
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON (see :func:`json_bytes`) atomically."""
    write_bytes_atomic(path, json_bytes(data))


def fsync_directory(directory: Path) -> None:
    """Persist a rename on POSIX; directories cannot be opened for fsync on Windows."""
    if os.name == "nt":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        log.debug("could not fsync directory %s", directory)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush a folder's direct entries and the folder itself to disk."""
    if os.name == "nt":  # pragma: no cover - directories cannot be opened on Windows
        return
    for path in [*root.iterdir(), root]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def staging_dir(target: Path) -> Path:
    """A new empty hidden sibling of ``target`` to assemble its replacement in (mode 0755)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staged.chmod(0o755)
    return staged


def replace_dir(staged: Path, target: Path) -> None:
    """Make the complete folder ``staged`` become ``target``; the old ``target`` goes only after.

    The staged files are flushed first. An existing ``target`` is renamed aside, the staged folder
    renamed into place, and only then the old one deleted, so a crash leaves either the old or the
    new folder at ``target`` (and at worst a hidden ``.<name>.old`` sibling).
    """
    fsync_tree(staged)
    old = target.with_name(f".{target.name}.old")
    remove_tree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(staged, target)
    fsync_directory(target.parent)
    remove_tree(old)


def remove_tree(path: Path) -> None:
    """Delete a folder we created, ignoring what is already gone."""
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
