"""``generate`` on a backend: which one a request runs on, its own parameters and errors, and the
radio's refusal of ACE-Step 1.5 (an in-process daemon with a fake engine per backend)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from daemon_checks import MakeDaemon, assert_generation_protocol, error_code
from daemon_doubles import DaemonProcess, FakeEngine, InProcessDaemon

from lofi_daemon import errors

TURBO = "ace-step-1.5"
TURBO_GEN: dict[str, Any] = {"prompt": "rainy night lofi, soft piano", "duration_sec": 5}


def daemon_with(
    make_daemon: MakeDaemon,
    *,
    v1: str = "ready",
    turbo: str = "ready",
    default: str | None = None,
) -> tuple[InProcessDaemon, FakeEngine, FakeEngine]:
    """A daemon whose v1 and 1.5 engines are doubles in the given states."""
    v1_engine = FakeEngine(state=v1)
    turbo_engine = FakeEngine(state=turbo, version="fake-ace-step-1.5-turbo")
    daemon = make_daemon(v1_engine)
    daemon.server.handlers.backends.use(TURBO, turbo_engine)
    daemon.server.handlers.backends.default = default
    return daemon, v1_engine, turbo_engine


def sidecar(path: str) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads(Path(path).with_suffix(".json").read_text())
    return meta


def test_a_request_naming_turbo_runs_on_its_engine(make_daemon: MakeDaemon) -> None:
    daemon, v1, turbo = daemon_with(make_daemon)
    client = daemon.client
    reply = client.call(
        "generate",
        {
            **TURBO_GEN,
            "backend": TURBO,
            "lyrics": "la la",
            "metadata": {"bpm": 84, "key": "A minor"},
        },
    )
    assert reply["result"]["backend"] == TURBO
    done = assert_generation_protocol(client, reply)
    assert done["backend"] == TURBO and done["model_version"] == "fake-ace-step-1.5-turbo"
    assert v1.calls == [] and len(turbo.calls) == 1
    params = turbo.calls[0]
    assert (params.backend, params.bpm, params.keyscale, params.lyrics) == (
        TURBO,
        84,
        "A minor",
        "la la",
    )
    start = client.events(reply["result"]["track_id"], "generation_start")[0]["params"]
    assert start["backend"] == TURBO and start["infer_steps"] == 8
    meta = sidecar(done["path"])
    assert meta["backend"] == TURBO and meta["params"]["bpm"] == 84
    # its latents are not v1's: no v1 task may start from them (the audio is used instead)
    assert not Path(done["path"]).with_suffix(".latents.npy").exists()


def test_the_same_request_on_each_backend_is_a_different_track(make_daemon: MakeDaemon) -> None:
    daemon, _, _ = daemon_with(make_daemon)
    client = daemon.client
    v1 = client.result("generate", {**TURBO_GEN, "seed": 5})
    turbo = client.result("generate", {**TURBO_GEN, "seed": 5, "backend": TURBO})
    assert v1["backend"] == "ace-step" and v1["track_id"] != turbo["track_id"]
    v1_done = client.terminal(v1["track_id"])
    assert v1_done["method"] == "generation_complete"
    assert Path(v1_done["params"]["path"]).with_suffix(".latents.npy").is_file()
    assert client.terminal(turbo["track_id"])["method"] == "generation_complete"
    again = client.result("generate", {**TURBO_GEN, "seed": 5, "backend": TURBO})
    assert again["status"] == "cached" and again["track_id"] == turbo["track_id"]


@pytest.mark.parametrize(
    ("v1", "turbo", "default", "expected"),
    [
        ("ready", "ready", None, "ace-step"),  # both installed, none configured: v1
        ("not_installed", "ready", None, TURBO),  # the only installed one
        ("ready", "not_installed", None, "ace-step"),
        ("not_installed", "not_installed", None, "ace-step"),
        ("ready", "ready", TURBO, TURBO),  # the configured one (serve --backend)
    ],
)
def test_the_default_backend(
    make_daemon: MakeDaemon, v1: str, turbo: str, default: str | None, expected: str
) -> None:
    daemon, _, _ = daemon_with(make_daemon, v1=v1, turbo=turbo, default=default)
    entries = daemon.client.result("backends.list")
    assert [e["name"] for e in entries if e["default"]] == [expected]
    reply = daemon.client.call("generate", {**TURBO_GEN, "seed": 1})
    if "error" in reply:  # nothing installed: the v1 error
        assert expected == "ace-step" and error_code(reply) == errors.MODEL_NOT_FOUND
    else:
        assert reply["result"]["backend"] == expected


def test_backends_list_reports_each_backend_state(make_daemon: MakeDaemon) -> None:
    daemon, _, _ = daemon_with(make_daemon, turbo="error")
    v1, turbo = daemon.client.result("backends.list")
    assert (v1["name"], v1["status"]) == ("ace-step", "ready")
    assert (turbo["name"], turbo["status"], turbo["title"]) == (
        TURBO,
        "error",
        "ACE-Step 1.5 turbo",
    )
    assert turbo["model_version"] is None and turbo["sample_rate"] == 48000


@pytest.mark.parametrize(
    ("params", "code", "needles"),
    [
        ({"backend": "musicgen"}, errors.INVALID_BACKEND, ("unknown backend 'musicgen'",)),
        ({"backend": 3}, errors.INVALID_BACKEND, ("unknown backend 3",)),
        (
            {"backend": TURBO, "guidance_scale": 7.0},
            errors.INVALID_PARAMETER,
            ("guidance_scale", TURBO),
        ),
        ({"backend": TURBO, "infer_steps": 8}, errors.INVALID_PARAMETER, ("infer_steps", TURBO)),
        ({"backend": TURBO, "variant": "jazz"}, errors.INVALID_PARAMETER, ("variant", TURBO)),
        (
            {"backend": TURBO, "task": "extend", "extend_right": 5.0},
            errors.INVALID_PARAMETER,
            ("task 'extend' is not available", TURBO),
        ),
        ({"lyrics": "la la"}, errors.INVALID_PARAMETER, ("lyrics", "backend ace-step")),
        ({"vocal_language": "de"}, errors.INVALID_PARAMETER, ("vocal_language", "ace-step")),
        ({"metadata": {"bpm": 90}}, errors.INVALID_PARAMETER, ("metadata", "ace-step")),
        (
            {"backend": TURBO, "metadata": {"tempo": 90}},
            errors.INVALID_PARAMETER,
            ("unknown metadata key 'tempo'; use bpm, key, time_signature",),
        ),
        ({"backend": TURBO, "metadata": {"bpm": 500}}, errors.INVALID_PARAMETER, ("bpm",)),
        ({"backend": TURBO, "metadata": "90 bpm"}, errors.INVALID_PARAMS, ("metadata",)),
        (
            {"backend": TURBO, "lyrics": "x" * 20000},
            errors.INVALID_PARAMETER,
            ("lyrics are 20000 characters",),
        ),
        (
            {"backend": TURBO, "duration_sec": 700},
            errors.INVALID_DURATION,
            ("between 5 and 600",),
        ),
        ({"duration_sec": 300}, errors.INVALID_DURATION, ("between 5 and 240",)),
    ],
)
def test_bad_backend_requests_are_refused_before_any_work(
    make_daemon: MakeDaemon,
    tmp_path: Path,
    params: dict[str, Any],
    code: int,
    needles: tuple[str, ...],
) -> None:
    daemon, v1, turbo = daemon_with(make_daemon)
    reply = daemon.client.call("generate", {**TURBO_GEN, **params})
    assert error_code(reply) == code
    for needle in needles:
        assert needle in reply["error"]["message"], reply["error"]["message"]
    assert v1.calls == [] and turbo.calls == []
    assert not any((tmp_path / "cache").glob("*.wav"))


def test_turbo_takes_up_to_600_seconds(make_daemon: MakeDaemon) -> None:
    daemon, _, turbo = daemon_with(make_daemon)
    reply = daemon.client.call("generate", {**TURBO_GEN, "backend": TURBO, "duration_sec": 300})
    assert reply["result"]["status"] == "queued"
    daemon.client.terminal(reply["result"]["track_id"], timeout=60)
    assert turbo.calls[0].duration_sec == 300


def test_a_backend_that_is_not_installed_is_named(make_daemon: MakeDaemon) -> None:
    daemon, _, _ = daemon_with(make_daemon, turbo="not_installed")
    reply = daemon.client.call("generate", {**TURBO_GEN, "backend": TURBO})
    assert error_code(reply) == errors.MODEL_NOT_FOUND
    assert reply["error"]["message"].startswith(f"{TURBO}: ")


def test_the_radio_refuses_turbo(make_daemon: MakeDaemon) -> None:
    daemon, _, _ = daemon_with(make_daemon)
    client = daemon.client
    reply = client.call("radio.start", {"prompt": "lofi", "backend": TURBO})
    assert error_code(reply) == errors.INVALID_PARAMETER
    assert "extend" in reply["error"]["message"] and TURBO in reply["error"]["message"]
    assert error_code(client.call("radio.start", {"prompt": "lofi", "backend": "x"})) == (
        errors.INVALID_BACKEND
    )
    daemon.server.handlers.backends.default = TURBO
    assert error_code(client.call("radio.start", {"prompt": "lofi"})) == errors.INVALID_PARAMETER
    started = client.result("radio.start", {"prompt": "lofi", "backend": "ace-step", "seed": 1})
    assert "station_id" in started
    client.result("radio.stop")


def test_the_real_daemon_generates_on_the_tiny_1_5_model(
    turbo_models: Path, tmp_path: Path
) -> None:
    """``lofi-daemon serve`` with only the 1.5 model installed: a generate that names no backend
    runs on it, end to end, with lyrics and metadata."""
    daemon = DaemonProcess(
        [
            "--models", str(tmp_path / "models" / "ace-step"),
            "--cache-dir", str(tmp_path / "cache"),
            "--log-file", str(tmp_path / "daemon.log"),
            "--threads", "1",
        ],
        stderr_path=tmp_path / "stderr.txt",
        env={"LOFI_MODELS_DIR_ACE_STEP_1_5": str(turbo_models)},
    )  # fmt: skip
    try:
        v1, turbo = daemon.client.result("backends.list", timeout=60)
        assert (v1["status"], turbo["status"], turbo["default"]) == ("not_installed", "ready", True)
        request = {
            **TURBO_GEN,
            "seed": 3,
            "lyrics": "[verse]\nrain on the glass",
            "vocal_language": "en",
            "metadata": {"bpm": 80, "key": "D minor", "time_signature": 4},
        }
        reply = daemon.client.call("generate", request, timeout=60)
        assert reply["result"]["backend"] == TURBO, reply
        done = assert_generation_protocol(daemon.client, reply)
        assert done["backend"] == TURBO and done["model_version"] == turbo["model_version"]
        info = sf.info(done["path"])
        assert (info.samplerate, info.channels, info.frames) == (48000, 2, 5 * 48000)
        refused = daemon.client.call("generate", {**request, "guidance_scale": 3.0})
        assert error_code(refused) == errors.INVALID_PARAMETER
        assert daemon.client.result("shutdown") == {"status": "shutting_down"}
        assert daemon.wait(60) == 0
    finally:
        daemon.kill()
