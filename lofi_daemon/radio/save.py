"""Saving a station's session so far as one file: the exact concatenation of its segment files.

The segment files are 16-bit and already join without a seam, so the saved file is their int16
samples back to back, unchanged (no decode to float and back). The samples are streamed block by
block: an hour of station is read and written a few hundred kilobytes at a time. The file is
assembled in a temporary sibling and only then given its name, which must not exist yet.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import soundfile as sf

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.fsutil import create_exclusive, fsync_directory, temp_path

log = logging.getLogger(__name__)

SAVE_FORMATS: Final = ("flac", "wav")
_CONTAINERS: Final = {"flac": "FLAC", "wav": "WAV"}
_BLOCK_FRAMES: Final = 1 << 16
_WAV_MAX_DATA_BYTES: Final = 0xFFFFFFFF - 1024
"""A RIFF file's sizes are 32-bit; longer sessions must be saved as FLAC."""


@dataclass(frozen=True)
class Saved:
    path: Path
    duration_sec: float
    segments: int


def _refuse(message: str) -> LofiError:
    return LofiError(errors.INVALID_PARAMETER, message)


def _check_out(out: Path) -> str:
    """Check the destination and return its format (``"flac"`` or ``"wav"``)."""
    if not out.is_absolute():
        raise _refuse(f"save path {str(out)!r} is relative; give an absolute path")
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in SAVE_FORMATS:
        raise _refuse(
            f"save path {out} ends in {out.suffix or 'no suffix'!r}; "
            f"use {' or '.join('.' + f for f in SAVE_FORMATS)}"
        )
    if os.path.lexists(out):
        raise _refuse(f"save path {out} already exists; choose a new file name")
    if not out.parent.is_dir():
        what = "is not a folder" if out.parent.exists() else "does not exist"
        raise _refuse(f"save path {out}: {out.parent} {what}")
    return fmt


def check_target(out: Path) -> None:
    """Refuse ``out`` the way :func:`save_concatenation` would, before any audio is read: a
    relative path, another suffix than ``.flac``/``.wav``, an existing file, a missing folder
    (LofiError INVALID_PARAMETER). Lets a caller answer at once and write later."""
    _check_out(Path(out))


def _invalid_input(path: Path, detail: str) -> LofiError:
    return LofiError(errors.INVALID_SOURCE, f"segment file {path}: {detail}")


def _check_inputs(paths: Sequence[Path]) -> tuple[int, int, int]:
    """Check every segment file's header; return ``(sample rate, channels, total frames)``."""
    if not paths:
        raise _refuse("there are no segments to save yet")
    rate = channels = total = 0
    for path in paths:
        try:
            info = sf.info(str(path))
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise _invalid_input(path, f"cannot be read ({errors.first_line(exc, 200)})") from None
        if not rate:
            rate, channels = info.samplerate, info.channels
        elif (info.samplerate, info.channels) != (rate, channels):
            raise _invalid_input(
                path,
                f"is {info.samplerate} Hz with {info.channels} channels; the first segment is "
                f"{rate} Hz with {channels}",
            )
        total += info.frames
    return rate, channels, total


def _copy(paths: Sequence[Path], dest: sf.SoundFile) -> int:
    written = 0
    for path in paths:
        try:
            src = sf.SoundFile(str(path))
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise _invalid_input(path, f"cannot be read ({errors.first_line(exc, 200)})") from None
        with src:
            while True:
                try:
                    block = src.read(_BLOCK_FRAMES, dtype="int16", always_2d=True)
                except (sf.LibsndfileError, RuntimeError) as exc:
                    raise _invalid_input(
                        path, f"cannot be decoded ({errors.first_line(exc, 200)})"
                    ) from None
                if block.shape[0] == 0:
                    break
                dest.write(block)
                written += block.shape[0]
    return written


def _publish(tmp: Path, out: Path) -> None:
    """Give ``tmp`` the name ``out`` without replacing anything that appeared there meanwhile."""
    try:
        os.link(tmp, out)
    except FileExistsError:
        raise _refuse(f"save path {out} already exists; choose a new file name") from None
    except OSError as exc:
        # File systems without hard links: the name was checked to be free just before.
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        if os.path.lexists(out):
            raise _refuse(f"save path {out} already exists; choose a new file name") from None
        os.replace(tmp, out)
        return
    tmp.unlink()


def save_concatenation(paths: Sequence[Path], out: Path) -> Saved:
    """Write the segment files ``paths`` back to back into the new file ``out``.

    The format follows the suffix (``.flac`` or ``.wav``, both 16-bit PCM); samples are copied
    as int16, so the result is exactly the concatenation of the files' samples.

    Raises:
        LofiError: INVALID_PARAMETER for a relative path, another suffix, an existing ``out``, a
            missing folder, no segments, or a WAV over 4 GiB; INVALID_SOURCE for an unreadable
            segment file or one whose rate or channels differ from the first's;
            OUTPUT_WRITE_FAILED when writing fails. Nothing is left behind on any error.
    """
    out = Path(out)
    fmt = _check_out(out)
    paths = [Path(p) for p in paths]
    rate, channels, total = _check_inputs(paths)
    if fmt == "wav" and total * channels * 2 > _WAV_MAX_DATA_BYTES:
        raise _refuse(
            f"{total / rate:.0f} s of audio is too long for a WAV file (4 GiB); save as .flac"
        )
    tmp = temp_path(out)
    try:
        # Read-write: libsndfile seeks back to finish the headers.
        fd = create_exclusive(tmp, read=True)
        with open(fd, "r+b") as handle:
            with sf.SoundFile(
                handle, "w", rate, channels, "PCM_16", format=_CONTAINERS[fmt]
            ) as dest:
                written = _copy(paths, dest)
            handle.flush()
            os.fsync(handle.fileno())
        _publish(tmp, out)
    except LofiError:
        tmp.unlink(missing_ok=True)
        raise
    except (OSError, sf.LibsndfileError, RuntimeError) as exc:
        tmp.unlink(missing_ok=True)
        raise LofiError(
            errors.OUTPUT_WRITE_FAILED, f"cannot write {out}: {errors.first_line(exc, 200)}"
        ) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(out.parent)
    log.info("saved %d segments (%d frames) to %s", len(paths), written, out)
    return Saved(path=out, duration_sec=written / rate, segments=len(paths))
