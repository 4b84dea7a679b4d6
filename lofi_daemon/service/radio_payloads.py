"""The params of the radio notifications, one builder per message (docs/protocol.md, "Radio"
notifications), so the document and the daemon cannot drift apart one message at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def segment_payload(station_id: str, ahead_sec: float, segment: dict[str, Any]) -> dict[str, Any]:
    """``radio_segment``: the station, the buffer ahead and the segment (``Segment.to_json``)."""
    return {"station_id": station_id, "buffer_ahead_sec": round(ahead_sec, 3), **segment}


def starved_payload(
    station_id: str, ahead_sec: float, rtf: float | None, fill_track_id: str | None
) -> dict[str, Any]:
    """``radio_starved``: ``fill_track_id`` is the library segment inserted, or None."""
    what = "filling from the library" if fill_track_id else "no cached track to fill with"
    return {
        "station_id": station_id,
        "buffer_ahead_sec": round(ahead_sec, 3),
        "rtf": None if rtf is None else round(rtf, 3),
        "fill_track_id": fill_track_id,
        "message": f"generation is slower than playback; {what}",
    }


def stopped_payload(station_id: str, reason: str, message: str | None = None) -> dict[str, Any]:
    """``radio_stopped``: ``message`` only when there is one (a failure's)."""
    payload: dict[str, Any] = {"station_id": station_id, "reason": reason}
    if message is not None:
        payload["message"] = message
    return payload


def saved_payload(
    station_id: str,
    path: Path,
    duration_sec: float,
    segments: int,
    first_index: int,
    missing: int,
) -> dict[str, Any]:
    """``radio_saved``: the file written, its length, the segments in it (from ``first_index``
    on) and how many earlier segments had left the cache."""
    return {
        "station_id": station_id,
        "path": str(path),
        "duration_sec": round(duration_sec, 3),
        "segments": segments,
        "first_index": first_index,
        "missing": missing,
    }


def save_failed_payload(station_id: str, path: Path, code: int, message: str) -> dict[str, Any]:
    """``radio_save_failed``: the error's code and message; nothing was written."""
    return {"station_id": station_id, "path": str(path), "code": code, "message": message}
