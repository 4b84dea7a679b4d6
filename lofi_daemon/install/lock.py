"""One installation at a time per model directory: an exclusive, non-blocking file lock.

The lock's descriptor is handed to the child processes, so an orphaned child (its parent killed)
still holds it until it exits.

The lock file is removed when the installation ends, so none is left beside the model directory.
It is unlinked while still locked, and whoever takes the lock checks that the path still names the
file it locked (else it locks the new file): a setup that opened the old file just before it was
removed can therefore never run beside one that created a new file.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from lofi_daemon import errors
from lofi_daemon.errors import LofiError

#: Tries to lock a file that is not removed between opening and locking it.
ACQUIRE_ATTEMPTS: Final = 20


@contextlib.contextmanager
def install_lock(path: Path, models_dir: Path) -> Iterator[int]:
    """Hold an exclusive lock on ``path`` for ``models_dir``; yields its descriptor.

    Raises:
        LofiError: SETUP_FAILED when another installation holds it.
    """
    fd = _acquire(path, models_dir)
    try:
        yield fd
    finally:
        _remove_own(path, fd)
        os.close(fd)


def _acquire(path: Path, models_dir: Path) -> int:
    for _attempt in range(ACQUIRE_ATTEMPTS):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock_fd(fd)
        except OSError as exc:
            os.close(fd)
            raise LofiError(
                errors.SETUP_FAILED,
                f"another setup is already installing into {models_dir}",
                remedy="Wait for it to finish (or cancel it), then run the setup again.",
            ) from exc
        if _same_file(path, fd):
            return fd
        os.close(fd)  # the file was removed (its setup ended) after we opened it: lock the new one
    raise LofiError(
        errors.SETUP_FAILED,
        f"cannot lock {path}: it keeps being replaced",
        remedy="Wait for the other setup to finish, then run the setup again.",
    )


def _same_file(path: Path, fd: int) -> bool:
    try:
        return os.path.samestat(os.stat(path, follow_symlinks=False), os.fstat(fd))
    except OSError:
        return False


def _remove_own(path: Path, fd: int) -> None:
    """Unlink ``path`` if it is still the lock file ``fd`` holds (never anyone else's file)."""
    if os.name == "nt":  # pragma: no cover - an open file cannot be removed there
        return
    if _same_file(path, fd):
        with contextlib.suppress(OSError):
            path.unlink()


def _lock_fd(fd: int) -> None:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
