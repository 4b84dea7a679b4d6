"""A client-side view of a radio station in the in-process daemon, shared by the radio
service tests (tests/service/test_radio.py, test_radio_save_daemon.py)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from daemon_doubles import RpcClient
from radio.continuity import join_problems

RADIO: dict[str, Any] = {
    "prompt": "rainy lofi, soft piano",
    "seed": 7,
    "segment_sec": 5,
    "context_sec": 5,
    "crossfade_sec": 0.5,
    "infer_steps": 4,
}
CONTEXT_FRAMES = int(5 * 44100 / 4096)


def notes(client: RpcClient, method: str, station_id: str | None = None) -> list[dict[str, Any]]:
    return [
        m["params"]
        for m in list(client.messages)
        if m.get("method") == method
        and (station_id is None or m["params"].get("station_id") == station_id)
    ]


def wait_segments(client: RpcClient, station_id: str, count: int, timeout: float = 20.0) -> list:
    deadline = time.monotonic() + timeout
    while True:
        found = notes(client, "radio_segment", station_id)
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{len(found)} segments; {client.messages[-3:]}"
        time.sleep(0.02)


def start(client: RpcClient, **overrides: Any) -> str:
    station_id: str = client.result("radio.start", {**RADIO, **overrides})["station_id"]
    return station_id


def play(client: RpcClient, station_id: str, index: int, position_sec: float = 0.0) -> Any:
    return client.result(
        "radio.position",
        {"station_id": station_id, "index": index, "position_sec": position_sec, "paused": False},
    )


def audio(path: str | Path) -> np.ndarray:
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    assert rate == 48000
    return data


def assert_continuous(paths: list[str]) -> None:
    for a, b in itertools.pairwise(paths):
        problems = join_problems(audio(a), audio(b))
        assert not problems, (a, b, problems)


def stop_station(client: RpcClient) -> None:
    client.result("radio.stop")
