"""The persistent track cache: one audio file plus one JSON sidecar per track.

Layout (flat, under the cache directory)::

    <track_id>.<wav|flac|ogg>   the audio
    <track_id>.json             the metadata sidecar (every parameter, seed, model version, ...)

Track ids (the file names) are defined in :mod:`lofi_daemon.service.track_ids`.

The cache is the only writer of a track's sidecar: the engine writes the audio and returns a
:class:`~lofi_daemon.pipeline.engine.GenerationResult`; :meth:`TrackCache.add` merges that
result's own description (:meth:`~lofi_daemon.pipeline.engine.GenerationResult.sidecar`) with
what only the cache knows (track id, file name, backend, timing) and writes the file once.

The directory is the only source of truth (there is no in-memory index), so the cache survives
restarts and several daemons may share it. "Last used" is the sidecar's modification time: a
cache hit touches it. When the total size passes the cap, the least recently used tracks are
deleted from disk.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.fsutil import write_json_atomic
from lofi_daemon.pipeline.params import FORMATS
from lofi_daemon.service.track_ids import TRACK_ID_CHARS, is_track_id

if TYPE_CHECKING:  # the engine module loads ONNX Runtime; the cache only reads its result
    from lofi_daemon.pipeline.engine import GenerationResult

log = logging.getLogger(__name__)

SIDECAR_SCHEMA: Final = 1
DEFAULT_MAX_BYTES: Final = 2 * 1024**3
ORPHAN_GRACE_SEC: Final = 600.0

_TRACK_FILE_RE: Final = re.compile(
    rf"(?P<id>[0-9a-f]{{{TRACK_ID_CHARS}}})\.(?P<ext>json|{'|'.join(FORMATS)})"
)
_OWNED_PREFIX_RE: Final = re.compile(rf"\.?(?P<id>[0-9a-f]{{{TRACK_ID_CHARS}}})\b")


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
        }


@dataclass
class _DiskTrack:
    size_bytes: int = 0
    meta_mtime: float | None = None
    has_audio: bool = False
    files: list[Path] = dataclasses.field(default_factory=list)


class TrackCache:
    """Tracks on disk under ``root``, capped at ``max_bytes`` by LRU eviction.

    All methods are thread-safe within one process; across processes every operation tolerates
    files disappearing underneath it.
    """

    def __init__(self, root: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self.root = Path(root).expanduser()
        self.max_bytes = max_bytes
        self._lock = threading.RLock()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LofiError(
                errors.OUTPUT_WRITE_FAILED, f"cannot create the cache directory {self.root}: {exc}"
            ) from exc
        self.remove_orphans()
        self.evict()

    def audio_path(self, track_id: str, fmt: str) -> Path:
        """Where the audio of ``track_id`` lives (or will be written)."""
        return self.root / f"{track_id}.{fmt}"

    def meta_path(self, track_id: str) -> Path:
        return self.root / f"{track_id}.json"

    def get(self, track_id: str, *, touch: bool = True) -> TrackEntry | None:
        """The cached track, or None. A hit counts as a use unless ``touch`` is False."""
        if not is_track_id(track_id):
            return None
        with self._lock:
            entry = self._load(track_id)
            if entry is not None and touch:
                try:
                    os.utime(entry.meta_path)
                    entry = dataclasses.replace(entry, last_used_at=time.time())
                except OSError:
                    log.warning("cannot touch %s", entry.meta_path)
            return entry

    def entries(self) -> list[TrackEntry]:
        """All complete tracks, most recently used first."""
        entries: list[TrackEntry] = []
        with self._lock:
            for track_id, disk in self._scan().items():
                entry = self._load(track_id) if disk.has_audio else None
                if entry is not None:
                    entries.append(entry)
        entries.sort(key=lambda e: e.last_used_at, reverse=True)
        return entries

    def total_bytes(self) -> int:
        with self._lock:
            return sum(d.size_bytes for d in self._scan().values() if d.meta_mtime is not None)

    def delete(self, track_id: str) -> bool:
        """Delete the files of a track; False when there was no such track."""
        if not is_track_id(track_id):
            return False
        with self._lock:
            disk = self._scan().get(track_id)
            if disk is None:
                return False
            self._remove(disk.files)
            log.info("deleted track %s", track_id)
            return True

    def discard(self, track_id: str) -> None:
        """Remove whatever a failed or cancelled generation of ``track_id`` left behind."""
        self.delete(track_id)

    def add(
        self, track_id: str, result: GenerationResult, *, backend: str, generation_time_sec: float
    ) -> TrackEntry:
        """Record a finished generation: write its sidecar (the result's own description plus
        the cache's fields, see :meth:`_cache_fields`), then evict to the cap.

        Raises:
            LofiError: OUTPUT_WRITE_FAILED when the files cannot be placed or written.
        """
        with self._lock:
            audio = self._place_audio(track_id, Path(result.path))
            meta = {
                **result.sidecar(),
                **self._cache_fields(track_id, audio, result),
                "backend": backend,
                "generation_time_sec": round(generation_time_sec, 3),
            }
            meta_path = self.meta_path(track_id)
            try:
                write_json_atomic(meta_path, meta)
            except OSError as exc:
                raise LofiError(
                    errors.OUTPUT_WRITE_FAILED, f"cannot write {meta_path}: {exc}"
                ) from exc
            entry = self._load(track_id)
            if entry is None:
                raise LofiError(
                    errors.OUTPUT_WRITE_FAILED, f"track {track_id} vanished after writing"
                )
            self.evict(keep=track_id)
            return entry

    def evict(self, *, keep: str | None = None) -> list[str]:
        """Delete least recently used tracks until the total fits ``max_bytes``.

        ``keep`` (the track just added) is never evicted, even when it alone is over the cap.
        Returns the evicted track ids.
        """
        with self._lock:
            tracks = {k: d for k, d in self._scan().items() if d.meta_mtime is not None}
            total = sum(d.size_bytes for d in tracks.values())
            evicted: list[str] = []
            for track_id, disk in sorted(tracks.items(), key=lambda kv: kv[1].meta_mtime or 0.0):
                if total <= self.max_bytes:
                    break
                if track_id == keep:
                    continue
                self._remove(disk.files)
                total -= disk.size_bytes
                evicted.append(track_id)
            if evicted:
                log.info("evicted %d track(s) to stay under %d bytes", len(evicted), self.max_bytes)
            if total > self.max_bytes:
                log.warning("the cache holds %d bytes, over its cap of %d", total, self.max_bytes)
            return evicted

    def remove_orphans(self, *, grace_sec: float = ORPHAN_GRACE_SEC) -> list[Path]:
        """Delete leftovers of interrupted runs (temp files, audio without sidecar, ...).

        Only files named after a track id are considered, and only when older than
        ``grace_sec``, so another daemon's generation in progress is left alone.
        """
        now = time.time()
        removed: list[Path] = []
        with self._lock:
            complete = {k for k, d in self._scan().items() if self._load(k) is not None}
            for path in self._owned_files():
                match = _TRACK_FILE_RE.fullmatch(path.name)
                if match and match["id"] in complete:
                    continue
                try:
                    if now - path.stat().st_mtime < grace_sec:
                        continue
                except OSError:
                    continue
                self._remove([path])
                removed.append(path)
        if removed:
            log.info("removed %d leftover file(s) from %s", len(removed), self.root)
        return removed

    def _owned_files(self) -> list[Path]:
        try:
            names = os.listdir(self.root)
        except OSError:
            return []
        return [
            self.root / name
            for name in names
            if _OWNED_PREFIX_RE.match(name) and (self.root / name).is_file()
        ]

    def _scan(self) -> dict[str, _DiskTrack]:
        """Group the regular track files by id, with their sizes."""
        tracks: dict[str, _DiskTrack] = {}
        try:
            scan = list(os.scandir(self.root))
        except OSError:
            return tracks
        for item in scan:
            match = _TRACK_FILE_RE.fullmatch(item.name)
            if match is None:
                continue
            try:
                stat = item.stat()
            except OSError:
                continue
            disk = tracks.setdefault(match["id"], _DiskTrack())
            disk.size_bytes += stat.st_size
            disk.files.append(Path(item.path))
            if match["ext"] == "json":
                disk.meta_mtime = stat.st_mtime
            else:
                disk.has_audio = True
        return tracks

    def _load(self, track_id: str) -> TrackEntry | None:
        meta_path = self.meta_path(track_id)
        try:
            meta_stat = meta_path.stat()
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("track_id") != track_id:
            return None
        name = meta.get("file")
        if not isinstance(name, str):
            return None
        match = _TRACK_FILE_RE.fullmatch(name)
        if match is None or match["id"] != track_id or match["ext"] == "json":
            return None
        audio = self.root / name
        try:
            audio_size = audio.stat().st_size
        except OSError:
            return None
        return TrackEntry(
            track_id=track_id,
            path=audio.resolve(),
            meta_path=meta_path,
            size_bytes=audio_size + meta_stat.st_size,
            last_used_at=meta_stat.st_mtime,
            metadata=meta,
        )

    def _place_audio(self, track_id: str, audio: Path) -> Path:
        """Make sure the audio is ``<root>/<track_id>.<ext>``, moving it there if needed."""
        ext = audio.suffix.lstrip(".")
        if ext not in FORMATS:
            raise LofiError(errors.OUTPUT_WRITE_FAILED, f"unexpected audio file {audio.name}")
        target = self.audio_path(track_id, ext)
        try:
            if audio.resolve() != target.resolve():
                os.replace(audio, target)
            target.stat()
        except OSError as exc:
            raise LofiError(
                errors.OUTPUT_WRITE_FAILED, f"cannot place the audio at {target}: {exc}"
            ) from exc
        return target

    @staticmethod
    def _cache_fields(track_id: str, audio: Path, result: GenerationResult) -> dict[str, Any]:
        """What the sidecar holds beyond :meth:`GenerationResult.sidecar`: the cache's own keys
        (``file`` is the name :meth:`_load` trusts, ``track_id`` ties the two files together)."""
        return {
            "schema": SIDECAR_SCHEMA,
            "track_id": track_id,
            "file": audio.name,
            "format": audio.suffix.lstrip("."),
            "prompt": result.params.prompt,
            "requested_duration_sec": result.params.duration_sec,
            "created_at": time.time(),
        }

    @staticmethod
    def _remove(paths: list[Path]) -> None:
        for path in paths:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot delete %s: %s", path, exc)
