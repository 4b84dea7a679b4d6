"""A cached track's final latents, ``<track_id>.latents.npy`` beside its audio.

A later repaint, extend, edit or audio2audio of the track starts from them instead of encoding
the track's audio again (acestep-v1.md §11.4: the encode is a full DCAE encoder pass). The cache
folder is shared and never trusted, so :func:`read_latents` opens the file without following a
symlink, bounds its size and checks what it holds; anything else is "no latents" (the caller then
encodes the audio).
"""

from __future__ import annotations

import io
import logging
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Final

from lofi_daemon.fsutil import SAFE_READ_FLAGS, write_bytes_atomic

if TYPE_CHECKING:  # numpy is imported when latents are used: `serve` starts without it
    import numpy as np

log = logging.getLogger(__name__)

LATENTS_SUFFIX: Final = ".latents.npy"
LATENT_CHANNELS: Final = 8  # model/constants.py: latent_channels, latent_height of ACE-Step v1
LATENT_HEIGHT: Final = 16
MAX_LATENT_FRAMES: Final = 2583  # 240 s: int(240·44100/4096) + 1
#: A larger file is not ours: [1, 8, 16, 2583] float32 is 1.3 MB plus a small header.
MAX_LATENTS_BYTES: Final = 4 * LATENT_CHANNELS * LATENT_HEIGHT * MAX_LATENT_FRAMES + 4096


def latents_bytes(latents: np.ndarray) -> bytes:
    """``latents`` as the bytes of a ``.npy`` file (float32, no pickle)."""
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(latents, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def write_latents(path: Path, latents: np.ndarray) -> None:
    """Write ``latents`` atomically (:func:`lofi_daemon.fsutil.write_bytes_atomic`)."""
    write_bytes_atomic(path, latents_bytes(latents))


def keep_latents(path: Path, latents: np.ndarray | None) -> Path | None:
    """Write a finished track's latents to ``path``; None when there are none or the write
    failed (logged: a later task from the track then only costs an encode of its audio)."""
    if latents is None:
        return None
    try:
        write_latents(path, latents)
    except (OSError, ValueError) as exc:
        log.warning("cannot write %s: %s", path, exc)
        return None
    return path


def check_latents(array: object) -> str | None:
    """Why ``array`` is not one track's latents (None when it is)."""
    import numpy as np

    if not isinstance(array, np.ndarray):
        return "is not an array"
    if array.dtype != np.float32:
        return f"holds {array.dtype}, not float32"
    shape = tuple(array.shape)
    if len(shape) != 4 or shape[:3] != (1, LATENT_CHANNELS, LATENT_HEIGHT):
        return f"has the shape {list(shape)}, not [1, {LATENT_CHANNELS}, {LATENT_HEIGHT}, T]"
    if not 1 <= shape[3] <= MAX_LATENT_FRAMES:
        return f"has {shape[3]} frames (1 to {MAX_LATENT_FRAMES})"
    if not np.isfinite(array).all():
        return "holds NaN or infinity"
    return None


def read_latents(path: Path) -> tuple[np.ndarray, bytes] | None:
    """The latents at ``path`` and the file's bytes (what a track id hashes), or None when the
    file is missing or is not valid latents (a symlink, too large, not a float32
    ``[1, 8, 16, T]`` array, non-finite); the reason is logged."""
    import numpy as np

    try:
        fd = os.open(path, SAFE_READ_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot open %s: %s", path, exc.strerror or exc)
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_LATENTS_BYTES:
            log.warning(
                "ignoring %s: not a regular file of at most %d bytes", path, MAX_LATENTS_BYTES
            )
            return None
        data = _read_at_most(fd, MAX_LATENTS_BYTES + 1)
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc.strerror or exc)
        return None
    finally:
        os.close(fd)
    if len(data) > MAX_LATENTS_BYTES:
        log.warning("ignoring %s: over %d bytes", path, MAX_LATENTS_BYTES)
        return None
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        log.warning("ignoring %s: not a .npy array (%s)", path, exc)
        return None
    reason = check_latents(array)
    if reason is not None:
        log.warning("ignoring %s: it %s", path, reason)
        return None
    return array, data


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit and (chunk := os.read(fd, limit - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
