"""Reading the track cache's folder: which regular files belong to which track, and what
interrupted runs left behind.

Split from :mod:`lofi_daemon.service.cache` (the cache's operations), which calls these under its
lock. Only exact names are ever reported: ``<track_id>.<ext>`` (:data:`TRACK_FILE_RE`), a radio
segment's held tail ``<track_id>.tail.npy`` (:data:`TAIL_SUFFIX`) and the cache's own temporary
files of those names (:func:`lofi_daemon.fsutil.temp_path`). A symlink or anything that is not a
regular file is never one of ours.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from lofi_daemon.fsutil import temp_target
from lofi_daemon.service.latents import LATENTS_SUFFIX
from lofi_daemon.service.sidecar import TRACK_FILE_RE, BadSidecar, read_sidecar
from lofi_daemon.service.track_ids import TRACK_ID_CHARS

#: A radio segment's held-back tail (the start of the next segment's crossfade), float32 ``.npy``.
TAIL_SUFFIX: Final = ".tail.npy"
TAIL_FILE_RE: Final = re.compile(rf"(?P<id>[0-9a-f]{{{TRACK_ID_CHARS}}})\.tail\.npy")

Skip = Callable[[Path, str], None]  # logs once that an entry is skipped, and why


@dataclass
class DiskTrack:
    """The regular files named exactly after one track id (a symlink is never one of ours)."""

    files: dict[Path, float] = dataclasses.field(default_factory=dict)  # path -> mtime
    has_meta: bool = False


def track_name(name: str) -> tuple[str, str] | None:
    """``(track_id, ext)`` of a track file name (``tail.npy`` for a tail), else None."""
    match = TRACK_FILE_RE.fullmatch(name)
    if match is not None:
        return match["id"], match["ext"]
    tail = TAIL_FILE_RE.fullmatch(name)
    return (tail["id"], "tail.npy") if tail is not None else None


def listing(root: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(root) as scan:
            return list(scan)
    except OSError:
        return []


def regular_stat(item: os.DirEntry[str], skip: Skip) -> os.stat_result | None:
    try:
        info = item.stat(follow_symlinks=False)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        skip(Path(item.path), "is not a regular file (a symlink?)")
        return None
    return info


def scan(root: Path, skip: Skip) -> dict[str, DiskTrack]:
    """Group the regular files named exactly ``<track_id>.<ext>`` (and tails) by id."""
    tracks: dict[str, DiskTrack] = {}
    for item in listing(root):
        named = track_name(item.name)
        if named is None:
            continue
        info = regular_stat(item, skip)
        if info is None:
            continue
        disk = tracks.setdefault(named[0], DiskTrack())
        disk.files[Path(item.path)] = info.st_mtime
        disk.has_meta = disk.has_meta or named[1] == "json"
    return tracks


def temp_files(root: Path, skip: Skip) -> list[tuple[Path, float]]:
    """The cache's own temporary files (of a track file or a tail name)."""
    found: list[tuple[Path, float]] = []
    for item in listing(root):
        target = temp_target(item.name)
        if target is None or track_name(target) is None:
            continue
        info = regular_stat(item, skip)
        if info is not None:
            found.append((Path(item.path), info.st_mtime))
    return found


def leftovers(root: Path, skip: Skip) -> list[tuple[Path, float]]:
    """What interrupted runs left (see :meth:`TrackCache.remove_orphans`), with mtimes."""
    found = [*temp_files(root, skip)]
    for track_id, disk in scan(root, skip).items():
        meta_path = root / f"{track_id}.json"
        if not disk.has_meta:
            if not os.path.lexists(meta_path):  # a symlinked sidecar is not ours to judge
                found.extend(disk.files.items())
            continue
        try:
            meta, _ = read_sidecar(meta_path, track_id)
        except FileNotFoundError:
            continue
        except BadSidecar as exc:
            skip(meta_path, str(exc))
            continue
        if not os.path.lexists(root / meta["file"]):
            found.append((meta_path, disk.files[meta_path]))
            for suffix in (LATENTS_SUFFIX, TAIL_SUFFIX):
                extra = root / f"{track_id}{suffix}"
                if extra in disk.files:
                    found.append((extra, disk.files[extra]))
    return found


def regular_size(path: Path) -> int:
    """The size of a regular file (0 when absent or not a regular file)."""
    try:
        info = os.lstat(path)
    except OSError:
        return 0
    return info.st_size if stat.S_ISREG(info.st_mode) else 0
