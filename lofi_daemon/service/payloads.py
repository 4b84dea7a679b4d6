"""The params of the generation notifications, one builder per message.

docs/protocol.md ("Notifications") lists every field; these functions are the only place that
shapes them, so the document and the daemon cannot drift apart one message at a time.
"""

from __future__ import annotations

from typing import Any, Protocol

from lofi_daemon.errors import LofiError
from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.service.cache import TrackEntry


class ProgressLike(Protocol):
    """What the engine reports after each work unit (its frozen ``Progress`` record)."""

    @property
    def phase(self) -> str: ...

    @property
    def step(self) -> int: ...

    @property
    def total(self) -> int: ...

    @property
    def percent(self) -> float: ...

    @property
    def eta_sec(self) -> float | None: ...


def start_payload(track_id: str, params: GenerationParams) -> dict[str, Any]:
    """``generation_start``."""
    return {
        "track_id": track_id,
        "prompt": params.prompt,
        "duration_sec": params.duration_sec,
        "seed": params.seed,
        "infer_steps": params.diffusion_steps,
        "task": params.task,
        "backend": params.backend,
    }


def progress_payload(track_id: str, progress: ProgressLike, percent: float) -> dict[str, Any]:
    """``generation_progress`` for an engine report; ``percent`` is the report's, clamped."""
    eta = progress.eta_sec
    return {
        "track_id": track_id,
        "percent": round(percent, 1),
        "step": int(progress.step),
        "total_steps": int(progress.total),
        "phase": progress.phase,
        "eta_sec": None if eta is None else round(float(eta), 1),
    }


def final_progress_payload(track_id: str, last: dict[str, Any] | None) -> dict[str, Any]:
    """The one 100 % ``generation_progress``, sent once the track is in the cache.

    ``last`` is the job's latest progress payload (None when the engine never reported).
    """
    last = last or {"step": 1, "total_steps": 1}
    total = last["total_steps"] or last["step"]
    return {
        "track_id": track_id,
        "percent": 100.0,
        "step": total,
        "total_steps": total,
        "phase": "decode",
        "eta_sec": 0.0,
    }


def complete_payload(entry: TrackEntry, *, cached: bool) -> dict[str, Any]:
    """``generation_complete`` for a track in the cache (just made, or a cache hit)."""
    info = entry.to_json()
    return {
        "track_id": entry.track_id,
        "path": info["path"],
        "duration_sec": info["duration_sec"],
        "sample_rate": info["sample_rate"],
        "channels": info["channels"],
        "format": info["format"],
        "prompt": info["prompt"],
        "seed": info["seed"],
        "generation_time_sec": info["generation_time_sec"],
        "model_version": info["model_version"],
        "backend": info["backend"],
        "task": info["task"],
        "cached": cached,
    }


def error_payload(track_id: str, error: LofiError) -> dict[str, Any]:
    """``generation_error``: the error's code, name, message and remedy."""
    return {
        "track_id": track_id,
        "code": error.code,
        "name": error.name,
        "message": error.message,
        "remedy": error.remedy,
    }


def cancelled_payload(track_id: str, step: int | None = None) -> dict[str, Any]:
    """``generation_cancelled``; ``step`` (the last step reported) once the job had started."""
    payload: dict[str, Any] = {"track_id": track_id}
    if step is not None:
        payload["step"] = step
    return payload
