"""The source of a ``generate`` request for repaint, extend, edit (``src_track_id``/``src_path``)
and audio2audio (``ref_track_id``/``ref_path``): checked when the request arrives, so bad input
fails in the reply, and turned into what the engine reads, what the track id hashes and what the
sidecar records.

A cached track is read from its saved latents (:mod:`lofi_daemon.service.latents`) so it is not
encoded again; without them (an older track, a damaged file) its audio file is the source.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model.manifest import sha256_file
from lofi_daemon.pipeline.params import SOURCE_TASKS
from lofi_daemon.service.cache import TrackCache
from lofi_daemon.service.latents import read_latents
from lofi_daemon.service.track_ids import SourceKey, is_track_id

if TYPE_CHECKING:  # it loads numpy and libsndfile: only when a source is given (serve starts light)
    from lofi_daemon.pipeline.source import SourceAudio

SOURCE_PARAMS: Final = ("src_track_id", "src_path", "ref_track_id", "ref_path")


class QueueView(Protocol):
    """What the source check asks the queue (:class:`~lofi_daemon.service.jobs.JobRunner`)."""

    def position(self, track_id: str) -> int | None: ...


@dataclass(frozen=True)
class ResolvedSource:
    """A checked source: the engine's :class:`SourceAudio`, the track id's :class:`SourceKey`,
    the sidecar's ``source`` record and the source's length in seconds."""

    audio: SourceAudio
    key: SourceKey
    record: dict[str, Any]
    duration_sec: float

    def verify(self) -> None:
        """Before the job runs: a ``*_path`` file must still be the one that was hashed.

        Raises:
            LofiError: INVALID_SOURCE when it changed or is gone.
        """
        path = self.audio.path
        if self.key.kind != "path" or path is None:
            return
        if file_sha256(path, self.audio.name) != self.key.sha256:
            raise LofiError(
                errors.INVALID_SOURCE,
                f"{self.audio.name} changed after the request; generate again to use the new file",
            )


def resolve_source(
    task: str, given: dict[str, Any], *, cache: TrackCache, queue: QueueView
) -> ResolvedSource | None:
    """The source named by ``given`` (the request's :data:`SOURCE_PARAMS`) for ``task``; None for
    the tasks without one.

    Raises:
        LofiError: INVALID_PARAMS for a source param the task does not take, or not exactly one
            of its two; INVALID_SOURCE for a path that is not a usable audio file;
            TRACK_NOT_FOUND for an unknown track; INVALID_PARAMETER for a track still queued or
            being generated.
    """
    names = sorted(given)
    if task not in SOURCE_TASKS:
        if names:
            raise LofiError(
                errors.INVALID_PARAMS,
                f"{names[0]} is for the tasks {', '.join(SOURCE_TASKS)}, not {task}",
            )
        return None
    prefix = "ref" if task == "audio2audio" else "src"
    wrong = [name for name in names if not name.startswith(f"{prefix}_")]
    if wrong:
        raise LofiError(
            errors.INVALID_PARAMS,
            f"{wrong[0]} is not a parameter of task {task}; give {prefix}_track_id or "
            f"{prefix}_path",
        )
    if len(names) != 1:
        raise LofiError(
            errors.INVALID_PARAMS,
            f"task {task} needs exactly one of {prefix}_track_id and {prefix}_path",
        )
    name = names[0]
    value = given[name]
    if not isinstance(value, str) or not value:
        raise LofiError(errors.INVALID_PARAMS, f"{name} must be a non-empty string")
    if name.endswith("_path"):
        return _from_path(name, value)
    return _from_track(name, value, cache, queue)


def _from_path(name: str, value: str) -> ResolvedSource:
    from lofi_daemon.pipeline.source import SourceAudio, check_audio_file

    path = Path(value).expanduser()
    if not path.is_absolute():
        raise LofiError(
            errors.INVALID_SOURCE,
            f"{name} must be an absolute path (the daemon's folder is not yours), got {value[:200]!r}",
        )
    seconds = check_audio_file(path)
    label = f"{name} {path}"
    digest = file_sha256(path, label)
    return ResolvedSource(
        audio=SourceAudio(path=path, label=label),
        key=SourceKey("path", digest),
        record={"kind": "path", "path": str(path), "sha256": digest},
        duration_sec=seconds,
    )


def _from_track(name: str, track_id: str, cache: TrackCache, queue: QueueView) -> ResolvedSource:
    from lofi_daemon.pipeline.source import SourceAudio

    if not is_track_id(track_id):
        raise LofiError(errors.INVALID_PARAMS, f"{name} is not a track id: {track_id[:64]!r}")
    if queue.position(track_id) is not None:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"track {track_id} is still being generated; ask again after generation_complete",
        )
    entry = cache.get(track_id)
    if entry is None:
        raise LofiError(errors.TRACK_NOT_FOUND, f"{name}: no cached track {track_id}")
    label = f"track {track_id}"
    duration = float(entry.metadata["duration_sec"])
    saved = read_latents(cache.latents_path(track_id))
    if saved is not None:
        latents, data = saved
        digest = hashlib.sha256(data).hexdigest()
        audio = SourceAudio(latents=latents, label=label)
        what = "latents"
    else:
        digest = file_sha256(entry.path, label)
        audio = SourceAudio(path=entry.path, label=label)
        what = "audio"
    return ResolvedSource(
        audio=audio,
        key=SourceKey("track", digest, ref=track_id),
        record={"kind": "track", "track_id": track_id, "sha256": digest, "from": what},
        duration_sec=duration,
    )


def file_sha256(path: Path, label: str) -> str:
    try:
        return sha256_file(path)
    except OSError as exc:
        raise LofiError(
            errors.INVALID_SOURCE, f"{label}: cannot be read ({exc.strerror or exc})"
        ) from exc
