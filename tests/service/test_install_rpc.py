"""The ``setup`` and ``setup.cancel`` methods over a real ``lofi-daemon serve`` subprocess.

Two real exports of the tiny checkpoint run here (about 80 s each on a busy 2-core machine): a
local checkpoint installed and then used without restarting the daemon, and the hub path
(confirmation, download, a cancelled export, a completed rerun). The protocol checks that need
no export (types, the setup/generation exclusion, the throttle) run against fast doubles.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_doubles import DaemonProcess, FakeEngine, InProcessDaemon, RpcClient
from fake_hub import FakeHub

from lofi_daemon import errors
from lofi_daemon.install.options import REPO_ID, InstallOptions
from lofi_daemon.install.plan import plan_install
from lofi_daemon.service import install_jobs
from lofi_daemon.service.cache import TrackCache
from lofi_daemon.service.install_jobs import PhaseThrottle

SETUP_TIMEOUT = 600.0
TERMINALS = ("setup_complete", "setup_error", "setup_cancelled", "setup_confirm")

Spawn = Callable[..., DaemonProcess]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    procs: list[DaemonProcess] = []

    def start(models: Path, env: dict[str, str] | None = None) -> DaemonProcess:
        n = len(procs)
        args = [
            "--models",
            str(models),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--log-file",
            str(tmp_path / f"daemon{n}.log"),
        ]
        proc = DaemonProcess(args, stderr_path=tmp_path / f"stderr{n}.txt", env=env)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()


def error_code(reply: dict[str, Any]) -> int:
    assert "error" in reply, reply
    return reply["error"]["code"]


def setup_events(client: RpcClient, since: int = 0) -> list[dict[str, Any]]:
    return [
        m
        for m in client.messages[since:]
        if str(m.get("method", "")).startswith("setup_") and m["params"]["backend"] == "ace-step"
    ]


def terminal(client: RpcClient, since: int, timeout: float = SETUP_TIMEOUT) -> dict[str, Any]:
    """The first terminal setup notification after message index ``since``."""
    return client.wait_for(
        lambda m: m.get("method") in TERMINALS and client.index(m) >= since, timeout=timeout
    )


def progress_by_phase(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    phases: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event["method"] == "setup_progress":
            phases.setdefault(event["params"]["phase"], []).append(event["params"])
    return phases


def assert_phase_order(events: list[dict[str, Any]], expected: list[str]) -> None:
    order: list[str] = []
    for event in events:
        if event["method"] == "setup_progress" and event["params"]["phase"] not in order:
            order.append(event["params"]["phase"])
    assert order == expected


def assert_monotonic(updates: list[dict[str, Any]]) -> None:
    percents = [u["percent"] for u in updates]
    assert percents == sorted(percents) and percents[-1] == 100.0 and percents.count(100.0) == 1
    assert [u["done"] for u in updates] == sorted(u["done"] for u in updates)
    assert updates[-1]["done"] == updates[-1]["total"]
    assert all(isinstance(u["message"], str) and u["message"] for u in updates)


def checkpoint_bytes(checkpoint: Path) -> int:
    return sum(p.stat().st_size for p in checkpoint.rglob("*") if p.is_file())


# -- a local checkpoint, then a generation without restarting (real export #1) ---------------


@pytest.mark.slow
def test_setup_from_a_checkpoint_then_generate_without_restart(
    spawn: Spawn, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models" / "ace-step"
    client = spawn(models).client
    assert client.result("get_backends")[0]["status"] == "not_installed"
    assert client.result("status")["setup"] is None

    request = {"backend": "ace-step", "checkpoint": str(tiny_checkpoint), "confirm": True}
    started = client.call("setup", request)
    assert started["result"] == {"status": "started"}
    second = client.call("setup", request)
    assert error_code(second) == errors.SETUP_FAILED
    assert "already running" in second["error"]["message"]
    running = client.result("status")["setup"]
    assert running is not None and running["backend"] == "ace-step"
    assert 0.0 <= running["percent"] <= 100.0 and running["cancelling"] is False
    refused = client.call("generate", {"prompt": "x", "duration_sec": 5})
    assert error_code(refused) == errors.MODEL_NOT_FOUND  # nothing installed yet

    done = terminal(client, client.index(started))
    assert done["method"] == "setup_complete", done
    assert done["params"]["models_dir"] == str(models)
    assert done["params"]["already_installed"] is False
    events = setup_events(client)
    assert client.index(started) < client.index(events[0]), "the reply comes first"
    assert_phase_order(events, ["export", "verify"])
    phases = progress_by_phase(events)
    for updates in phases.values():
        assert_monotonic(updates)
    assert phases["export"][-1]["total"] == 6 and phases["export"][0]["percent"] == 0.0
    assert events[-1] is done
    assert not (models.parent / ".ace-step.setup").exists()
    assert client.result("status")["setup"] is None

    backend = client.result("get_backends")[0]
    assert backend["status"] == "ready"
    assert backend["model_version"] == done["params"]["model_version"]
    reply = client.call("generate", {"prompt": "lofi", "duration_sec": 5, "infer_steps": 2})
    track_id = reply["result"]["track_id"]
    end = client.terminal(track_id, timeout=300)
    assert end["method"] == "generation_complete", end
    assert Path(end["params"]["path"]).is_file()

    # A setup is refused while a generation is queued or running.
    busy = client.result("generate", {"prompt": "busy", "duration_sec": 240, "infer_steps": 200})
    clash = client.call("setup", request)
    assert error_code(clash) == errors.SETUP_FAILED and "generation" in clash["error"]["message"]
    client.result("cancel", {"track_id": busy["track_id"]})
    assert client.terminal(busy["track_id"], timeout=120)["method"] == "generation_cancelled"


# -- the hub: confirmation, download, cancel, rerun (real export #2) -------------------------


@pytest.mark.slow
def test_setup_from_the_hub_asks_first_then_cancels_then_installs(
    spawn: Spawn, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models" / "ace-step"
    hf_home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    total = checkpoint_bytes(tiny_checkpoint)
    with FakeHub(tiny_checkpoint, REPO_ID) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        plan = plan_install(InstallOptions(models_dir=models))
        client = spawn(models, env={"HF_ENDPOINT": hub.url, "HF_HOME": str(hf_home)}).client
        options = InstallOptions(models_dir=models)

        # 1. Without confirm: setup_confirm with the sizes, and nothing is downloaded.
        asked = client.call("setup", {"backend": "ace-step"})
        assert asked["result"] == {"status": "started"}
        confirm = terminal(client, client.index(asked), timeout=120)
        assert confirm["method"] == "setup_confirm", confirm
        params = confirm["params"]
        assert params["remaining_bytes"] == params["download_bytes"] == total
        assert params["export_bytes"] == plan.export_bytes > 0
        assert isinstance(params["free_bytes"], int) and params["free_bytes"] > 0
        assert "MB" in params["message"] or "kB" in params["message"]
        assert [r for r in hub.body_requests() if r.range != "bytes=0-100000"] == []
        assert not options.download_dir.exists() and not models.exists()
        assert not [e for e in setup_events(client) if e["method"] == "setup_error"]

        # 2. With confirm: download, then cancel as soon as the export starts.
        mark = len(client.messages)
        go = {"backend": "ace-step", "confirm": True}
        assert client.result("setup", go) == {"status": "started"}
        client.wait_for(
            lambda m: m.get("method") == "setup_progress" and m["params"]["phase"] == "export",
            timeout=300,
        )
        assert client.result("setup.cancel") == {"cancelled": True}
        cancelled = terminal(client, mark, timeout=120)
        assert cancelled["method"] == "setup_cancelled", cancelled
        assert cancelled["params"] == {"backend": "ace-step"}
        download = progress_by_phase(setup_events(client, mark))["download"]
        assert_monotonic(download)
        assert download[-1]["total"] == total
        assert not models.exists() and not options.staging_dir.exists()
        assert client.result("setup.cancel") == {"cancelled": False}
        assert client.result("get_backends")[0]["status"] == "not_installed"

        # 3. The rerun finds the download complete, exports, verifies and installs.
        mark = len(client.messages)
        assert client.result("setup", go) == {"status": "started"}
        done = terminal(client, mark)
    assert done["method"] == "setup_complete", done
    events = setup_events(client, mark)
    assert_phase_order(events, ["download", "export", "verify"])
    for updates in progress_by_phase(events).values():
        assert_monotonic(updates)
    assert client.result("get_backends")[0]["status"] == "ready"
    assert not options.download_dir.exists()  # removed once installed


# -- fast checks -------------------------------------------------------------------------------


def test_setup_params_are_validated(spawn: Spawn, tmp_path: Path) -> None:
    client = spawn(tmp_path / "models").client
    cases = [
        ({}, errors.INVALID_PARAMS),
        ({"backend": 3}, errors.INVALID_PARAMS),
        ({"backend": "musicgen"}, errors.INVALID_BACKEND),
        ({"backend": "ace-step", "confirm": "yes"}, errors.INVALID_PARAMS),
        ({"backend": "ace-step", "force": 1}, errors.INVALID_PARAMS),
        ({"backend": "ace-step", "checkpoint": 5}, errors.INVALID_PARAMS),
        ({"backend": "ace-step", "checkpoint": ""}, errors.INVALID_PARAMS),
        ({"backend": "ace-step", "yes": True}, errors.INVALID_PARAMS),
    ]
    for params, code in cases:
        assert error_code(client.call("setup", params)) == code, params
    assert error_code(client.call("setup.cancel", {"now": True})) == errors.INVALID_PARAMS
    assert client.result("setup.cancel") == {"cancelled": False}
    assert client.result("status")["setup"] is None


def test_a_bad_checkpoint_ends_with_setup_error(spawn: Spawn, tmp_path: Path) -> None:
    models = tmp_path / "models" / "ace-step"
    client = spawn(models).client
    empty = tmp_path / "not-a-checkpoint"
    empty.mkdir()
    reply = client.call("setup", {"backend": "ace-step", "checkpoint": str(empty)})
    assert reply["result"] == {"status": "started"}
    end = terminal(client, client.index(reply), timeout=60)
    assert end["method"] == "setup_error"
    assert end["params"]["code"] == errors.SETUP_FAILED and end["params"]["remedy"]
    assert "not an ACE-Step v1 checkpoint" in end["params"]["message"]
    assert not models.exists()


def test_shutdown_cancels_a_running_setup(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """An in-process daemon whose exporter never ends: shutdown stops it and announces it."""
    script = tmp_path / "hang.py"
    # It speaks the exporter's --progress json: the start, one graph, then nothing.
    start = json.dumps({"event": "start", "total": 6})
    graph = json.dumps({"event": "graph", "graph": "a", "file": "a.onnx", "done": 1, "total": 6})
    script.write_text(
        f"import time\nprint({start!r}, flush=True)\nprint({graph!r}, flush=True)\n"
        "time.sleep(600)\n"
    )
    daemon = InProcessDaemon(
        FakeEngine(state="not_installed"),
        TrackCache(tmp_path / "cache"),
        models_dir=tmp_path / "models" / "ace-step",
    )
    daemon.server.setup_runner._extra_options["exporter"] = (sys.executable, str(script))
    client = daemon.client
    request = {"backend": "ace-step", "checkpoint": str(tiny_checkpoint)}
    assert client.result("setup", request) == {"status": "started"}
    client.wait_for(
        lambda m: m.get("method") == "setup_progress" and m["params"]["done"] == 1, timeout=60
    )
    assert client.result("shutdown") == {"status": "shutting_down"}
    client.wait_eof(timeout=60)
    assert client.messages[-1]["method"] == "setup_cancelled"
    assert daemon.stop() == 0
    assert not (tmp_path / "models" / "ace-step").exists()


def test_a_setup_is_refused_while_a_generation_runs(tmp_path: Path) -> None:
    engine = FakeEngine(pause_at=2)
    daemon = InProcessDaemon(engine, TrackCache(tmp_path / "cache"), models_dir=tmp_path / "m")
    client = daemon.client
    try:
        track_id = client.result("generate", {"prompt": "x", "duration_sec": 5})["track_id"]
        assert engine.paused.wait(10)
        reply = client.call("setup", {"backend": "ace-step", "confirm": True})
        assert error_code(reply) == errors.SETUP_FAILED
        assert "generation" in reply["error"]["message"]
        assert client.result("status")["setup"] is None
    finally:
        engine.resume.set()
    assert client.terminal(track_id)["method"] == "generation_complete"
    daemon.stop()


def test_the_phase_throttle() -> None:
    now = [0.0]
    throttle = PhaseThrottle(interval_sec=0.5, step_percent=1.0, clock=lambda: now[0])
    admitted = []
    for percent in (0.0, 0.2, 0.5, 1.1, 1.5, 50.0, 99.9, 100.0, 100.0):
        admitted.append(throttle.admit("download", percent))
    assert admitted == [True, False, False, True, False, True, True, True, False]
    assert throttle.admit("export", 0.0)  # a new phase always starts with an update
    now[0] = 0.6
    assert throttle.admit("export", 0.1)  # the interval passed
    assert not throttle.admit("export", 0.2)


def test_progress_arrives_while_other_requests_are_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``status`` and ``ping`` are answered during a setup (the work is on its own thread)."""
    gate = threading.Event()
    daemon = InProcessDaemon(
        FakeEngine(state="not_installed"), TrackCache(tmp_path / "cache"), models_dir=tmp_path / "m"
    )
    runner = daemon.server.setup_runner
    calls: list[str] = []

    def fake_run_install(*args: Any, **kwargs: Any) -> Any:
        calls.append("run")
        kwargs["progress"]("export", 1, 6, 16.67, "exported a.onnx (1/6)")
        gate.wait(30)
        raise errors.LofiError(errors.SETUP_FAILED, "boom", remedy="fix it")

    monkeypatch.setattr(install_jobs, "run_install", fake_run_install)
    client = daemon.client
    assert client.result("setup", {"backend": "ace-step"}) == {"status": "started"}
    client.wait_for(lambda m: m.get("method") == "setup_progress", timeout=10)
    assert client.result("ping")["status"] == "ok"
    state = client.result("status")["setup"]
    assert (state["phase"], state["done"], state["total"]) == ("export", 1, 6)
    gate.set()
    end = client.wait_for(lambda m: m.get("method") == "setup_error", timeout=10)
    assert end["params"]["message"] == "boom" and end["params"]["remedy"] == "fix it"
    assert end["params"]["name"] == "SETUP_FAILED" and calls == ["run"]
    deadline = time.monotonic() + 5
    while runner.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not runner.running
    daemon.stop()
