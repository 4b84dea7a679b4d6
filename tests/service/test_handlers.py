"""The daemon's methods over the protocol: an in-process daemon on pipes with a fake engine.

One section per method family; the read loop and the lifecycle (shutdown, end of input,
signals, stdout) are tests/service/test_server.py.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from daemon_checks import GEN, MakeDaemon, assert_generation_protocol, error_code
from daemon_doubles import FakeEngine

from lofi_daemon import __version__, errors
from lofi_daemon.service.handlers import DEPRECATED_METHODS, METHODS


def test_ping(make_daemon: MakeDaemon) -> None:
    result = make_daemon().client.result("ping")
    assert result == {"status": "ok", "version": __version__, "pid": os.getpid()}


@dataclass
class ResidentEngine(FakeEngine):
    def residency_status(self) -> dict[str, Any]:
        return {
            "mode": "auto",
            "idle_unload_sec": 600.0,
            "resident": [{"graph": "denoiser", "bytes": 3, "reason": "fits", "idle_drop_in_s": 9}],
            "last_drop": None,
        }


def test_status_shows_what_each_backend_keeps_loaded(make_daemon: MakeDaemon) -> None:
    assert make_daemon().client.result("status")["residency"] == {}  # no policy: nothing shown
    status = make_daemon(ResidentEngine()).client.result("status")
    assert status["residency"] == {"ace-step": ResidentEngine().residency_status()}
    assert status["running"] is None and status["setup"] is None


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
    backend = client.result("backends.list")[0]
    assert backend["name"] == "ace-step" and backend["status"] == "not_installed"


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
        ("backends.list", {"all": 1}),
        ("get_backends", {"all": 1}),
        ("setup.cancel", {"now": True}),
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


def test_backends_list(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon()
    daemon.server.handlers.backends.use("ace-step-1.5", FakeEngine(state="not_installed"))
    v1, turbo = daemon.client.result("backends.list", [])
    assert {k: v for k, v in v1.items() if k != "params"} == {
        "name": "ace-step",
        "title": "ACE-Step v1 3.5B",
        "status": "ready",
        "message": "ok",
        "min_duration_sec": 5.0,
        "max_duration_sec": 240.0,
        "sample_rate": 48000,
        "model_version": "fake-ace-step-1",
        "models_dir": None,
        "providers": ["CPUExecutionProvider"],
        "variants": [],
        "default": True,
    }
    assert "guidance_scale" in v1["params"] and "variant" in v1["params"]
    assert "lyrics" not in v1["params"]
    assert turbo["name"] == "ace-step-1.5" and turbo["status"] == "not_installed"
    assert (turbo["min_duration_sec"], turbo["max_duration_sec"]) == (5.0, 600.0)
    assert turbo["default"] is False and "variants" not in turbo
    assert {"lyrics", "bpm", "keyscale", "metadata"} <= set(turbo["params"])
    assert "guidance_scale" not in turbo["params"] and "variant" not in turbo["params"]


def test_backends_list_names_the_models_dir(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    # The plugin's `:Lofi status` shows where the daemon reads its models from.
    @dataclass
    class EngineWithDir(FakeEngine):
        models_dir: Path = tmp_path / "models"

    v1, turbo = make_daemon(EngineWithDir()).client.result("backends.list")
    assert v1["models_dir"] == str(tmp_path / "models")
    assert turbo["models_dir"] == str(tmp_path / "ace-step-1.5")
    assert v1["variants"] == []


def test_backends_list_names_the_installed_variants(
    make_daemon: MakeDaemon, tmp_path: Path
) -> None:
    # A variant folder is listed once its manifest carries a `lora` entry; others are not.
    @dataclass
    class EngineWithDir(FakeEngine):
        models_dir: Path = tmp_path / "models"

    variants = tmp_path / "models" / "variants"
    (variants / "lofi-lora").mkdir(parents=True)
    (variants / "lofi-lora" / "manifest.json").write_text(
        json.dumps({"lora": {"source": "/loras/lofi", "weight": 0.8}})
    )
    (variants / "half-done").mkdir()
    backend = make_daemon(EngineWithDir()).client.result("backends.list")[0]
    assert backend["variants"] == ["lofi-lora"]


@pytest.mark.parametrize("state", ["ready", "not_installed", "error"])
def test_get_backends_is_a_deprecated_alias_of_backends_list(
    make_daemon: MakeDaemon, state: str
) -> None:
    client = make_daemon(FakeEngine(state=state)).client
    assert client.result("get_backends") == client.result("backends.list")
    assert client.result("get_backends", [])[0]["status"] == state


def test_a_deprecated_name_is_logged_once(
    make_daemon: MakeDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_daemon().client
    with caplog.at_level(logging.INFO, logger="lofi_daemon.service.handlers"):
        for _ in range(3):
            client.result("get_backends")
    notes = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert notes == ["the method get_backends is deprecated; use backends.list"]


def test_every_method_and_alias_is_answered(make_daemon: MakeDaemon) -> None:
    """No name of the table falls through to METHOD_NOT_FOUND (shutdown is left out: it
    would end the daemon)."""
    client = make_daemon().client
    assert DEPRECATED_METHODS == {"get_backends": "backends.list"}
    assert set(DEPRECATED_METHODS.values()) <= set(METHODS)
    for method in [*METHODS, *DEPRECATED_METHODS]:
        if method == "shutdown":
            continue
        reply = client.call(method, {"no_such_param": 1})
        assert error_code(reply) != errors.METHOD_NOT_FOUND, method


def test_method_names_follow_the_convention() -> None:
    """Verbs for the daemon's own operations, ``collection.verb`` for collections."""
    verbs = {"ping", "status", "generate", "cancel", "setup", "shutdown"}
    for method in METHODS:
        if "." in method:
            collection, verb = method.split(".")
            assert collection and verb.isidentifier() and collection.isidentifier(), method
        else:
            assert method in verbs, method


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
    # the resolved parameters come along, so a client can repeat or vary the track
    assert track["params"]["seed"] == 1 and track["params"]["task"] == "text2music"
    assert track["params"]["infer_steps"] == GEN.get("infer_steps", 27)
    assert "variant" not in track
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


def test_backends_list_reports_only_providers_that_work(make_daemon: MakeDaemon) -> None:
    # Before its first session the engine lists the providers it will ask for; onnxruntime-gpu
    # asks for CUDA on a machine without a GPU (like this one), where CUDA does not run.
    engine = FakeEngine()
    state = {**engine.status(), "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]}
    engine.status = lambda: state  # type: ignore[method-assign]
    backend = make_daemon(engine).client.result("backends.list")[0]
    assert backend["providers"] == ["CPUExecutionProvider"]
