"""The persistent track cache: one audio file plus one JSON sidecar per track.

Layout (flat, under the cache directory)::

    <track_id>.<wav|flac|ogg>   the audio
    <track_id>.json             the metadata sidecar (every parameter, seed, model version, ...)
    <track_id>.latents.npy      the final latents, the start of a later repaint/extend/edit
                                (:mod:`lofi_daemon.service.latents`; tracks may lack it)
    <track_id>.tail.npy         a radio segment's held-back tail (the next segment's crossfade
                                starts from it; :mod:`lofi_daemon.service.radio_render`)

Track ids (the file names) are defined in :mod:`lofi_daemon.service.track_ids`.

The cache is the only writer of a track's sidecar: the engine writes the audio and returns a
:class:`~lofi_daemon.pipeline.engine.GenerationResult`; :meth:`TrackCache.add` merges that
result's own description (:meth:`~lofi_daemon.pipeline.engine.GenerationResult.sidecar`) with
what only the cache knows (track id, file name, backend, timing) and writes the file once.

The directory is the only source of truth (there is no in-memory index), so the cache survives
restarts and several daemons may share it. "Last used" is the sidecar's modification time: a
cache hit touches it. When the total size passes the cap, the least recently used tracks are
deleted from disk, except pinned tracks (``"pinned": true`` in the sidecar, :meth:`TrackCache.pin`)
and held ones (:meth:`TrackCache.hold`: an in-memory set of this process, e.g. the radio
station's segments not yet played; another daemon sharing the folder does not see it).

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
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.fsutil import write_json_atomic
from lofi_daemon.pipeline.params import FORMATS
from lofi_daemon.service import cache_scan
from lofi_daemon.service.cache_scan import TAIL_SUFFIX
from lofi_daemon.service.latents import LATENTS_SUFFIX, keep_latents
from lofi_daemon.service.sidecar import BadSidecar, TrackEntry, read_sidecar
from lofi_daemon.service.track_ids import is_track_id

if TYPE_CHECKING:  # the engine module loads ONNX Runtime; the cache only reads its result
    from lofi_daemon.pipeline.engine import GenerationResult

log = logging.getLogger(__name__)

SIDECAR_SCHEMA: Final = 1
DEFAULT_MAX_BYTES: Final = 2 * 1024**3
ORPHAN_GRACE_SEC: Final = 600.0


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
        self._held: dict[str, int] = {}  # track id -> hold count (this process only)
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

    def tail_path(self, track_id: str) -> Path:
        return self.root / f"{track_id}{TAIL_SUFFIX}"

    def hold(self, track_ids: Iterable[str]) -> None:
        """Keep ``track_ids`` from eviction until as many :meth:`release` calls (this process
        only: another daemon sharing the folder may still evict them)."""
        with self._lock:
            for track_id in track_ids:
                self._held[track_id] = self._held.get(track_id, 0) + 1

    def release(self, track_ids: Iterable[str]) -> None:
        """Undo one :meth:`hold` of each id."""
        with self._lock:
            for track_id in track_ids:
                count = self._held.get(track_id, 0) - 1
                if count > 0:
                    self._held[track_id] = count
                else:
                    self._held.pop(track_id, None)

    def held(self) -> set[str]:
        with self._lock:
            return set(self._held)

    def pin(self, track_id: str, pinned: bool = True) -> TrackEntry | None:
        """Set (or clear) the track's ``"pinned"`` flag in its sidecar: eviction never removes a
        pinned track. None when the track is not in the cache.

        Raises:
            LofiError: OUTPUT_WRITE_FAILED when the sidecar cannot be rewritten.
        """
        with self._lock:
            entry = self._load(track_id) if is_track_id(track_id) else None
            if entry is None:
                return None
            meta = {k: v for k, v in entry.metadata.items() if k != "pinned"}
            if pinned:
                meta["pinned"] = True
            try:
                write_json_atomic(entry.meta_path, meta)
            except (OSError, ValueError) as exc:
                raise LofiError(
                    errors.OUTPUT_WRITE_FAILED, f"cannot write {entry.meta_path}: {exc}"
                ) from exc
            return self._load(track_id)

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
        extra: Mapping[str, Any] | None = None,
    ) -> TrackEntry:
        """Record a finished generation: write its latents (when the result has them), then its
        sidecar (the result's own description plus the cache's fields, see
        :meth:`_cache_fields`; ``source``, what the task started from; the LoRA ``variant``;
        ``extra`` fields, e.g. a radio segment's ``"radio"`` record), then evict to the cap.

        Raises:
            LofiError: OUTPUT_WRITE_FAILED when the files cannot be placed or written.
        """
        with self._lock:
            audio = self._place_audio(track_id, Path(result.path))
            latents = keep_latents(self.latents_path(track_id), getattr(result, "latents", None))
            params = result.params
            meta = {
                **result.sidecar(),
                **self._cache_fields(track_id, audio, params.prompt, params.task),
                "requested_duration_sec": params.duration_sec,
                "backend": backend,
                "generation_time_sec": round(generation_time_sec, 3),
            }
            if source is not None:
                meta["source"] = source
            if variant is not None:
                meta["variant"] = variant
            meta.update(extra or {})
            return self._commit(track_id, meta, [latents] if latents is not None else [])

    def add_file(self, track_id: str, audio: Path, meta: Mapping[str, Any]) -> TrackEntry:
        """Record an audio file that is no generation (a radio library excerpt): ``meta`` holds
        the public fields (prompt, task, seed, model_version, backend, duration_sec,
        sample_rate, channels, generation_time_sec); the cache adds its own, then evicts.

        Raises:
            LofiError: OUTPUT_WRITE_FAILED when the files cannot be placed or written.
        """
        with self._lock:
            placed = self._place_audio(track_id, audio)
            fields = self._cache_fields(track_id, placed, meta["prompt"], meta["task"])
            return self._commit(track_id, {**meta, **fields}, [])

    def _commit(self, track_id: str, meta: dict[str, Any], written: list[Path]) -> TrackEntry:
        """Write the sidecar (the track exists from then on), then evict to the cap."""
        meta_path = self.meta_path(track_id)
        try:
            write_json_atomic(meta_path, meta)
        except (OSError, ValueError) as exc:
            self._remove(written)
            raise LofiError(errors.OUTPUT_WRITE_FAILED, f"cannot write {meta_path}: {exc}") from exc
        entry = self._load(track_id)
        if entry is None:
            raise LofiError(errors.OUTPUT_WRITE_FAILED, f"track {track_id} vanished after writing")
        self.evict(keep=track_id)
        return entry

    def evict(self, *, keep: str | None = None) -> list[str]:
        """Delete least recently used tracks until the total fits ``max_bytes``.

        ``keep`` (the track just added), pinned and held tracks are never evicted, even when
        they alone are over the cap. Returns the evicted track ids.
        """
        with self._lock:
            entries = self.entries()
            spared = {keep, *self._held}
            total = sum(entry.size_bytes for entry in entries)
            evicted: list[str] = []
            for entry in reversed(entries):  # least recently used first
                if total <= self.max_bytes:
                    break
                if entry.track_id in spared or entry.metadata.get("pinned") is True:
                    continue
                files = [entry.meta_path, self.root / entry.metadata["file"]]
                tid = entry.track_id
                self._remove([*files, self.latents_path(tid), self.tail_path(tid)])
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
        * the audio (latents, tail) of a track that has no sidecar (stopped between the writes);
        * a valid sidecar whose audio is gone (a half-deleted track).

        Any other name, a symlink, and the files of a track whose sidecar cannot be read are
        left alone (:func:`lofi_daemon.service.cache_scan.leftovers`).
        """
        cutoff = time.time() - grace_sec
        with self._lock:
            found = [
                p for p, mtime in cache_scan.leftovers(self.root, self._skip) if mtime <= cutoff
            ]
            self._remove(found)
        if found:
            log.info("removed %d leftover file(s) from %s", len(found), self.root)
        return found

    def _scan(self) -> dict[str, cache_scan.DiskTrack]:
        return cache_scan.scan(self.root, self._skip)

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
            size_bytes=audio_stat.st_size
            + meta_stat.st_size
            + cache_scan.regular_size(self.latents_path(track_id))
            + cache_scan.regular_size(self.tail_path(track_id)),
            last_used_at=meta_stat.st_mtime,
            metadata=meta,
        )

    def _is_track_file(self, path: Path, track_id: str) -> bool:
        named = cache_scan.track_name(path.name)
        if named is None or named[0] != track_id:
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
    def _cache_fields(track_id: str, audio: Path, prompt: str, task: str) -> dict[str, Any]:
        """What the sidecar holds beyond :meth:`GenerationResult.sidecar`: the cache's own keys
        (``file`` is the name :meth:`_load` trusts, ``track_id`` ties the two files together)."""
        return {
            "schema": SIDECAR_SCHEMA,
            "track_id": track_id,
            "file": audio.name,
            "format": audio.suffix.lstrip("."),
            "prompt": prompt,
            "task": task,
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
