"""Checks shared by the daemon's protocol tests (in-process and subprocess alike)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import soundfile as sf
from daemon_doubles import InProcessDaemon, RpcClient

MakeDaemon = Callable[..., InProcessDaemon]  # the ``make_daemon`` fixture (tests/service)

GEN: dict[str, Any] = {
    "prompt": "rainy night lofi, soft piano",
    "duration_sec": 5,
    "infer_steps": 8,
}


def error_code(reply: dict[str, Any]) -> int:
    """The error code of a response that must be an error."""
    assert "error" in reply, reply
    code: int = reply["error"]["code"]
    return code


def assert_generation_protocol(client: RpcClient, reply: dict[str, Any]) -> dict[str, Any]:
    """Check one finished generation's messages; returns generation_complete's params."""
    track_id = reply["result"]["track_id"]
    done = client.terminal(track_id, timeout=120)
    assert done["method"] == "generation_complete", done
    events = client.events(track_id)
    assert client.index(reply) < client.index(events[0]), "the reply must come first"
    assert events[0]["method"] == "generation_start"
    progress = [e["params"] for e in events if e["method"] == "generation_progress"]
    percents = [p["percent"] for p in progress]
    assert percents == sorted(percents) and percents[-1] == 100.0 and percents.count(100.0) == 1
    assert progress[-1]["phase"] == "decode" and events[-2]["params"] is progress[-1]
    assert all(p["step"] <= p["total_steps"] for p in progress)
    params: dict[str, Any] = done["params"]
    info = sf.info(params["path"])
    assert (info.samplerate, info.channels) == (48000, 2)
    assert params["sample_rate"] == 48000
    assert info.duration == pytest.approx(params["duration_sec"], abs=0.05)
    assert params["seed"] == reply["result"]["seed"]
    for key in ("prompt", "generation_time_sec", "model_version"):
        assert params[key] is not None
    return params
