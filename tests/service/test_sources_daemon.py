"""Audio tasks through the daemon on the tiny models: an extend from a cached track starts from
its saved latents (the DCAE encoder never runs for it), one from a file path encodes it; and the
same over a real ``lofi-daemon serve`` process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from daemon_doubles import DaemonProcess, InProcessDaemon

from lofi_daemon.pipeline import engine as engine_module
from lofi_daemon.pipeline.engine import Engine
from lofi_daemon.service.cache import TrackCache

GEN: dict[str, Any] = {"prompt": "lofi piano", "duration_sec": 6, "infer_steps": 4, "seed": 1}
EXTEND: dict[str, Any] = {
    "prompt": "lofi piano",
    "task": "extend",
    "extend_right": 2,
    "infer_steps": 4,
    "seed": 1,
    "retake_seed": 2,
}
SOURCE_FRAMES = int(6 * 44100 / 4096)
EXTENDED_SEC = (SOURCE_FRAMES + int(2 * 44100 / 4096)) * 4096 / 44100


def complete(client: Any, params: dict[str, Any]) -> dict[str, Any]:
    reply = client.result("generate", params, timeout=60)
    done = client.terminal(reply["track_id"], timeout=180)
    assert done["method"] == "generation_complete", done
    params_out: dict[str, Any] = done["params"]
    return params_out


@pytest.fixture
def daemon(tiny_models: Path, tmp_path: Path) -> Iterator[InProcessDaemon]:
    engine = Engine(tiny_models, provider="cpu", threads=1)
    server = InProcessDaemon(engine, TrackCache(tmp_path / "cache"))
    yield server
    server.stop()


def test_an_extend_of_a_cached_track_does_not_encode_it_again(
    daemon: InProcessDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    encodes: list[int] = []
    real = engine_module.encode_audio

    def spy(*args: Any, **kwargs: Any) -> Any:
        encodes.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine_module, "encode_audio", spy)
    client = daemon.client
    first = complete(client, GEN)
    source = first["track_id"]
    from_track = complete(client, {**EXTEND, "src_track_id": source})
    assert encodes == [] and from_track["task"] == "extend"
    assert from_track["duration_sec"] == pytest.approx(EXTENDED_SEC, abs=0.01)
    from_path = complete(client, {**EXTEND, "src_path": first["path"]})
    assert encodes == [1]  # the same audio from a file is encoded
    assert from_path["track_id"] != from_track["track_id"]
    listed = {t["track_id"]: t for t in client.result("tracks.list")["tracks"]}
    assert listed[source]["task"] == "text2music" and "src_track_id" not in listed[source]
    assert listed[from_track["track_id"]]["src_track_id"] == source
    # the source's latents are the start of the extension: its frames are kept exactly
    cache_dir = Path(first["path"]).parent
    saved = np.load(cache_dir / f"{source}.latents.npy")
    extended = np.load(cache_dir / f"{from_track['track_id']}.latents.npy")
    np.testing.assert_array_equal(extended[..., :SOURCE_FRAMES], saved)


@pytest.mark.slow
def test_serve_extends_a_cached_track(tiny_models: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    args = ["--models", str(tiny_models), "--cache-dir", str(cache), "--threads", "1"]
    daemon = DaemonProcess(args, stderr_path=tmp_path / "stderr.txt")
    try:
        client = daemon.client
        source = complete(client, GEN)["track_id"]
        reply = client.call("generate", {**EXTEND, "duration_sec": 9, "src_track_id": source})
        assert reply["error"]["data"]["name"] == "INVALID_DURATION", reply
        done = complete(client, {**EXTEND, "src_track_id": source})
        assert done["task"] == "extend", daemon.stderr()
        assert sf.info(done["path"]).duration == pytest.approx(done["duration_sec"], abs=0.05)
        meta = json.loads((cache / f"{done['track_id']}.json").read_text(encoding="utf-8"))
        assert meta["task"] == "extend" and meta["params"]["retake_seed"] == 2
        assert meta["source"]["kind"] == "track" and meta["source"]["track_id"] == source
        assert meta["source"]["from"] == "latents"
        again = client.result("generate", {**EXTEND, "src_track_id": source})
        assert (again["status"], again["track_id"]) == ("cached", done["track_id"])
        assert client.result("tracks.delete", {"track_id": source})["deleted"]
        assert not (cache / f"{source}.latents.npy").exists()
        assert client.result("shutdown") == {"status": "shutting_down"}
        assert daemon.wait(60) == 0
    finally:
        daemon.kill()
