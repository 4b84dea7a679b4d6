"""Node placement: onnxruntime's assignment record and session profiles, on a tiny graph.

On this machine everything runs on CPU, so the "heavy node left on CPU by a CUDA session" case is
checked on a fabricated profile and on fabricated assignment records.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.pipeline import placement
from lofi_daemon.pipeline.placement import (
    PlacedNode,
    heavy_cpu_nodes,
    placement_from_assignment,
    placement_from_profile,
    session_placement,
    warn_heavy_on_cpu,
)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def tiny_graph(path: Path) -> Path:
    """x @ W → Relu → Softmax: two heavy nodes and a light one, each with a name."""
    weight = helper.make_tensor("W", TensorProto.FLOAT, [4, 4], np.eye(4, dtype=np.float32).ravel())
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["y"], name="proj"),
            helper.make_node("Relu", ["y"], ["z"], name="act"),
            helper.make_node("Softmax", ["z"], ["out"], name="probs"),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 4])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.save(model, path)
    return path


def test_the_assignment_record_lists_every_node_on_cpu(tmp_path: Path) -> None:
    placed = session_placement(tiny_graph(tmp_path / "tiny.onnx"), "cpu", threads=1)
    assert placed.source == "assignment" and placed.requested == (CPU,)
    assert {(n.name, n.op_type, n.provider) for n in placed.nodes} == {
        ("proj", "MatMul", CPU),
        ("act", "Relu", CPU),
        ("probs", "Softmax", CPU),
    }
    assert placed.report() == {
        "source": "assignment",
        "session_providers": [CPU],
        "provider_counts": {CPU: 3},
        "heavy_on_cpu": [],  # CPU was asked for: nothing fell back
    }


def test_a_real_cpu_profile_gives_the_same_nodes(tmp_path: Path) -> None:
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / "profile")
    session = ort.InferenceSession(
        str(tiny_graph(tmp_path / "tiny.onnx")), options, providers=[CPU]
    )
    session.run(None, {"x": np.ones((2, 4), np.float32)})
    profile = Path(session.end_profiling())
    placed = placement_from_profile(profile, [CPU])
    assert placed.source == "profile"
    assert sorted((n.name, n.op_type, n.provider) for n in placed.nodes) == [
        ("act", "Relu", CPU),
        ("probs", "Softmax", CPU),
        ("proj", "MatMul", CPU),
    ]
    assert placed.heavy_cpu_nodes() == []
    # The same nodes, had a CUDA session put them on CPU, are the heavy fallbacks.
    assert sorted(placement_from_profile(profile, [CUDA, CPU]).heavy_cpu_nodes()) == [
        "probs (Softmax)",
        "proj (MatMul)",
    ]


def _event(name: str, op: str, provider: str, suffix: str = "_kernel_time") -> dict[str, object]:
    return {
        "cat": "Node",
        "name": name + suffix,
        "ph": "X",
        "args": {"op_name": op, "provider": provider},
    }


def test_a_cuda_profile_names_the_heavy_nodes_left_on_cpu(tmp_path: Path) -> None:
    events = [
        {"cat": "Session", "name": "model_run", "args": {}},
        _event("attn/MatMul", "MatMul", CUDA, "_fence_before"),
        _event("attn/MatMul", "MatMul", CUDA),
        _event("attn/Softmax", "Softmax", CPU),
        _event("shape_of", "Shape", CPU),
        _event("conv_out", "ConvTranspose", CPU),
        _event("conv_out", "ConvTranspose", CPU, "_fence_after"),
        _event("norm", "LayerNormalization", CUDA),
        _event("fused", "FusedMatMul", CPU),
    ]
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(events))
    placed = placement_from_profile(path, [CUDA, CPU])
    assert placed.provider_counts() == {CPU: 4, CUDA: 2}  # each node once
    assert placed.heavy_cpu_nodes() == [
        "attn/Softmax (Softmax)",
        "conv_out (ConvTranspose)",
        "fused (FusedMatMul)",
    ]
    wrapped = placement_from_profile({"traceEvents": events}, [CUDA, CPU])  # type: ignore[arg-type]
    assert wrapped.heavy_cpu_nodes() == placed.heavy_cpu_nodes()


def test_assignment_records_from_a_cuda_session() -> None:
    def subgraph(ep: str, *nodes: tuple[str, str]) -> SimpleNamespace:
        made = [SimpleNamespace(name=n, op_type=op, domain="") for n, op in nodes]
        return SimpleNamespace(ep_name=ep, get_nodes=lambda: made)

    records = [
        subgraph(CUDA, ("q_proj", "MatMul"), ("attn", "MultiHeadAttention")),
        subgraph(CPU, ("shape", "Shape"), ("gather", "Gather")),
        subgraph(CPU, ("", "Einsum")),
    ]
    placed = placement_from_assignment(records, [CUDA, CPU])
    assert placed.provider_counts() == {CPU: 3, CUDA: 2}
    assert placed.heavy_cpu_nodes() == ["? (Einsum)"]


def test_heavy_nodes_on_cpu_only_count_when_another_provider_came_first() -> None:
    nodes = [PlacedNode("mm", "MatMul", CPU), PlacedNode("cast", "Cast", CPU)]
    assert heavy_cpu_nodes(nodes, [CUDA, CPU]) == ["mm (MatMul)"]
    assert heavy_cpu_nodes(nodes, [CPU]) == []
    assert heavy_cpu_nodes(nodes, []) == []


def test_the_warning_names_the_nodes(caplog: pytest.LogCaptureFixture) -> None:
    nodes = tuple(PlacedNode(f"mm{i}", "MatMul", CPU) for i in range(14))
    placed = placement.Placement(nodes, "profile", (CUDA, CPU))
    with caplog.at_level(logging.WARNING, logger=placement.__name__):
        warn_heavy_on_cpu("denoiser", placed, limit=2)
    assert caplog.messages == [
        (
            "denoiser: 14 heavy node(s) run on CPU instead of CUDAExecutionProvider: "
            "mm0 (MatMul), mm1 (MatMul) and 12 more"
        )
    ]
    caplog.clear()
    warn_heavy_on_cpu("vocoder", placement.Placement(nodes, "profile", (CPU,)))
    assert caplog.messages == []


@pytest.mark.parametrize("content", ["not json", '{"traceEvents": 3}', "42"])
def test_a_file_that_is_not_a_profile_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "profile.json"
    path.write_text(content)
    with pytest.raises(LofiError) as caught:
        placement_from_profile(path, [CUDA, CPU])
    assert caught.value.code == errors.INVALID_PARAMETER
    assert "profile" in caught.value.message


def test_a_missing_graph_is_model_not_found(tmp_path: Path) -> None:
    with pytest.raises(LofiError) as caught:
        session_placement(tmp_path / "missing.onnx", "cpu")
    assert caught.value.code == errors.MODEL_NOT_FOUND


def test_a_corrupt_graph_is_model_load_failed(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(LofiError) as caught:
        session_placement(path, "cpu")
    assert caught.value.code == errors.MODEL_LOAD_FAILED and "broken.onnx" in caught.value.message
