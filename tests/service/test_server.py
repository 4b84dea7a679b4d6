"""The daemon end to end: in-process over pipes with a fake engine, as a subprocess with a fake
engine (signals, stdout hygiene), and as a real ``lofi-daemon serve`` with the tiny models."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from daemon_doubles import (
    DaemonProcess,
    FakeEngine,
    InProcessDaemon,
    RpcClient,
    write_fake_models,
)

from lofi_daemon import __version__, errors
from lofi_daemon.service.cache import TrackCache

GEN = {"prompt": "rainy night lofi, soft piano", "duration_sec": 5, "infer_steps": 8}

MakeDaemon = Callable[..., InProcessDaemon]


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[MakeDaemon]:
    started: list[tuple[InProcessDaemon, FakeEngine]] = []

    def make(engine: FakeEngine | None = None, *, max_bytes: int = 10**9, **kwargs: Any):
        engine = engine or FakeEngine()
        cache = TrackCache(tmp_path / "cache", max_bytes=max_bytes)
        daemon = InProcessDaemon(engine, cache, **kwargs)
        started.append((daemon, engine))
        return daemon

    yield make
    for daemon, engine in started:
        engine.resume.set()
        daemon.stop()


def error_code(reply: dict[str, Any]) -> int:
    assert "error" in reply, reply
    return reply["error"]["code"]


def wait_until_cancelling(daemon: InProcessDaemon, timeout: float = 10.0) -> None:
    """Wait until the daemon has told its running generation to stop."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = daemon.server.runner.snapshot()["running"]
        if running is not None and running["cancelling"]:
            return
        time.sleep(0.01)
    raise AssertionError("the running generation was not cancelled")


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
    params = done["params"]
    info = sf.info(params["path"])
    assert (info.samplerate, info.channels) == (48000, 2)
    assert params["sample_rate"] == 48000
    assert info.duration == pytest.approx(params["duration_sec"], abs=0.05)
    assert params["seed"] == reply["result"]["seed"]
    for key in ("prompt", "generation_time_sec", "model_version"):
        assert params[key] is not None
    return params


# -- in-process, fake engine -----------------------------------------------------------------


def test_ping(make_daemon: MakeDaemon) -> None:
    result = make_daemon().client.result("ping")
    assert result == {"status": "ok", "version": __version__, "pid": os.getpid()}


def test_generate_is_answered_before_any_notification(make_daemon: MakeDaemon) -> None:
    client = make_daemon().client
    reply = client.call("generate", {**GEN, "seed": 11})
    assert reply["result"]["status"] == "queued" and reply["result"]["position"] == 0
    params = assert_generation_protocol(client, reply)
    assert params["prompt"] == GEN["prompt"] and params["cached"] is False
    assert params["duration_sec"] == pytest.approx(5.0)


def test_requests_are_served_while_a_generation_runs(make_daemon: MakeDaemon) -> None:
    engine = FakeEngine(pause_at=3)
    daemon = make_daemon(engine)
    client = daemon.client
    track_id = client.result("generate", GEN)["track_id"]
    assert engine.paused.wait(10)
    assert client.result("ping")["status"] == "ok"
    status = client.result("status")
    assert status["running"]["track_id"] == track_id
    assert status["running"]["step"] == 2 and status["running"]["phase"] == "diffusion"
    assert status["queue"] == [] and status["queue_limit"] == 5
    cancel = client.result("cancel", {"track_id": track_id})
    assert cancel == {"track_id": track_id, "status": "cancelling", "step": 2}
    engine.resume.set()
    cancelled = client.terminal(track_id)
    assert cancelled["method"] == "generation_cancelled"
    assert cancelled["params"]["step"] <= cancel["step"] + 1
    assert not any(daemon.server.cache.root.iterdir())
    assert client.result("status")["running"] is None


def test_cancel_a_queued_generation(make_daemon: MakeDaemon) -> None:
    engine = FakeEngine(pause_at=2)
    client = make_daemon(engine).client
    first = client.result("generate", {**GEN, "seed": 1})["track_id"]
    assert engine.paused.wait(10)
    queued = client.result("generate", {**GEN, "seed": 2})
    assert queued["position"] == 1
    reply = client.call("cancel", {"track_id": queued["track_id"]})
    assert reply["result"] == {"track_id": queued["track_id"], "status": "cancelled"}
    note = client.terminal(queued["track_id"])
    assert note["method"] == "generation_cancelled" and client.index(reply) < client.index(note)
    engine.resume.set()
    assert client.terminal(first)["method"] == "generation_complete"
    assert [p.seed for p in engine.calls] == [1]


def test_cancel_unknown_track(make_daemon: MakeDaemon) -> None:
    reply = make_daemon().client.call("cancel", {"track_id": "0" * 24})
    assert error_code(reply) == errors.TRACK_NOT_FOUND


def test_full_queue_gives_queue_full(make_daemon: MakeDaemon) -> None:
    engine = FakeEngine(pause_at=1)
    client = make_daemon(engine, queue_limit=2).client
    ids = [client.result("generate", {**GEN, "seed": s})["track_id"] for s in (1, 2)]
    reply = client.call("generate", {**GEN, "seed": 3})
    assert error_code(reply) == errors.QUEUE_FULL
    assert reply["error"]["data"]["remedy"]
    for track_id in ids:
        client.result("cancel", {"track_id": track_id})
    engine.resume.set()
    for track_id in ids:
        assert client.terminal(track_id)["method"] == "generation_cancelled"
    assert "result" in client.call("generate", {**GEN, "seed": 3})


def test_high_priority_jumps_the_queue(make_daemon: MakeDaemon) -> None:
    engine = FakeEngine(pause_at=1)
    client = make_daemon(engine).client
    client.result("generate", {**GEN, "seed": 1})
    assert engine.paused.wait(10)
    normal = client.result("generate", {**GEN, "seed": 2})
    high = client.result("generate", {**GEN, "seed": 3, "priority": "high"})
    assert (normal["position"], high["position"]) == (1, 1)
    queue = client.result("status")["queue"]
    assert [q["track_id"] for q in queue] == [high["track_id"], normal["track_id"]]
    engine.resume.set()
    client.terminal(normal["track_id"])
    assert [p.seed for p in engine.calls] == [1, 3, 2]


def test_repeated_request_is_a_cache_hit(make_daemon: MakeDaemon) -> None:
    engine = FakeEngine()
    client = make_daemon(engine).client
    first = client.call("generate", {**GEN, "seed": 42})
    done = assert_generation_protocol(client, first)
    again = client.call("generate", {**GEN, "seed": 42, "duration_sec": 5.0})
    result = again["result"]
    assert result["status"] == "cached" and result["track_id"] == first["result"]["track_id"]
    assert result["path"] == done["path"]
    hit = client.wait_for(
        lambda m: m.get("method") == "generation_complete" and m["params"]["cached"] is True
    )
    assert hit["params"]["path"] == done["path"] and hit["params"]["seed"] == 42
    assert client.index(again) < client.index(hit)
    assert len(client.events(result["track_id"], "generation_complete")) == 2
    assert len(engine.calls) == 1
    other = client.result("generate", {**GEN, "seed": 42, "infer_steps": 9})
    assert other["status"] == "queued" and other["track_id"] != result["track_id"]


def test_identical_request_while_queued_shares_the_job(make_daemon: MakeDaemon) -> None:
    engine = FakeEngine(pause_at=1)
    client = make_daemon(engine).client
    first = client.result("generate", {**GEN, "seed": 5})
    assert engine.paused.wait(10)
    second = client.result("generate", {**GEN, "seed": 5})
    assert second == first | {"position": 0}
    engine.resume.set()
    client.terminal(first["track_id"])
    assert len(engine.calls) == 1


def test_request_without_seed_draws_one(make_daemon: MakeDaemon) -> None:
    engine = FakeEngine()
    client = make_daemon(engine).client
    a = client.result("generate", GEN)
    b = client.result("generate", GEN)
    assert a["track_id"] != b["track_id"] and a["seed"] != b["seed"]
    assert client.terminal(a["track_id"])["params"]["seed"] == a["seed"]
    assert client.terminal(b["track_id"])["params"]["seed"] == b["seed"]
    assert {p.seed for p in engine.calls} == {a["seed"], b["seed"]}


def test_missing_models_give_model_not_found(make_daemon: MakeDaemon) -> None:
    client = make_daemon(FakeEngine(state="not_installed")).client
    reply = client.call("generate", GEN)
    assert error_code(reply) == errors.MODEL_NOT_FOUND
    assert "setup" in reply["error"]["data"]["remedy"]
    [backend] = client.result("get_backends")
    assert backend["status"] == "not_installed"


def test_broken_models_give_model_load_failed(make_daemon: MakeDaemon) -> None:
    client = make_daemon(FakeEngine(state="error")).client
    assert error_code(client.call("generate", GEN)) == errors.MODEL_LOAD_FAILED


def test_failed_generation_is_reported_and_the_daemon_keeps_serving(
    make_daemon: MakeDaemon,
) -> None:
    engine = FakeEngine(fail_with=errors.MODEL_LOAD_FAILED)
    client = make_daemon(engine).client
    bad = client.result("generate", GEN)["track_id"]
    error = client.terminal(bad)
    assert error["method"] == "generation_error"
    assert error["params"]["code"] == errors.MODEL_LOAD_FAILED
    assert error["params"]["name"] == "MODEL_LOAD_FAILED" and error["params"]["message"]
    assert client.result("ping")["status"] == "ok"
    engine.fail_with = None
    good = client.result("generate", GEN)["track_id"]
    assert client.terminal(good)["method"] == "generation_complete"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"duration_sec": 5}, errors.INVALID_PROMPT),
        ({"prompt": ""}, errors.INVALID_PROMPT),
        ({"prompt": 7}, errors.INVALID_PROMPT),
        ({"prompt": "x" * 1001}, errors.INVALID_PROMPT),
        ({"prompt": "x", "duration_sec": 4.9}, errors.INVALID_DURATION),
        ({"prompt": "x", "duration_sec": 241}, errors.INVALID_DURATION),
        ({"prompt": "x", "duration_sec": "30"}, errors.INVALID_DURATION),
        ({"prompt": "x", "duration_sec": 10**400}, errors.INVALID_DURATION),
        ({"prompt": "x", "infer_steps": 0}, errors.INVALID_INFERENCE_STEPS),
        ({"prompt": "x", "infer_steps": 2.5}, errors.INVALID_INFERENCE_STEPS),
        ({"prompt": "x", "guidance_scale": -1}, errors.INVALID_GUIDANCE_SCALE),
        ({"prompt": "x", "guidance_scale": None}, errors.INVALID_GUIDANCE_SCALE),
        ({"prompt": "x", "scheduler": "ddim"}, errors.INVALID_SCHEDULER),
        ({"prompt": "x", "scheduler": ["euler"]}, errors.INVALID_SCHEDULER),
        ({"prompt": "x", "cfg_type": "zero"}, errors.INVALID_CFG_TYPE),
        ({"prompt": "x", "format": "mp3"}, errors.INVALID_FORMAT),
        ({"prompt": "x", "seed": -1}, errors.INVALID_PARAMETER),
        ({"prompt": "x", "seed": "1"}, errors.INVALID_PARAMETER),
        ({"prompt": "x", "guidance_interval": 2}, errors.INVALID_PARAMETER),
        ({"prompt": "x", "priority": "urgent"}, errors.INVALID_PARAMETER),
        ({"prompt": "x", "backend": "musicgen"}, errors.INVALID_BACKEND),
        ({"prompt": "x", "use_erg_tag": "yes"}, errors.INVALID_PARAMS),
        ({"prompt": "x", "steps": 10}, errors.INVALID_PARAMS),
    ],
)
def test_invalid_generate_params(
    make_daemon: MakeDaemon, params: dict[str, Any], code: int
) -> None:
    engine = FakeEngine()
    client = make_daemon(engine).client
    reply = client.call("generate", params)
    assert error_code(reply) == code
    assert reply["error"]["data"]["name"] == errors.error_info(code).name
    assert client.result("status")["queue"] == [] and engine.calls == []


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("ping", {"x": 1}),
        ("status", {"verbose": True}),
        ("get_backends", {"all": 1}),
        ("tracks.list", {"page": 1}),
        ("tracks.delete", {}),
        ("tracks.delete", {"track_id": 5}),
        ("cancel", {"track_id": None}),
        ("shutdown", {"cancel_running": "yes"}),
    ],
)
def test_wrong_params_give_invalid_params(
    make_daemon: MakeDaemon, method: str, params: dict[str, Any]
) -> None:
    client = make_daemon().client
    assert error_code(client.call(method, params)) == errors.INVALID_PARAMS
    assert client.result("ping")["status"] == "ok"


def test_unknown_method(make_daemon: MakeDaemon) -> None:
    assert error_code(make_daemon().client.call("generate_now")) == errors.METHOD_NOT_FOUND


def test_get_backends(make_daemon: MakeDaemon) -> None:
    [backend] = make_daemon().client.result("get_backends", [])
    assert backend == {
        "name": "ace-step",
        "status": "ready",
        "message": "ok",
        "min_duration_sec": 5.0,
        "max_duration_sec": 240.0,
        "sample_rate": 48000,
        "model_version": "fake-ace-step-1",
        "providers": ["CPUExecutionProvider"],
    }


def test_tracks_list_and_delete(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon()
    client = daemon.client
    ids = []
    for seed in (1, 2):
        track_id = client.result("generate", {**GEN, "seed": seed})["track_id"]
        client.terminal(track_id)
        ids.append(track_id)
    listing = client.result("tracks.list")
    assert {t["track_id"] for t in listing["tracks"]} == set(ids)
    assert listing["total_bytes"] == sum(t["size_bytes"] for t in listing["tracks"])
    assert listing["max_bytes"] == 10**9
    track = next(t for t in listing["tracks"] if t["track_id"] == ids[0])
    assert Path(track["path"]).is_file() and track["seed"] == 1 and track["prompt"] == GEN["prompt"]
    assert client.result("tracks.delete", {"track_id": ids[0]}) == {
        "track_id": ids[0],
        "deleted": True,
    }
    assert not Path(track["path"]).exists()
    assert [t["track_id"] for t in client.result("tracks.list")["tracks"]] == [ids[1]]
    assert error_code(client.call("tracks.delete", {"track_id": ids[0]})) == errors.TRACK_NOT_FOUND


def test_eviction_deletes_files(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(max_bytes=1_500_000)  # one 5 s pcm16 stereo track is ~0.96 MB
    client = daemon.client
    first = client.result("generate", {**GEN, "seed": 1})["track_id"]
    path = Path(client.terminal(first)["params"]["path"])
    second = client.result("generate", {**GEN, "seed": 2})["track_id"]
    client.terminal(second)
    assert not path.exists()
    assert [t["track_id"] for t in client.result("tracks.list")["tracks"]] == [second]


def test_notifications_and_blank_lines_are_never_answered(make_daemon: MakeDaemon) -> None:
    client = make_daemon().client
    client.notify("ping")
    client.notify("no_such_method", {"a": 1})
    client.notify("generate", {"prompt": ""})
    client.send({"method": "ping"})  # no jsonrpc member: still a notification
    client.send_line(b"   ")
    reply = client.call("ping")
    assert client.messages == [reply]


def test_batches_and_garbage_get_one_error_each(make_daemon: MakeDaemon) -> None:
    client = make_daemon().client
    client.send([{"jsonrpc": "2.0", "id": 1, "method": "ping"}])
    client.send_line(b"\xff\xfe not utf-8")
    client.send_line(b'{"jsonrpc": "2.0", "id": 2, "method": "ping"')
    client.send(17)
    reply = client.call("ping")
    errs = client.messages[:-1]
    assert [(m["id"], m["error"]["code"]) for m in errs] == [
        (None, errors.INVALID_REQUEST),
        (None, errors.PARSE_ERROR),
        (None, errors.PARSE_ERROR),
        (None, errors.INVALID_REQUEST),
    ]
    assert client.messages[-1] is reply


def test_shutdown_finishes_the_running_generation(make_daemon: MakeDaemon) -> None:
    engine = FakeEngine(pause_at=2)
    daemon = make_daemon(engine)
    client = daemon.client
    running = client.result("generate", {**GEN, "seed": 1})["track_id"]
    assert engine.paused.wait(10)
    queued = client.result("generate", {**GEN, "seed": 2})["track_id"]
    assert client.result("shutdown") == {"status": "shutting_down"}
    assert client.terminal(queued)["method"] == "generation_cancelled"
    engine.resume.set()
    client.wait_eof()
    assert client.terminal(running)["method"] == "generation_complete"
    assert daemon.stop() == 0 and engine.closed


def test_shutdown_can_cancel_the_running_generation(make_daemon: MakeDaemon) -> None:
    engine = FakeEngine(pause_at=2)
    daemon = make_daemon(engine)
    client = daemon.client
    running = client.result("generate", GEN)["track_id"]
    assert engine.paused.wait(10)
    reply = client.call("shutdown", {"cancel_running": True})
    wait_until_cancelling(daemon)
    engine.resume.set()
    client.wait_eof()
    note = client.terminal(running)
    assert note["method"] == "generation_cancelled" and client.index(reply) < client.index(note)
    assert daemon.stop() == 0
    assert not any(daemon.server.cache.root.iterdir())


def test_end_of_input_cancels_and_exits_cleanly(make_daemon: MakeDaemon) -> None:
    engine = FakeEngine(pause_at=2)
    daemon = make_daemon(engine)
    client = daemon.client
    running = client.result("generate", GEN)["track_id"]
    assert engine.paused.wait(10)
    client.close()
    wait_until_cancelling(daemon)
    engine.resume.set()
    client.wait_eof()
    assert client.terminal(running)["method"] == "generation_cancelled"
    assert daemon.stop() == 0
    assert not any(daemon.server.cache.root.iterdir())


# -- subprocess, fake engine ----------------------------------------------------------------


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    procs: list[DaemonProcess] = []

    def start(
        *extra: str,
        fake: dict[str, Any] | None = None,
        real: bool = False,
        models: Path | None = None,
        cache: Path | None = None,
    ) -> DaemonProcess:
        n = len(procs)
        if models is None:
            models = tmp_path / f"models{n}"
            if fake is not None:
                write_fake_models(models, **fake)
        args = [
            "--models",
            str(models),
            "--cache-dir",
            str(cache or tmp_path / "cache"),
            "--log-file",
            str(tmp_path / f"daemon{n}.log"),
            *extra,
        ]
        proc = DaemonProcess(args, stderr_path=tmp_path / f"stderr{n}.txt", fake_engine=not real)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_cancels_the_running_generation_and_exits_0(
    spawn: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    daemon = spawn(fake={"step_delay": 0.05})
    client = daemon.client
    track_id = client.result("generate", {**GEN, "infer_steps": 200})["track_id"]
    client.wait_event("generation_progress", track_id)
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.wait(20) == 0
    client.wait_eof()
    assert client.terminal(track_id)["method"] == "generation_cancelled"
    assert not any((tmp_path / "cache").iterdir())
    assert "stopping (signal)" in (tmp_path / "daemon0.log").read_text()


def test_idle_daemon_exits_0_on_end_of_input(spawn: Callable[..., DaemonProcess]) -> None:
    daemon = spawn(fake={})
    assert daemon.client.result("ping")["pid"] == daemon.proc.pid
    daemon.client.close()
    assert daemon.wait(20) == 0


def test_stdout_carries_only_protocol(spawn: Callable[..., DaemonProcess], tmp_path: Path) -> None:
    daemon = spawn("--log-level", "debug", "--log-stderr", fake={"noisy": True})
    client = daemon.client
    track_id = client.result("generate", GEN)["track_id"]
    assert client.terminal(track_id)["method"] == "generation_complete"
    client.result("shutdown")
    assert daemon.wait(20) == 0
    client.wait_eof()
    assert client.bad_lines == []
    stderr = daemon.stderr()
    assert "stray print from the engine" in stderr and "stray native write" in stderr
    assert "generating" in (tmp_path / "daemon0.log").read_text()


def test_daemon_without_models_reports_model_not_found(
    spawn: Callable[..., DaemonProcess],
) -> None:
    client = spawn().client
    reply = client.call("generate", GEN)
    assert error_code(reply) == errors.MODEL_NOT_FOUND
    assert client.result("get_backends")[0]["status"] == "not_installed"


# -- subprocess, real engine, tiny models (issue 4 acceptance) --------------------------------

FAST = {"prompt": "lofi hip hop, mellow", "duration_sec": 5, "infer_steps": 3, "seed": 1}
LONG = {"prompt": "lofi hip hop, long", "duration_sec": 240, "infer_steps": 200}


@pytest.mark.slow
def test_real_generation_then_cache_hit_then_restart(
    spawn: Callable[..., DaemonProcess], tiny_models: Path, tmp_path: Path
) -> None:
    daemon = spawn(real=True, models=tiny_models)
    client = daemon.client
    [backend] = client.result("get_backends")
    assert backend["status"] == "ready" and backend["providers"]
    first = client.call("generate", FAST, timeout=60)
    done = assert_generation_protocol(client, first)
    assert done["model_version"] == backend["model_version"]
    again = client.result("generate", FAST)
    assert again["status"] == "cached" and again["path"] == done["path"]
    client.result("shutdown")
    assert daemon.wait(60) == 0

    restarted = spawn(real=True, models=tiny_models)
    tracks = restarted.client.result("tracks.list")["tracks"]
    assert [t["track_id"] for t in tracks] == [first["result"]["track_id"]]
    assert restarted.client.result("generate", FAST)["status"] == "cached"


@pytest.mark.slow
def test_real_ping_while_running_and_cancel_mid_run(
    spawn: Callable[..., DaemonProcess], tiny_models: Path, tmp_path: Path
) -> None:
    client = spawn(real=True, models=tiny_models).client
    track_id = client.result("generate", LONG)["track_id"]
    client.wait_event("generation_progress", track_id, timeout=120)
    assert client.result("ping")["status"] == "ok"
    assert client.result("status")["running"]["track_id"] == track_id
    cancel_reply = client.call("cancel", {"track_id": track_id})
    cancel = cancel_reply["result"]
    assert cancel["status"] == "cancelling"
    note = client.terminal(track_id, timeout=120)
    assert note["method"] == "generation_cancelled"
    assert note["params"]["step"] <= cancel["step"] + 1  # stopped within one step
    after_cancel = [
        e["params"]["step"]
        for e in client.events(track_id, "generation_progress")
        if client.index(e) > client.index(cancel_reply)
    ]
    assert all(step <= cancel["step"] + 1 for step in after_cancel)
    assert not any((tmp_path / "cache").iterdir())


@pytest.mark.slow
def test_real_queue_full(spawn: Callable[..., DaemonProcess], tiny_models: Path) -> None:
    client = spawn("--queue-limit", "2", real=True, models=tiny_models).client
    ids = [client.result("generate", {**LONG, "seed": s})["track_id"] for s in (1, 2)]
    assert error_code(client.call("generate", {**LONG, "seed": 3})) == errors.QUEUE_FULL
    for track_id in reversed(ids):
        client.result("cancel", {"track_id": track_id})
    for track_id in ids:
        assert client.terminal(track_id, timeout=120)["method"] == "generation_cancelled"


@pytest.mark.slow
def test_real_eviction_deletes_files(
    spawn: Callable[..., DaemonProcess], tiny_models: Path, tmp_path: Path
) -> None:
    client = spawn(real=True, models=tiny_models).client
    first = client.result("generate", FAST)["track_id"]
    path = Path(client.terminal(first, timeout=120)["params"]["path"])
    [track] = client.result("tracks.list")["tracks"]
    client.result("shutdown")

    cap = str(track["size_bytes"] * 3 // 2)
    client = spawn("--cache-max-bytes", cap, real=True, models=tiny_models).client
    second = client.result("generate", {**FAST, "seed": 2})["track_id"]
    assert client.terminal(second, timeout=120)["method"] == "generation_complete"
    assert not path.exists()
    assert [t["track_id"] for t in client.result("tracks.list")["tracks"]] == [second]


@pytest.mark.slow
def test_real_corrupt_model_reports_a_model_error_and_keeps_serving(
    spawn: Callable[..., DaemonProcess], tiny_models: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken-models"
    shutil.copytree(tiny_models, broken)
    victim = max(broken.rglob("*.onnx"), key=lambda p: p.stat().st_size)
    size = victim.stat().st_size  # same size, so only loading the graph can tell
    victim.write_bytes((b"this is not an onnx model " * (size // 26 + 1))[:size])
    client = spawn(real=True, models=broken).client
    reply = client.call("generate", FAST, timeout=60)
    model_codes = {errors.MODEL_NOT_FOUND, errors.MODEL_LOAD_FAILED, errors.MODEL_INFERENCE_FAILED}
    if "error" in reply:  # the install check caught it before queueing
        assert error_code(reply) in model_codes
    else:
        note = client.terminal(reply["result"]["track_id"], timeout=120)
        assert note["method"] == "generation_error"
        assert note["params"]["code"] in model_codes
    assert client.result("ping")["status"] == "ok"
    assert client.result("get_backends")[0]["name"] == "ace-step"
    assert not [p for p in (tmp_path / "cache").iterdir() if p.suffix in (".wav", ".json")]
