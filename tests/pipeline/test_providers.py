"""Execution-provider choice, CPU fallback and its one-time warning."""

from __future__ import annotations

import functools
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.pipeline import providers
from lofi_daemon.pipeline.engine import Engine
from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.pipeline.placement import check_session
from lofi_daemon.pipeline.providers import create_session, requested_providers

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
COREML = "CoreMLExecutionProvider"


@pytest.mark.parametrize(
    ("choice", "available", "expected"),
    [
        ("auto", [CUDA, COREML, CPU], [CUDA, CPU]),
        ("auto", [COREML, CPU], [COREML, CPU]),
        ("auto", ["TensorrtExecutionProvider", CUDA, CPU], [CUDA, CPU]),
        ("auto", [CPU], [CPU]),
        ("auto", [], [CPU]),
        ("cpu", [CUDA, CPU], [CPU]),
        ("cpu", [], [CPU]),
        ("cuda", [CUDA, CPU], [CUDA, CPU]),
        ("coreml", [COREML, CPU], [COREML, CPU]),
    ],
)
def test_requested_providers(choice: str, available: list[str], expected: list[str]) -> None:
    assert requested_providers(choice, available) == expected


@pytest.mark.parametrize(
    ("choice", "available"), [("cuda", [CPU]), ("cuda", [COREML, CPU]), ("coreml", [CUDA, CPU])]
)
def test_unavailable_explicit_provider_is_an_error(choice: str, available: list[str]) -> None:
    with pytest.raises(LofiError) as info:
        requested_providers(choice, available)
    assert info.value.code == errors.MODEL_LOAD_FAILED
    assert f"execution provider {choice} is not available" in info.value.message
    assert all(name in info.value.message for name in available)
    assert "provider=auto or cpu" in info.value.remedy


def test_unknown_provider_is_an_invalid_parameter() -> None:
    with pytest.raises(LofiError) as info:
        requested_providers("tpu", [CPU])
    assert info.value.code == errors.INVALID_PARAMETER
    assert "'tpu'" in info.value.message and "auto, cpu, cuda, coreml" in info.value.message


def test_engine_rejects_an_unavailable_provider_up_front(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU])
    with pytest.raises(LofiError) as info:
        Engine(tmp_path, provider="cuda")
    assert info.value.code == errors.MODEL_LOAD_FAILED


def test_requested_providers_reads_onnxruntime_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: [COREML, CPU])
    assert requested_providers("auto") == [COREML, CPU]


def test_missing_model_file_is_model_not_found(tmp_path: Path) -> None:
    with pytest.raises(LofiError) as info:
        create_session(tmp_path / "absent.onnx", [CPU], None)
    assert info.value.code == errors.MODEL_NOT_FOUND


def test_session_options_threads() -> None:
    assert providers.session_options(3).intra_op_num_threads == 3
    assert providers.session_options(None).intra_op_num_threads == 0  # onnxruntime's default
    assert providers.session_options(None).log_severity_level == 3


def provider_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == providers.__name__ and r.levelno >= logging.WARNING
    ]


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget warnings other tests of this process already gave."""
    monkeypatch.setattr(providers, "_warned", set())


def test_auto_falls_back_to_cpu_and_warns_once(
    tiny_models: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fresh_warnings: None,
) -> None:
    # onnxruntime-gpu lists CUDA even where its libraries are missing; list it on any build.
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    probe = ort.InferenceSession(str(tiny_models / "vocoder.onnx"), providers=[CUDA, CPU])
    if CUDA in probe.get_providers():
        pytest.skip("CUDA is usable on this machine, so there is no fallback to observe")

    caplog.set_level(logging.WARNING, logger=providers.__name__)
    engine = Engine(tiny_models, provider="auto")
    params = GenerationParams(prompt="lofi", duration_sec=5.0, seed=1, infer_steps=1)
    result = engine.generate(params, tmp_path / "t.wav")
    assert result.providers == [CPU]
    assert engine.providers_in_use() == [CPU]
    assert engine.status()["providers"] == [CPU]

    # A second engine in the same process falls back again, silently.
    second = Engine(tiny_models, provider="auto")
    assert second._runner("vocoder").session.get_providers() == [CPU]
    warnings = provider_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"{CUDA} is not usable, running on CPU")


def test_corrupt_model_under_a_gpu_provider_is_not_blamed_on_the_provider(
    tiny_models: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, fresh_warnings: None
) -> None:
    path = tmp_path / "text_encoder.onnx"
    shutil.copyfile(tiny_models / "text_encoder.onnx", path)
    data = bytearray(path.read_bytes())
    data[:4096] = b"\xff" * 4096
    path.write_bytes(bytes(data))
    caplog.set_level(logging.WARNING, logger=providers.__name__)
    with pytest.raises(LofiError) as info:
        create_session(path, [CUDA, CPU], None)
    assert info.value.code == errors.MODEL_LOAD_FAILED
    assert "cannot load text_encoder.onnx" in info.value.message
    assert provider_warnings(caplog) == []


def test_probe_model_runs_on_cpu() -> None:
    # The hand-encoded ONNX bytes are a valid model: y = x.
    session = ort.InferenceSession(providers.probe_model(), providers=[CPU])
    [out] = session.run(None, {"x": np.array([2.5], dtype=np.float32)})
    assert out.tolist() == [2.5]


def test_working_providers_reports_only_providers_that_run(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # This machine has no GPU (onnxruntime-gpu lists CUDA anyway): the probe drops CUDA.
    probe = ort.InferenceSession(providers.probe_model(), providers=[CUDA, CPU])
    if CUDA in probe.get_providers():
        pytest.skip("CUDA is usable on this machine")
    capfd.readouterr()
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(
        providers, "_provider_works", functools.cache(providers._provider_works.__wrapped__)
    )
    assert providers.working_providers() == [CPU]
    assert providers.working_providers([CUDA, "TensorrtExecutionProvider", CPU]) == [CPU]
    assert providers.working_providers([]) == []
    out, _ = capfd.readouterr()
    assert out == "", "the probe must keep onnxruntime's messages off stdout (the protocol channel)"


def test_working_providers_probes_each_provider_once(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[list[str]] = []
    real = ort.InferenceSession

    def counting(*args: Any, **kwargs: Any) -> ort.InferenceSession:
        created.append(list(kwargs["providers"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", counting)
    monkeypatch.setattr(
        providers, "_provider_works", functools.cache(providers._provider_works.__wrapped__)
    )
    for _ in range(3):
        providers.working_providers([CUDA, CPU])
    assert created == [[CUDA, CPU]]


class _Node:
    def __init__(self, name: str, op_type: str) -> None:
        self.name, self.op_type = name, op_type


class _Subgraph:
    def __init__(self, ep_name: str, nodes: list[_Node]) -> None:
        self.ep_name, self._nodes = ep_name, nodes

    def get_nodes(self) -> list[_Node]:
        return self._nodes


class _GpuSession:
    """What a CUDA session reports when onnxruntime left a MatMul on CPU."""

    def get_providers(self) -> list[str]:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    def get_provider_graph_assignment_info(self) -> list[_Subgraph]:
        return [
            _Subgraph("CUDAExecutionProvider", [_Node("attn_0", "MatMul")]),
            _Subgraph("CPUExecutionProvider", [_Node("shape_0", "Shape"), _Node("ff_3", "MatMul")]),
        ]


def test_a_gpu_session_names_the_heavy_nodes_left_on_cpu(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lofi_daemon.pipeline.placement"):
        check_session("denoiser", _GpuSession())
    assert "denoiser: 1 heavy node(s) run on CPU instead of CUDAExecutionProvider" in caplog.text
    assert "ff_3 (MatMul)" in caplog.text and "shape_0" not in caplog.text


def test_gpu_sessions_record_their_placement() -> None:
    assert (
        providers.session_options(1, record_placement=True).get_session_config_entry(
            providers.RECORD_ASSIGNMENT
        )
        == "1"
    )
