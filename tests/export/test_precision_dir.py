"""fp16 model directories: ``lofi-export to-fp16`` on both backends' tiny exports, the islands in
the real graphs, the size, and fp16-vs-fp32 audio through the real runtime.

On random weights the audio comparison is a sanity check of the conversion (nothing overflows,
no island is broken), not a statement about how real weights sound in fp16. On CPU, ONNX Runtime
runs the fp16 matrix products with fp32 kernels, so the difference here is the weights' rounding.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import onnx
import pytest

from export.errors import ExportError
from export.precision import node_precisions
from export.precision_check import compare_audio, compare_graphs
from export.precision_dir import convert_model_dir, fp16_model_version
from lofi_daemon.model.manifest import load_manifest, verify_hashes
from lofi_daemon.turbo.manifest import load_turbo_manifest

ISLANDS = ("ReduceMean", "Softmax", "Sin", "Cos", "LayerNormalization", "Sqrt", "Exp")


def _weight_bytes(model: onnx.ModelProto) -> int:
    return sum(
        onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize * math.prod(t.dims)
        for t in model.graph.initializer
    )


def test_v1_fp16_directory_is_complete_and_keeps_its_islands(
    tiny_models: Path, fp16_models: Path
) -> None:
    manifest = load_manifest(fp16_models)
    verify_hashes(manifest)
    assert manifest.precision == "fp16"
    assert manifest.model_version.startswith("ace-step-v1-fp16-")
    assert manifest.model_version != load_manifest(tiny_models).model_version
    assert (
        manifest.raw["graphs"]
        == json.loads((tiny_models / "manifest.json").read_text(encoding="utf-8"))["graphs"]
    )
    denoiser = onnx.load(str(manifest.graph_path("denoiser")))
    kinds = node_precisions(denoiser)
    by_op = Counter((n.op_type, kinds[n.name]) for n in denoiser.graph.node)
    assert by_op[("MatMul", "fp16")] > 0 and by_op[("Conv", "fp16")] > 0
    for op in ISLANDS:
        assert by_op[(op, "fp16")] == 0, op
    assert by_op[("Softmax", "fp32")] > 0 and by_op[("ReduceMean", "fp32")] > 0
    fp32 = onnx.load(str(tiny_models / "denoiser.onnx"))
    assert _weight_bytes(denoiser) < 0.6 * _weight_bytes(fp32)
    # the text encoder stays fp32 (T5's feed-forward overflows fp16): the very same file
    assert (fp16_models / "text_encoder.onnx").read_bytes() == (
        tiny_models / "text_encoder.onnx"
    ).read_bytes()


def test_fp16_graphs_match_fp32_graph_by_graph(tiny_models: Path, fp16_models: Path) -> None:
    report = compare_graphs(tiny_models, fp16_models, frames=16)
    assert set(report) == set(load_manifest(tiny_models).graphs)
    for name, figures in report.items():
        assert figures["snr_db"] >= 40, (name, figures)


@pytest.mark.slow
def test_fp16_audio_is_within_30_db_of_fp32_on_both_backends(
    tiny_models: Path, fp16_models: Path, turbo_models: Path, turbo_fp16_models: Path
) -> None:
    assert compare_audio(tiny_models, fp16_models, duration=5.0) >= 30
    assert compare_audio(turbo_models, turbo_fp16_models, duration=5.0) >= 30


def test_turbo_fp16_directory_loads(turbo_models: Path, turbo_fp16_models: Path) -> None:
    manifest = load_turbo_manifest(turbo_fp16_models)
    assert manifest.precision == "fp16"
    assert manifest.model_version.startswith("ace-step-1.5-turbo-fp16-")
    dit = onnx.load(str(turbo_fp16_models / "dit.onnx"))
    kinds = node_precisions(dit)
    assert any(kinds[n.name] == "fp16" for n in dit.graph.node if n.op_type == "MatMul")
    assert all(kinds[n.name] == "fp32" for n in dit.graph.node if n.op_type in ISLANDS)


def test_to_fp16_refuses_what_it_cannot_convert(
    tiny_models: Path, fp16_models: Path, tmp_path: Path
) -> None:
    with pytest.raises(ExportError, match="precision is 'fp16', not fp32"):
        convert_model_dir(fp16_models, tmp_path / "again")
    assert not (tmp_path / "again").exists()
    with pytest.raises(ExportError, match="not a model directory"):
        convert_model_dir(tmp_path, tmp_path / "out")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep")
    with pytest.raises(ExportError, match="not empty"):
        convert_model_dir(tiny_models, tmp_path / "taken")
    assert (tmp_path / "taken" / "mine.txt").read_text() == "keep"


def test_fp16_model_version_names_both_backends() -> None:
    assert fp16_model_version({"model_version": "ace-step-v1-fp32-0123456789ab"}) == (
        "ace-step-v1-fp16-0123456789ab"
    )
    raw = {"backend": "ace-step-1.5", "model_version": "ace-step-1.5-turbo-0123456789ab"}
    assert fp16_model_version(raw) == "ace-step-1.5-turbo-fp16-0123456789ab"
