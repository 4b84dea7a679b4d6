"""The radio over a real ``lofi-daemon serve`` process with the tiny models: three continued
segments whose files join without a seam, and the station stopped by ``shutdown``."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from daemon_doubles import DaemonProcess, RpcClient
from radio.continuity import join_problems

RADIO: dict[str, Any] = {
    "prompt": "lofi piano",
    "seed": 3,
    "segment_sec": 5,
    "context_sec": 5,
    "crossfade_sec": 0.5,
    "infer_steps": 4,
}


def segments(client: RpcClient, station_id: str, count: int, timeout: float) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = [
            m["params"]
            for m in list(client.messages)
            if m.get("method") == "radio_segment" and m["params"]["station_id"] == station_id
        ]
        if len(found) >= count:
            return found[:count]
        assert time.monotonic() < deadline, client.messages[-3:]
        time.sleep(0.05)


def wave(path: str) -> np.ndarray:
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    assert rate == 48000 and data.shape[1] == 2
    return data


@pytest.mark.slow
def test_serve_runs_a_station_with_seamless_joins(tiny_models: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    args = ["--models", str(tiny_models), "--cache-dir", str(cache), "--threads", "1"]
    daemon = DaemonProcess(args, stderr_path=tmp_path / "stderr.txt")
    try:
        client = daemon.client
        started = client.result("radio.start", RADIO, timeout=30)
        station_id = started["station_id"]
        assert started["config"]["segment_sec"] == 5
        first = segments(client, station_id, 1, timeout=60)
        position = {"station_id": station_id, "index": 0, "position_sec": 0.0, "paused": False}
        assert client.result("radio.position", position)["buffer_ahead_sec"] > 0
        found = segments(client, station_id, 3, timeout=90)
        assert found[0] == first[0]
        assert [s["kind"] for s in found] == ["generated"] * 3, daemon.stderr()
        for a, b in itertools.pairwise(found):
            problems = join_problems(wave(a["path"]), wave(b["path"]))
            assert not problems, (a["index"], problems)
        status = client.result("radio.status")
        assert status["station_id"] == station_id and status["segments"] >= 3
        assert client.result("shutdown") == {"status": "shutting_down"}
        assert daemon.wait(60) == 0
        stopped = [m["params"] for m in client.messages if m.get("method") == "radio_stopped"]
        assert stopped == [{"station_id": station_id, "reason": "shutdown"}]
        assert not list(cache.glob("*.wav")), "the engine's WAV output is never kept"
    finally:
        daemon.kill()
