"""GraphRunner (inference errors → MODEL_INFERENCE_FAILED) and SessionPool (resident sessions,
providers actually used, narrowing after a provider falls back), with fake sessions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.pipeline import providers as providers_module
from lofi_daemon.pipeline import sessions as sessions_module
from lofi_daemon.pipeline.sessions import GraphRunner, SessionPool

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


class FakeSession:
    """Stands in for an ``ort.InferenceSession``: runs ``outputs`` or raises ``error``."""

    def __init__(self, providers: list[str], error: Exception | None = None) -> None:
        self.providers = providers
        self.error = error
        self.calls: list[tuple[Any, dict[str, np.ndarray]]] = []

    def get_providers(self) -> list[str]:
        return list(self.providers)

    def run(self, names: Any, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        self.calls.append((names, feeds))
        if self.error is not None:
            raise self.error
        return (feeds["x"] * 2, feeds["x"] + 1)


def _runner(session: FakeSession, graph: str = "denoiser") -> GraphRunner:
    return GraphRunner(graph, session)


# --- GraphRunner --------------------------------------------------------------------------------


def test_runner_returns_all_outputs_as_a_list_and_first_the_first() -> None:
    session = FakeSession([CPU])
    x = np.arange(3, dtype=np.float32)
    runner = _runner(session)
    outputs = runner({"x": x})
    assert isinstance(outputs, list)
    np.testing.assert_array_equal(outputs[0], x * 2)
    np.testing.assert_array_equal(outputs[1], x + 1)
    np.testing.assert_array_equal(runner.first({"x": x}), x * 2)
    assert session.calls[0][0] is None  # every output requested
    assert session.calls[0][1]["x"] is x


def test_an_inference_error_becomes_model_inference_failed_with_the_graph_name() -> None:
    cause = RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : bad shape\nstack trace")
    runner = _runner(FakeSession([CPU], cause), graph="vocoder")
    with pytest.raises(LofiError) as info:
        runner({"x": np.zeros(1)})
    assert info.value.code == errors.MODEL_INFERENCE_FAILED
    assert (
        info.value.message
        == "vocoder failed: [ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : bad shape"
    )
    assert info.value.__cause__ is cause


def test_a_long_error_message_is_cut() -> None:
    runner = _runner(FakeSession([CPU], ValueError("x" * 1000)), graph="dcae_decoder")
    with pytest.raises(LofiError) as info:
        runner.first({"x": np.zeros(1)})
    assert info.value.code == errors.MODEL_INFERENCE_FAILED
    assert info.value.message == "dcae_decoder failed: " + "x" * 300


def test_an_error_without_a_message_is_still_model_inference_failed() -> None:
    runner = _runner(FakeSession([CPU], MemoryError()), graph="denoiser")
    with pytest.raises(LofiError) as info:
        runner({"x": np.zeros(1)})
    assert info.value.code == errors.MODEL_INFERENCE_FAILED
    assert info.value.message == "denoiser failed: MemoryError"


# --- SessionPool --------------------------------------------------------------------------------


class FakeCreate:
    """Replaces ``providers.create_session``: records each call, returns sessions that report
    ``got`` (or ``providers`` as requested, when ``got`` is None) as their providers."""

    def __init__(self, got: list[str] | None = None) -> None:
        self.got = got
        self.calls: list[tuple[Path, list[str], int | None, bool]] = []
        self.sessions: list[FakeSession] = []

    def __call__(
        self, path: Path, providers: list[str], threads: int | None, *, strict: bool = False
    ) -> FakeSession:
        self.calls.append((path, list(providers), threads, strict))
        session = FakeSession(self.got if self.got is not None else list(providers))
        self.sessions.append(session)
        return session


@pytest.fixture
def with_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """An onnxruntime build that offers CUDA (whether it can run is the session's answer)."""
    monkeypatch.setattr(providers_module.ort, "get_available_providers", lambda: [CUDA, CPU])


def _fake_create(monkeypatch: pytest.MonkeyPatch, got: list[str] | None = None) -> FakeCreate:
    fake = FakeCreate(got)
    monkeypatch.setattr(providers_module, "create_session", fake)
    return fake


def test_resident_sessions_are_created_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = _fake_create(monkeypatch)
    pool = SessionPool("cpu", threads=3)
    first = pool.runner("vocoder", tmp_path / "vocoder.onnx", resident=True)
    second = pool.runner("vocoder", tmp_path / "vocoder.onnx", resident=True)
    assert (first.graph, second.graph) == ("vocoder", "vocoder")
    assert first.session is second.session
    assert fake.calls == [(tmp_path / "vocoder.onnx", [CPU], 3, True)]  # explicit provider: strict
    pool.runner("dcae_decoder", tmp_path / "dcae_decoder.onnx", resident=True)
    assert len(fake.calls) == 2  # one per graph


def test_non_resident_sessions_are_created_every_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = _fake_create(monkeypatch)
    pool = SessionPool("cpu")
    a = pool.runner("text_encoder", tmp_path / "t.onnx")
    b = pool.runner("text_encoder", tmp_path / "t.onnx")
    assert a.session is not b.session
    assert len(fake.calls) == 2
    assert a.session is fake.sessions[0]


def test_clear_drops_resident_sessions_and_the_providers_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, with_cuda: None
) -> None:
    fake = _fake_create(monkeypatch)
    pool = SessionPool("auto")
    before = pool.runner("vocoder", tmp_path / "v.onnx", resident=True)
    assert pool.providers_in_use() == [CUDA]
    pool.clear()
    assert pool.providers_in_use() == [CUDA, CPU]  # nothing ran yet: the requested list
    after = pool.runner("vocoder", tmp_path / "v.onnx", resident=True)
    assert after.session is not before.session
    assert len(fake.calls) == 2


def test_providers_in_use_before_and_after_a_session(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, with_cuda: None
) -> None:
    fake = _fake_create(monkeypatch)
    pool = SessionPool("auto")
    assert pool.providers_in_use() == [CUDA, CPU]
    pool.runner("denoiser", tmp_path / "d.onnx")
    assert pool.providers_in_use() == [CUDA]  # only the provider that ran, not its CPU fallback
    assert fake.calls[0][1:] == ([CUDA, CPU], None, False)  # auto: not strict


def test_auto_narrows_to_what_ran_after_a_fallback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, with_cuda: None
) -> None:
    fake = _fake_create(monkeypatch, got=[CPU])  # CUDA offered but the session fell back
    pool = SessionPool("auto")
    pool.runner("text_encoder", tmp_path / "t.onnx")
    pool.runner("condition_encoder", tmp_path / "c.onnx")
    pool.runner("denoiser", tmp_path / "d.onnx")
    assert [call[1] for call in fake.calls] == [[CUDA, CPU], [CPU], [CPU]]  # tried once only
    assert pool.providers_in_use() == [CPU]


def test_errors_from_session_creation_pass_through(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def failing(*args: Any, **kwargs: Any) -> FakeSession:
        raise LofiError(errors.MODEL_NOT_FOUND, "model file missing")

    monkeypatch.setattr(providers_module, "create_session", failing)
    pool = SessionPool("cpu")
    with pytest.raises(LofiError) as info:
        pool.runner("vocoder", tmp_path / "v.onnx", resident=True)
    assert info.value.code == errors.MODEL_NOT_FOUND
    assert pool.providers_in_use() == [CPU]


def test_load_times_record_the_latest_creation_per_graph(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = _fake_create(monkeypatch)
    clock = iter([10.0, 12.5, 20.0, 20.25, 30.0, 31.0])
    monkeypatch.setattr(sessions_module.time, "perf_counter", lambda: next(clock))
    pool = SessionPool("cpu")
    assert pool.load_times() == {}
    pool.runner("denoiser", tmp_path / "d.onnx")  # not resident: still timed
    pool.runner("vocoder", tmp_path / "v.onnx", resident=True)
    assert pool.load_times() == {"denoiser": 2.5, "vocoder": 0.25}
    pool.runner("vocoder", tmp_path / "v.onnx", resident=True)  # resident: not created again
    pool.runner("denoiser", tmp_path / "d.onnx")  # the most recent creation wins
    assert pool.load_times() == {"denoiser": 1.0, "vocoder": 0.25}
    assert len(fake.calls) == 3
    copy = pool.load_times()
    copy["x"] = 1.0
    assert "x" not in pool.load_times()  # a copy, not the pool's own dict
