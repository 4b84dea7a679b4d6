"""Tracks put in a real track cache for the service tests (library fills, the folder scan)."""

from __future__ import annotations

from typing import Any

import numpy as np
import soundfile as sf

from lofi_daemon.radio.joins import SAMPLE_RATE
from lofi_daemon.service.cache import TrackCache


def add_track(
    cache: TrackCache,
    track_id: str,
    seconds: float,
    *,
    rate: int = SAMPLE_RATE,
    station: str | None = None,
    prompt: str = "library tune",
) -> np.ndarray:
    """A cached float WAV of noise (a radio segment of ``station`` when given); its samples."""
    frames = round(seconds * rate)
    rng = np.random.default_rng(int(track_id[:6], 16))
    wave = (0.1 * rng.standard_normal((frames, 2))).astype(np.float32)
    incoming = cache.root / f"incoming-{track_id}.wav"
    sf.write(str(incoming), wave, rate, subtype="FLOAT")
    meta: dict[str, Any] = {
        "prompt": prompt,
        "task": "text2music",
        "seed": 1,
        "model_version": "fake-ace-step-1",
        "backend": "ace-step",
        "duration_sec": frames / rate,
        "sample_rate": rate,
        "channels": 2,
        "generation_time_sec": 1.0,
    }
    if station is not None:
        meta["radio"] = {"station_id": station, "index": 0, "gen_index": 0, "kind": "generated"}
    cache.add_file(track_id, incoming, meta)
    return wave
