"""One installation at a time per model directory: an exclusive, non-blocking file lock.

The lock's descriptor is handed to the child processes, so an orphaned child (its parent killed)
still holds it until it exits.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from lofi_daemon import errors
from lofi_daemon.errors import LofiError


@contextlib.contextmanager
def install_lock(path: Path, models_dir: Path) -> Iterator[int]:
    """Hold an exclusive lock on ``path`` for ``models_dir``; yields its descriptor.

    Raises:
        LofiError: SETUP_FAILED when another installation holds it.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            _lock_fd(fd)
        except OSError as exc:
            raise LofiError(
                errors.SETUP_FAILED,
                f"another setup is already installing into {models_dir}",
                remedy="Wait for it to finish (or cancel it), then run the setup again.",
            ) from exc
        yield fd
    finally:
        os.close(fd)


def _lock_fd(fd: int) -> None:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
