"""The persistent track cache: one audio file plus one JSON sidecar per track.

Layout (flat, under the cache directory)::

    <track_id>.<wav|flac|ogg>   the audio
    <track_id>.json             the metadata sidecar (every parameter, seed, model version, ...)
    <track_id>.latents.npy      the final latents, the start of a later repaint/extend/edit
                                (:mod:`lofi_daemon.service.latents`; tracks may lack it)

Track ids (the file names) are defined in :mod:`lofi_daemon.service.track_ids`.

The cache is the only writer of a track's sidecar: the engine writes the audio and returns a
:class:`~lofi_daemon.pipeline.engine.GenerationResult`; :meth:`TrackCache.add` merges that
result's own description (:meth:`~lofi_daemon.pipeline.engine.GenerationResult.sidecar`) with
what only the cache knows (track id, file name, backend, timing) and writes the file once.

The directory is the only source of truth (there is no in-memory index), so the cache survives
restarts and several daemons may share it. "Last used" is the sidecar's modification time: a
cache hit touches it. When the total size passes the cap, the least recently used tracks are
deleted from disk.

The folder is shared and so never trusted: sidecars are read by
:func:`lofi_daemon.service.sidecar.read_sidecar`, symlinks are never entries, only exact names
are ever deleted, and a failed generation removes only the files it created
(:meth:`TrackCache.discard`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.fsutil import temp_target, write_json_atomic
from lofi_daemon.pipeline.params import FORMATS
from lofi_daemon.service.latents import LATENTS_SUFFIX, keep_latents
from lofi_daemon.service.sidecar import TRACK_FILE_RE, BadSidecar, TrackEntry, read_sidecar
from lofi_daemon.service.track_ids import is_track_id

if TYPE_CHECKING:  # the engine module loads ONNX Runtime; the cache only reads its result
    from lofi_daemon.pipeline.engine import GenerationResult

log = logging.getLogger(__name__)

SIDECAR_SCHEMA: Final = 1
DEFAULT_MAX_BYTES: Final = 2 * 1024**3
ORPHAN_GRACE_SEC: Final = 600.0


@dataclass
class _DiskTrack:
    """The regular files named exactly after one track id (a symlink is never one of ours)."""

    files: dict[Path, float] = dataclasses.field(default_factory=dict)  # path -> mtime
    has_meta: bool = False


class TrackCache:
    """Tracks on disk under ``root``, capped at ``max_bytes`` by LRU eviction.

    All methods are thread-safe within one process; across processes every operation tolerates
    files disappearing underneath it. Entries that are not ours or cannot be trusted (a symlink
    for the audio or the sidecar, a sidecar that is not valid metadata, see
    :mod:`lofi_daemon.service.sidecar`) are skipped (logged once), never listed, never deleted by
    the sweep or the eviction.
    """

    def __init__(self, root: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self.root = Path(root).expanduser()
        self.max_bytes = max_bytes
        self._lock = threading.RLock()
        self._skipped: set[tuple[str, str]] = set()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._real_root = self.root.resolve()
        except (OSError, RuntimeError) as exc:
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

    def latents_path(self, track_id: str) -> Path:
        return self.root / f"{track_id}{LATENTS_SUFFIX}"

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
                entry = self._load(track_id) if disk.has_meta else None
                if entry is not None:
                    entries.append(entry)
        entries.sort(key=lambda e: e.last_used_at, reverse=True)
        return entries

    def total_bytes(self) -> int:
        """The size of the complete tracks (what the cap applies to)."""
        return sum(entry.size_bytes for entry in self.entries())

    def delete(self, track_id: str) -> bool:
        """Delete the regular files named after a track; False when there were none."""
        if not is_track_id(track_id):
            return False
        with self._lock:
            disk = self._scan().get(track_id)
            if disk is None:
                return False
            self._remove(list(disk.files))
            log.info("deleted track %s", track_id)
            return True

    def discard(self, track_id: str, created: Iterable[Path] = ()) -> None:
        """Remove what a failed or cancelled generation of ``track_id`` created: only the paths
        in ``created`` that are this track's files, and nothing at all once the track is
        complete (another daemon sharing the folder may have finished it meanwhile)."""
        if not is_track_id(track_id):
            return
        with self._lock:
            if self._load(track_id) is not None:
                log.info("kept %s: the track is complete in the cache", track_id)
                return
            ours = [Path(p) for p in created if self._is_track_file(Path(p), track_id)]
            self._remove(ours)

    def add(
        self,
        track_id: str,
        result: GenerationResult,
        *,
        backend: str,
        generation_time_sec: float,
        source: dict[str, Any] | None = None,
        variant: str | None = None,
    ) -> TrackEntry:
        """Record a finished generation: write its latents (when the result has them), then its
        sidecar (the result's own description plus the cache's fields, see
        :meth:`_cache_fields`; ``source``, what the task started from; the LoRA ``variant``),
        then evict to the cap.

        Raises:
            LofiError: OUTPUT_WRITE_FAILED when the files cannot be placed or written.
        """
        with self._lock:
            audio = self._place_audio(track_id, Path(result.path))
            latents = keep_latents(self.latents_path(track_id), getattr(result, "latents", None))
            meta = {
                **result.sidecar(),
                **self._cache_fields(track_id, audio, result),
                "backend": backend,
                "generation_time_sec": round(generation_time_sec, 3),
            }
            if source is not None:
                meta["source"] = source
            if variant is not None:
                meta["variant"] = variant
            meta_path = self.meta_path(track_id)
            try:
                write_json_atomic(meta_path, meta)
            except (OSError, ValueError) as exc:
                self._remove([latents] if latents is not None else [])
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
            entries = self.entries()
            total = sum(entry.size_bytes for entry in entries)
            evicted: list[str] = []
            for entry in reversed(entries):  # least recently used first
                if total <= self.max_bytes:
                    break
                if entry.track_id == keep:
                    continue
                files = [entry.meta_path, self.root / entry.metadata["file"]]
                self._remove([*files, self.latents_path(entry.track_id)])
                total -= entry.size_bytes
                evicted.append(entry.track_id)
            if evicted:
                log.info("evicted %d track(s) to stay under %d bytes", len(evicted), self.max_bytes)
            if total > self.max_bytes:
                log.warning("the cache holds %d bytes, over its cap of %d", total, self.max_bytes)
            return evicted

    def remove_orphans(self, *, grace_sec: float = ORPHAN_GRACE_SEC) -> list[Path]:
        """Delete what interrupted runs left behind, once older than ``grace_sec`` (so another
        daemon's generation in progress is left alone). Matched exactly, and regular files only:

        * our temporary files (:func:`lofi_daemon.fsutil.temp_path` of a track file name);
        * the audio of a track that has no sidecar (stopped between the two writes);
        * a valid sidecar whose audio is gone (a half-deleted track).

        Any other name, a symlink, and the files of a track whose sidecar cannot be read are
        left alone.
        """
        cutoff = time.time() - grace_sec
        with self._lock:
            leftovers = [p for p, mtime in self._leftovers() if mtime <= cutoff]
            self._remove(leftovers)
        if leftovers:
            log.info("removed %d leftover file(s) from %s", len(leftovers), self.root)
        return leftovers

    def _leftovers(self) -> list[tuple[Path, float]]:
        found = [*self._temp_files()]
        for track_id, disk in self._scan().items():
            meta_path = self.meta_path(track_id)
            if not disk.has_meta:
                if not os.path.lexists(meta_path):  # a symlinked sidecar is not ours to judge
                    found.extend(disk.files.items())
                continue
            try:
                meta, _ = read_sidecar(meta_path, track_id)
            except FileNotFoundError:
                continue
            except BadSidecar as exc:
                self._skip(meta_path, str(exc))
                continue
            if not os.path.lexists(self.root / meta["file"]):
                found.append((meta_path, disk.files[meta_path]))
                latents = self.latents_path(track_id)
                if latents in disk.files:
                    found.append((latents, disk.files[latents]))
        return found

    def _temp_files(self) -> list[tuple[Path, float]]:
        found: list[tuple[Path, float]] = []
        for item in self._listing():
            target = temp_target(item.name)
            if target is None or TRACK_FILE_RE.fullmatch(target) is None:
                continue
            info = self._regular_stat(item)
            if info is not None:
                found.append((Path(item.path), info.st_mtime))
        return found

    def _listing(self) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(self.root) as scan:
                return list(scan)
        except OSError:
            return []

    def _regular_stat(self, item: os.DirEntry[str]) -> os.stat_result | None:
        try:
            info = item.stat(follow_symlinks=False)
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            self._skip(Path(item.path), "is not a regular file (a symlink?)")
            return None
        return info

    def _scan(self) -> dict[str, _DiskTrack]:
        """Group the regular files named exactly ``<track_id>.<ext>`` by id."""
        tracks: dict[str, _DiskTrack] = {}
        for item in self._listing():
            match = TRACK_FILE_RE.fullmatch(item.name)
            if match is None:
                continue
            info = self._regular_stat(item)
            if info is None:
                continue
            disk = tracks.setdefault(match["id"], _DiskTrack())
            disk.files[Path(item.path)] = info.st_mtime
            disk.has_meta = disk.has_meta or match["ext"] == "json"
        return tracks

    def _load(self, track_id: str) -> TrackEntry | None:
        meta_path = self.meta_path(track_id)
        try:
            meta, meta_stat = read_sidecar(meta_path, track_id)
        except FileNotFoundError:
            return None
        except BadSidecar as exc:
            self._skip(meta_path, str(exc))
            return None
        name = meta["file"]
        try:
            audio_stat = os.lstat(self.root / name)
        except OSError:
            return None
        if not stat.S_ISREG(audio_stat.st_mode):
            self._skip(self.root / name, "is not a regular file (a symlink?)")
            return None
        return TrackEntry(
            track_id=track_id,
            path=self._real_root / name,
            meta_path=meta_path,
            size_bytes=audio_stat.st_size + meta_stat.st_size + self._latents_size(track_id),
            last_used_at=meta_stat.st_mtime,
            metadata=meta,
        )

    def _latents_size(self, track_id: str) -> int:
        """The size of the track's latents file (0 when absent or not a regular file)."""
        try:
            info = os.lstat(self.latents_path(track_id))
        except OSError:
            return 0
        return info.st_size if stat.S_ISREG(info.st_mode) else 0

    def _is_track_file(self, path: Path, track_id: str) -> bool:
        match = TRACK_FILE_RE.fullmatch(path.name)
        if match is None or match["id"] != track_id:
            return False
        try:
            return path.parent.resolve() == self._real_root and stat.S_ISREG(os.lstat(path).st_mode)
        except (OSError, RuntimeError):
            return False

    def _skip(self, path: Path, reason: str) -> None:
        """Log once per file and reason that an entry is skipped."""
        key = (path.name, reason)
        if key not in self._skipped:
            self._skipped.add(key)
            log.warning("skipping %s in the track cache: it %s", path, reason)

    def _place_audio(self, track_id: str, audio: Path) -> Path:
        """Make sure the audio is ``<root>/<track_id>.<ext>``, moving it there if needed."""
        ext = audio.suffix.lstrip(".")
        if ext not in FORMATS:
            raise LofiError(errors.OUTPUT_WRITE_FAILED, f"unexpected audio file {audio.name}")
        target = self.audio_path(track_id, ext)
        try:
            if audio.name != target.name or audio.parent.resolve() != self._real_root:
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
            "task": result.params.task,
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
