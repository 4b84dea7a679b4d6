"""Hostile cache entries for the cache tests and the daemon fuzz: broken sidecars, symlinks and
foreign files planted beside real tracks (issue 10, items 15, 16, 20 and 21)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from daemon_doubles import FakeEngine

from lofi_daemon.fsutil import temp_path
from lofi_daemon.paths import BACKEND
from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.service.cache import TrackCache
from lofi_daemon.service.track_ids import track_id_for

# What a client sends (``generate`` params without the seed); the tracks planted here are the ones
# a daemon with the fake engine would make for these params.
GENERATE: Final = {"prompt": "lofi beat", "duration_sec": 5, "infer_steps": 2}
BASE: Final = GenerationParams.from_dict({**GENERATE, "seed": 7})
OLD: Final = 3600.0  # seconds: older than the sweep's grace period

Meta = dict[str, Any]


def params_for(seed: int) -> GenerationParams:
    return dataclasses.replace(BASE, seed=seed)


def id_for(seed: int, *, model_version: str = FakeEngine.version) -> str:
    """The track id the daemon (fake engine, default backend) gives ``params_for(seed)``."""
    return track_id_for(params_for(seed), model_version=model_version, backend=BACKEND)


def add_track(cache: TrackCache, seed: int) -> str:
    """A real track, as the daemon would store it for ``params_for(seed)``."""
    track_id = id_for(seed)
    params = params_for(seed)
    result = FakeEngine().generate(params, cache.audio_path(track_id, params.format))
    cache.add(track_id, result, backend=BACKEND, generation_time_sec=0.5)
    return track_id


def age(path: Path, seconds: float = OLD) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp), follow_symlinks=False)


def _dumps(meta: Meta) -> bytes:
    return json.dumps(meta).encode("utf-8")  # NaN/Infinity allowed on purpose


def _with(**changes: Any) -> Callable[[Meta], bytes]:
    return lambda meta: _dumps({**meta, **changes})


def _replace_value(key: str, literal: str) -> Callable[[Meta], bytes]:
    def build(meta: Meta) -> bytes:
        return _dumps({**meta, key: "@@"}).replace(b'"@@"', literal.encode())

    return build


# Broken sidecar contents, by name: each turns a valid sidecar into one that must be skipped.
BAD_SIDECARS: Final[dict[str, Callable[[Meta], bytes]]] = {
    "nested": lambda meta: b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "nested-field": lambda meta: (
        _dumps(meta)[:-1] + b', "deep": ' + b"[" * 60_000 + b"]" * 60_000 + b"}"
    ),
    "truncated": lambda meta: _dumps(meta)[: len(_dumps(meta)) // 2],
    "empty": lambda meta: b"",
    "nan-duration": _with(duration_sec=float("nan")),
    "infinite-time": _with(generation_time_sec=float("inf")),
    "minus-infinity-created": _with(created_at=float("-inf")),
    "nan-in-timings": _with(timings={"total": float("nan")}),
    "overflowing-float": _replace_value("duration_sec", "1e999"),
    "string-duration": _with(duration_sec="30"),
    "string-seed": _with(seed="7"),
    "bool-seed": _with(seed=True),
    "negative-seed": _with(seed=-1),
    "huge-seed": _with(seed=2**80),
    "float-channels": _with(channels=2.5),
    "zero-sample-rate": _with(sample_rate=0),
    "number-prompt": _with(prompt=5),
    "null-model-version": _with(model_version=None),
    "list-backend": _with(backend=["ace-step"]),
    "foreign-format": _with(format="mp3"),
    "file-elsewhere": _with(file="../secret.wav"),
    "another-track-id": _with(track_id="f" * 24),
    "a-list": lambda meta: b"[]",
    "a-string": lambda meta: b'"track"',
    "null": lambda meta: b"null",
    "huge": _with(padding="x" * (2 * 1024 * 1024)),
    "not-utf8": lambda meta: b'{"prompt": "\xff\xfe"}',
}


def plant_bad_sidecar(cache: TrackCache, track_id: str, kind: str) -> bytes:
    """Overwrite the sidecar of a real track with ``BAD_SIDECARS[kind]``; returns the bytes."""
    meta = json.loads(cache.meta_path(track_id).read_text(encoding="utf-8"))
    data = BAD_SIDECARS[kind](meta)
    cache.meta_path(track_id).write_bytes(data)
    return data


def plant_symlinked_audio(cache: TrackCache, track_id: str, outside: Path) -> None:
    """Move a real track's audio outside the cache and leave a symlink to it in its place."""
    audio = cache.audio_path(track_id, "wav")
    os.replace(audio, outside)
    audio.symlink_to(outside)


def plant_symlinked_sidecar(cache: TrackCache, track_id: str, outside: Path) -> None:
    """Move a real track's sidecar outside the cache and leave a symlink to it in its place."""
    meta = cache.meta_path(track_id)
    os.replace(meta, outside)
    meta.symlink_to(outside)


def foreign_names(track_id: str) -> list[str]:
    """Names that look like the cache's but are not exactly its own files."""
    return [
        f"{track_id}-notes.md",
        f"{track_id} (copy).wav",
        f"{track_id}.wav.bak",
        f"{track_id}.mp3",
        f"{track_id.upper()}.wav",
        f".{track_id}.wav.part",
        f".{track_id}.json.{'a' * 31}.tmp",
        f".{track_id}.json.{'a' * 32}.tmp.keep",
        f".{track_id}.json.{'A' * 32}.tmp",
        f"{track_id}.json~",
        "my-song.wav",
        "notes.json",
    ]


def own_temp_name(track_id: str, ext: str = "json") -> str:
    """A name exactly like the temporary files the cache writes (lofi_daemon.fsutil)."""
    return temp_path(Path(f"{track_id}.{ext}")).name


# Every way a planted entry can be hostile: a bad sidecar (by BAD_SIDECARS name) or one of these.
ODD_ENTRIES: Final = (
    "audio-symlink",
    "sidecar-symlink",
    "dangling-audio-symlink",
    "sidecar-fifo",
    "sidecar-folder",
    "audio-folder",
)
HOSTILE_KINDS: Final = (*sorted(BAD_SIDECARS), *ODD_ENTRIES)


def plant_hostile(cache: TrackCache, seed: int, kind: str, outside: Path) -> list[Path]:
    """Plant a hostile entry for ``params_for(seed)`` (``kind`` from :data:`HOSTILE_KINDS`);
    symlink targets go into the folder ``outside``. Returns the paths that must survive a daemon
    that does not regenerate the track (link targets included)."""
    track_id = add_track(cache, seed)
    audio, meta = cache.audio_path(track_id, "wav"), cache.meta_path(track_id)
    if kind in BAD_SIDECARS:
        plant_bad_sidecar(cache, track_id, kind)
        return [audio, meta]
    target = outside / f"{kind}-{track_id}"
    if kind == "audio-symlink":
        plant_symlinked_audio(cache, track_id, target)
        return [audio, meta, target]
    if kind == "sidecar-symlink":
        plant_symlinked_sidecar(cache, track_id, target)
        return [audio, meta, target]
    if kind == "dangling-audio-symlink":
        audio.unlink()
        audio.symlink_to(target)
        return [audio, meta]
    if kind == "sidecar-fifo":
        meta.unlink()
        os.mkfifo(meta)
        return [audio, meta]
    if kind == "sidecar-folder":
        meta.unlink()
        meta.mkdir()
        return [audio, meta]
    if kind == "audio-folder":
        audio.unlink()
        audio.mkdir()
        return [audio, meta]
    raise ValueError(kind)
