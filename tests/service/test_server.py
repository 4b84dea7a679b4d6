"""The daemon's read loop and lifecycle: in-process over pipes with a fake engine (framing,
shutdown, end of input), as a subprocess with a fake engine (signals, stdout hygiene), and as a
real ``lofi-daemon serve`` with the tiny models. The methods themselves are test_handlers.py."""

from __future__ import annotations

import json
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_checks import GEN, MakeDaemon, assert_generation_protocol, error_code
from daemon_doubles import (
    DaemonProcess,
    FakeEngine,
    InProcessDaemon,
    RpcClient,
    write_fake_models,
)

from lofi_daemon import errors


def wait_until_cancelling(daemon: InProcessDaemon, timeout: float = 10.0) -> None:
    """Wait until the daemon has told its running generation to stop."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = daemon.server.runner.snapshot()["running"]
        if running is not None and running["cancelling"]:
            return
        time.sleep(0.01)
    raise AssertionError("the running generation was not cancelled")


# -- read loop and lifecycle, in-process, fake engine ----------------------------------------


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


def test_a_lone_surrogate_prompt_is_invalid_prompt(make_daemon: MakeDaemon) -> None:
    """``"\\ud800"`` is valid JSON but not text: refused up front, nothing queued (issue 10,
    item 22)."""
    engine = FakeEngine()
    client = make_daemon(engine).client
    client.send_line(
        b'{"jsonrpc": "2.0", "id": 7, "method": "generate", '
        b'"params": {"prompt": "rain \\ud800", "duration_sec": 5, "infer_steps": 8}}'
    )
    reply = client.response(7)
    assert error_code(reply) == errors.INVALID_PROMPT
    assert "prompt" in reply["error"]["message"]
    assert client.result("status")["running"] is None and engine.calls == []


def assert_retry_completes(client: RpcClient, track_id: str, retry: dict[str, Any]) -> None:
    """The old job's one terminal notification is its cancel, written before the retry's reply;
    the retry then runs and completes (issue 10, item 18)."""
    assert retry["result"]["status"] == "queued" and retry["result"]["track_id"] == track_id
    done = client.wait_for(
        lambda m: m.get("method") == "generation_complete" and m["params"]["track_id"] == track_id
    )
    ends = [
        m
        for m in client.events(track_id)
        if m["method"] in ("generation_complete", "generation_error", "generation_cancelled")
    ]
    assert [m["method"] for m in ends] == ["generation_cancelled", "generation_complete"]
    assert client.index(ends[0]) < client.index(retry) < client.index(done)
    assert Path(done["params"]["path"]).is_file()


def test_generate_again_while_cancelling_gets_a_fresh_job(make_daemon: MakeDaemon) -> None:
    engine = FakeEngine(pause_at=2)
    client = make_daemon(engine).client
    params = {**GEN, "seed": 5}
    track_id = client.result("generate", params)["track_id"]
    assert engine.paused.wait(10)
    assert client.result("cancel", {"track_id": track_id})["status"] == "cancelling"
    retry = client.call("generate", params)  # the engine has not seen the cancel yet
    assert retry["result"]["position"] == 1  # behind the job that is still stopping
    engine.resume.set()
    assert_retry_completes(client, track_id, retry)
    assert engine.cancelled_at == 2 and len(engine.calls) == 2


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


def test_generate_again_while_cancelling_over_a_subprocess(
    spawn: Callable[..., DaemonProcess],
) -> None:
    daemon = spawn(fake={"step_delay": 0.3})
    client = daemon.client
    params = {**GEN, "seed": 5}
    track_id = client.result("generate", params)["track_id"]
    client.wait_event("generation_progress", track_id)
    # cancel and retry in one write: both are answered long before the engine's next step
    cancel_id, retry_id = client.new_id(), client.new_id()
    cancel = {"jsonrpc": "2.0", "id": cancel_id, "method": "cancel"}
    retry = {"jsonrpc": "2.0", "id": retry_id, "method": "generate", "params": params}
    client.send_line(
        f"{json.dumps({**cancel, 'params': {'track_id': track_id}})}\n{json.dumps(retry)}".encode()
    )
    assert client.response(cancel_id)["result"]["status"] == "cancelling"
    assert_retry_completes(client, track_id, client.response(retry_id))
    client.result("shutdown")
    assert daemon.wait(20) == 0


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
    assert client.result("backends.list")[0]["status"] == "not_installed"


# -- subprocess, real engine, tiny models (issue 4 acceptance) --------------------------------

FAST = {"prompt": "lofi hip hop, mellow", "duration_sec": 5, "infer_steps": 3, "seed": 1}

LONG = {"prompt": "lofi hip hop, long", "duration_sec": 240, "infer_steps": 200}


@pytest.mark.slow
def test_real_generation_then_cache_hit_then_restart(
    spawn: Callable[..., DaemonProcess], tiny_models: Path, tmp_path: Path
) -> None:
    daemon = spawn(real=True, models=tiny_models)
    client = daemon.client
    backend = client.result("backends.list")[0]
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
    assert client.result("backends.list")[0]["name"] == "ace-step"
    assert not [p for p in (tmp_path / "cache").iterdir() if p.suffix in (".wav", ".json")]
