"""The fp16 rule of export/precision.py on a small hand-built graph with every kind of node."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.errors import ExportError
from export.precision import (
    FP16_MAX,
    WeightReader,
    convert_to_fp16,
    fp16_weight_names,
    node_precisions,
    plan_fp16,
)

D = 32


def _graph(tmp_path: Path, *, big: float = 1.0) -> Path:
    """x [1,T,D], t [1] → a block with a norm, a weight MatMul, a residual Add, attention scores
    (activation × activation), a softmax, a timestep MLP (Sin → Gemm) and a MatMul with a shared
    weight and one whose weight holds ``big``."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((D, D)).astype(np.float32) * 0.3, "w")
    w_t = numpy_helper.from_array(rng.standard_normal((D, D)).astype(np.float32) * 0.3, "w_t")
    w_big = rng.standard_normal((D, D)).astype(np.float32) * 0.3
    w_big[0, 0] = big
    shared = numpy_helper.from_array(rng.standard_normal((D, D)).astype(np.float32) * 0.3, "s")
    scale = numpy_helper.from_array(np.ones(D, np.float32), "ln_scale")
    nodes = [
        helper.make_node("LayerNormalization", ["x", "ln_scale"], ["h"], name="norm", axis=-1),
        helper.make_node("MatMul", ["h", "w"], ["p"], name="proj"),
        helper.make_node("Add", ["x", "p"], ["r"], name="residual"),
        helper.make_node("Transpose", ["r"], ["rt"], name="rt", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["r", "rt"], ["scores"], name="scores"),
        helper.make_node("Softmax", ["scores"], ["att"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["att", "r"], ["mixed"], name="mix"),
        helper.make_node("Unsqueeze", ["t", "axes0"], ["t2"], name="t2"),
        helper.make_node("Expand", ["t2", "shape_1d"], ["tf"], name="tf"),
        helper.make_node("Sin", ["tf"], ["ts"], name="sin"),
        helper.make_node("Gemm", ["ts", "w_t"], ["temb"], name="temb"),
        helper.make_node("Unsqueeze", ["temb", "axes0"], ["temb3"], name="temb3"),
        helper.make_node("Add", ["mixed", "temb3"], ["y0"], name="modulate"),
        helper.make_node("MatMul", ["y0", "w_big"], ["y1"], name="big"),
        helper.make_node("MatMul", ["y1", "s"], ["y2"], name="shared_a"),
        helper.make_node("Shape", ["w"], ["w_shape"], name="w_shape"),  # reads no values
        helper.make_node("ReduceSum", ["s"], ["s_sum"], name="shared_b", keepdims=0),  # fp32 too
        helper.make_node("Add", ["y2", "s_sum"], ["y3"], name="out"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "T", D]),
            helper.make_tensor_value_info("t", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor_value_info("y3", TensorProto.FLOAT, [1, "T", D])],
        [
            w,
            w_t,
            numpy_helper.from_array(w_big, "w_big"),
            shared,
            scale,
            numpy_helper.from_array(np.array([0], np.int64), "axes0"),
            numpy_helper.from_array(np.array([1, D], np.int64), "shape_1d"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    path = tmp_path / "g.onnx"
    onnx.save_model(model, str(path))
    return path


def _run(path: Path, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"x": x, "t": t})[0])


def test_the_rule_keeps_fp32_islands_and_halves_the_weight_products(tmp_path: Path) -> None:
    source = _graph(tmp_path)
    result = convert_to_fp16(source, tmp_path / "half.onnx")
    model = onnx.load(str(result.path))
    kinds = node_precisions(model)
    assert kinds["proj"] == "fp16"  # weight × activation
    assert kinds["big"] == "fp16"  # every weight value fits fp16
    assert kinds["shared_a"] == "fp16"  # gets a cast of the shared weight
    for island in ("norm", "residual", "scores", "softmax", "mix", "sin", "temb", "modulate"):
        assert kinds[island] == "fp32", island
    assert set(fp16_weight_names(model)) == {"w", "w_big"}  # "s" stays fp32: an Add reads it
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.input}
    assert types == {"x": TensorProto.FLOAT, "t": TensorProto.FLOAT}
    assert model.graph.output[0].name == "y3"
    x = np.random.default_rng(1).standard_normal((1, 5, D)).astype(np.float32)
    t = np.array([0.7], np.float32)
    want, got = _run(source, x, t), _run(result.path, x, t)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-2 * float(np.abs(want).max()))


def test_a_weight_beyond_the_fp16_range_keeps_its_product_fp32(tmp_path: Path) -> None:
    source = _graph(tmp_path, big=2 * FP16_MAX)
    model = onnx.load(str(source))
    plan = plan_fp16(model, WeightReader(source))
    assert plan.kept["big"] == "weight beyond the fp16 range"
    assert "w_big" not in plan.weights and "w" in plan.weights
    result = convert_to_fp16(source, tmp_path / "half.onnx")
    x = np.ones((1, 3, D), np.float32)
    assert np.isfinite(_run(result.path, x, np.array([0.1], np.float32))).all()


def test_external_data_is_streamed_to_a_file_of_its_own(tmp_path: Path) -> None:
    source = _graph(tmp_path)
    model = onnx.load(str(source))
    onnx.save_model(
        model,
        str(tmp_path / "ext.onnx"),
        save_as_external_data=True,
        location="ext.onnx.data",
        size_threshold=1024,
    )
    result = convert_to_fp16(tmp_path / "ext.onnx", tmp_path / "out" / "ext.onnx")
    assert result.external_data == tmp_path / "out" / "ext.onnx.data"
    assert result.external_data.stat().st_size < (tmp_path / "ext.onnx.data").stat().st_size
    x = np.ones((1, 4, D), np.float32)
    t = np.array([0.3], np.float32)
    np.testing.assert_allclose(
        _run(result.path, x, t), _run(tmp_path / "ext.onnx", x, t), rtol=2e-2, atol=2e-2
    )


def test_the_source_is_never_overwritten(tmp_path: Path) -> None:
    source = _graph(tmp_path)
    before = source.read_bytes()
    with pytest.raises(ExportError, match="must not overwrite"):
        convert_to_fp16(source, source)
    assert source.read_bytes() == before
