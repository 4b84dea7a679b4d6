"""Reading a track's JSON sidecar from the cache without trusting it, and what a trusted one
describes (:class:`TrackEntry`).

The cache directory is shared (several daemons, the user, other programs), so a sidecar may be
anything: truncated, deeply nested, huge, ``NaN``, of the wrong types, a symlink, a FIFO.
:func:`read_sidecar` either returns metadata whose public fields (:meth:`TrackEntry.to_json`)
have the documented JSON types and can be sent as strict JSON, or raises :class:`BadSidecar`
with a one-line reason. It never blocks, never follows a symlink and never raises anything else
for bad content.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeGuard

from lofi_daemon.fsutil import SAFE_READ_FLAGS
from lofi_daemon.pipeline.params import FORMATS, MAX_SEED, TASKS
from lofi_daemon.service.track_ids import TRACK_ID_CHARS, is_track_id

MAX_SIDECAR_BYTES: Final = 1024 * 1024  # ours are a few KiB (the prompt is at most 1000 chars)

#: The files of one track: its sidecar, its audio and its latents (``<id>.latents.npy``).
TRACK_FILE_RE: Final = re.compile(
    rf"(?P<id>[0-9a-f]{{{TRACK_ID_CHARS}}})\.(?P<ext>json|latents\.npy|{'|'.join(FORMATS)})"
)


# Public fields -> what each must be (checked by _check_fields).
_STRINGS: Final = ("prompt", "model_version", "backend")
_POSITIVE_INTS: Final = ("sample_rate", "channels")
_NON_NEGATIVE_NUMBERS: Final = ("duration_sec", "generation_time_sec", "created_at")


@dataclass(frozen=True)
class TrackEntry:
    """One cached track as found on disk."""

    track_id: str
    path: Path
    meta_path: Path
    size_bytes: int
    last_used_at: float
    metadata: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The public description used by ``tracks.list`` and ``generation_complete``."""
        meta = self.metadata
        return {
            "track_id": self.track_id,
            "path": str(self.path),
            "prompt": meta.get("prompt"),
            "duration_sec": meta.get("duration_sec"),
            "seed": meta.get("seed"),
            "sample_rate": meta.get("sample_rate"),
            "channels": meta.get("channels"),
            "format": meta.get("format"),
            "model_version": meta.get("model_version"),
            "backend": meta.get("backend"),
            "generation_time_sec": meta.get("generation_time_sec"),
            "created_at": meta.get("created_at"),
            "last_used_at": self.last_used_at,
            "size_bytes": self.size_bytes,
            "task": self.task,
            **({"src_track_id": self.src_track_id} if self.src_track_id else {}),
            **({"params": meta["params"]} if isinstance(meta.get("params"), dict) else {}),
            **({"variant": meta["variant"]} if isinstance(meta.get("variant"), str) else {}),
            **({"radio": meta["radio"]} if isinstance(meta.get("radio"), dict) else {}),
            "pinned": meta.get("pinned") is True,
        }

    @property
    def task(self) -> str:
        """The track's task (sidecars from before the audio tasks are text2music)."""
        task = self.metadata.get("task", "text2music")
        return task if isinstance(task, str) else "text2music"

    @property
    def src_track_id(self) -> str | None:
        """The cached track this one was made from (repaint, extend, edit, audio2audio)."""
        source = self.metadata.get("source")
        ref = source.get("track_id") if isinstance(source, dict) else None
        return ref if is_track_id(ref) else None


class BadSidecar(ValueError):
    """A sidecar that cannot describe a track; the message says why, in one line."""


def read_sidecar(path: Path, track_id: str) -> tuple[dict[str, Any], os.stat_result]:
    """The validated metadata of ``track_id`` at ``path`` and the file's stat.

    Raises:
        FileNotFoundError: when there is no file at ``path``.
        BadSidecar: when the file is not a regular file (a symlink, a folder, a FIFO), is over
            :data:`MAX_SIDECAR_BYTES`, or does not hold valid metadata for ``track_id``.
    """
    try:
        fd = os.open(path, SAFE_READ_FLAGS)
    except FileNotFoundError:
        raise
    except OSError as exc:  # ELOOP: a symlink (O_NOFOLLOW); EISDIR, EACCES, ...
        if os.path.islink(path):
            raise BadSidecar("is a symlink") from exc
        raise BadSidecar(f"cannot be opened ({exc.strerror or exc})") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BadSidecar("is not a regular file")
        if info.st_size > MAX_SIDECAR_BYTES:
            raise BadSidecar(f"is {info.st_size} bytes; the limit is {MAX_SIDECAR_BYTES}")
        data = _read_at_most(fd, MAX_SIDECAR_BYTES + 1)
    except OSError as exc:
        raise BadSidecar(f"cannot be read ({exc.strerror or exc})") from exc
    finally:
        os.close(fd)
    if len(data) > MAX_SIDECAR_BYTES:
        raise BadSidecar(f"is over {MAX_SIDECAR_BYTES} bytes")
    return parse_sidecar(data, track_id), info


def parse_sidecar(data: bytes, track_id: str) -> dict[str, Any]:
    """Strict JSON (no ``NaN``/``Infinity``, no overflowing floats, bounded nesting) holding
    valid metadata for ``track_id``.

    Raises:
        BadSidecar: with the reason.
    """
    try:
        meta = json.loads(
            data.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float
        )
    except RecursionError as exc:
        raise BadSidecar("is nested too deeply") from exc
    except UnicodeDecodeError as exc:
        raise BadSidecar("is not UTF-8") from exc
    except ValueError as exc:
        raise BadSidecar(f"is not valid JSON ({str(exc)[:80]})") from exc
    if not isinstance(meta, dict):
        raise BadSidecar(f"holds a JSON {type(meta).__name__}, not an object")
    _check_fields(meta, track_id)
    return meta


def _check_fields(meta: dict[str, Any], track_id: str) -> None:
    if meta.get("track_id") != track_id:
        raise BadSidecar("names another track_id")
    name = meta.get("file")
    match = TRACK_FILE_RE.fullmatch(name) if isinstance(name, str) else None
    if match is None or match["id"] != track_id or match["ext"] not in FORMATS:
        raise BadSidecar("has no valid audio file name")
    if meta.get("format") != match["ext"]:
        raise BadSidecar("has a format that is not its file's")
    for key in _STRINGS:
        if not isinstance(meta.get(key), str):
            raise BadSidecar(f"has a non-string {key}")
    for key in _POSITIVE_INTS:
        value = meta.get(key)
        if not _is_int(value) or value <= 0:
            raise BadSidecar(f"has an invalid {key}")
    for key in _NON_NEGATIVE_NUMBERS:
        value = meta.get(key)
        if not _is_number(value) or value < 0:
            raise BadSidecar(f"has an invalid {key}")
    seed = meta.get("seed")
    if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
        raise BadSidecar("has an invalid seed")
    if meta.get("task", "text2music") not in TASKS:
        raise BadSidecar("has an unknown task")
    source = meta.get("source")
    if source is not None and (
        not isinstance(source, dict)
        or not isinstance(source.get("kind"), str)
        or ("track_id" in source and not is_track_id(source["track_id"]))
    ):
        raise BadSidecar("has an invalid source")


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit and (chunk := os.read(fd, limit - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    return _is_int(value) or isinstance(value, float)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} overflows")
    return value
