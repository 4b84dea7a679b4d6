"""manifest.json of an exported model directory: schema, hashes, and agreement with the graphs.

The schema (``lofi_daemon/model/manifest.schema.json``, JSON Schema draft 2020-12) is the contract
between ``lofi-export`` (export/manifest_writer.py) and the runtime.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import onnxruntime as ort
import pytest
from jsonschema import Draft202012Validator

from lofi_daemon.model.manifest import REQUIRED_GRAPHS, load_manifest, verify_hashes

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "lofi_daemon" / "model" / "manifest.schema.json"
ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(int64)": "int64",
    "tensor(float16)": "float16",
    "tensor(int32)": "int32",
    "tensor(bool)": "bool",
}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(schema)


@pytest.fixture(scope="module")
def manifest(tiny_models: Path) -> dict[str, Any]:
    return json.loads((tiny_models / "manifest.json").read_text(encoding="utf-8"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_schema_is_a_valid_draft_2020_12_schema(schema: dict[str, Any]) -> None:
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert set(schema["properties"]["graphs"]["required"]) == set(REQUIRED_GRAPHS)


def test_manifest_validates(validator: Draft202012Validator, manifest: dict[str, Any]) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(manifest)]
    assert errors == []


def test_file_hashes_and_sizes_match(tiny_models: Path, manifest: dict[str, Any]) -> None:
    on_disk = {p.name for p in tiny_models.iterdir()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    for name, entry in manifest["files"].items():
        path = tiny_models / name
        assert entry == {"sha256": _sha256(path), "size": path.stat().st_size}, name


def test_every_referenced_file_is_listed(manifest: dict[str, Any]) -> None:
    referenced = [manifest["tokenizer"]["file"], manifest["mel_frontend"]["file"]]
    for graph in manifest["graphs"].values():
        referenced.append(graph["file"])
        if graph["external_data"] is not None:
            referenced.append(graph["external_data"])
    assert set(referenced) <= set(manifest["files"])


def test_source_hashes_match_the_checkpoint(
    tiny_checkpoint: Path, manifest: dict[str, Any]
) -> None:
    files = manifest["source"]["files"]
    on_disk = {
        str(p.relative_to(tiny_checkpoint)) for p in tiny_checkpoint.rglob("*") if p.is_file()
    }
    assert set(files) == on_disk
    for name, entry in files.items():
        path = tiny_checkpoint / name
        assert entry == {"sha256": _sha256(path), "size": path.stat().st_size}, name
    digest = hashlib.sha256(
        json.dumps({k: v["sha256"] for k, v in files.items()}, sort_keys=True).encode()
    ).hexdigest()
    assert manifest["model_version"] == f"ace-step-v1-fp32-{digest[:12]}"


def test_graph_io_matches_the_onnx_files(tiny_models: Path, manifest: dict[str, Any]) -> None:
    for name, graph in manifest["graphs"].items():
        sess = ort.InferenceSession(
            str(tiny_models / graph["file"]), providers=["CPUExecutionProvider"]
        )
        for listed, actual in (
            (graph["inputs"], sess.get_inputs()),
            (graph["outputs"], sess.get_outputs()),
        ):
            assert [t["name"] for t in listed] == [a.name for a in actual], name
            for spec, arg in zip(listed, actual, strict=True):
                assert spec["dtype"] == ORT_DTYPES[arg.type], (name, spec["name"])
                assert len(spec["shape"]) == len(arg.shape), (name, spec["name"])
                for dim, ort_dim in zip(spec["shape"], arg.shape, strict=True):
                    if isinstance(dim, int):
                        assert dim == ort_dim, (name, spec["name"])
                    else:
                        assert isinstance(ort_dim, str), (name, spec["name"])


def test_constants_describe_the_tiny_model(manifest: dict[str, Any]) -> None:
    constants = manifest["constants"]
    assert constants["denoiser_layers"] == 20
    assert constants["text_encoder_layers"] == 10
    assert constants["conformer_blocks"] == 6
    assert constants["text_hidden_size"] == 32
    assert constants["erg"] == {
        "scale": 0.01,
        "tag_layers": [8, 9],
        "lyric_layers": [4, 5],
        "diffusion_layers": [15, 16, 17, 18, 19],
    }
    q_scales = {
        g: next(t for t in manifest["graphs"][g]["inputs"] if "q_scale" in t["name"])
        for g in ("text_encoder", "condition_encoder", "denoiser")
    }
    assert q_scales["text_encoder"]["shape"][1] == constants["text_encoder_layers"]
    assert q_scales["condition_encoder"]["shape"][1] == constants["conformer_blocks"]
    assert q_scales["denoiser"]["shape"][1] == constants["denoiser_layers"]


def test_runtime_loads_and_verifies_the_directory(
    tiny_models: Path, manifest: dict[str, Any]
) -> None:
    loaded = load_manifest(tiny_models)
    assert loaded.model_version == manifest["model_version"]
    assert set(REQUIRED_GRAPHS) <= set(loaded.graphs)
    verify_hashes(loaded)


def _mutations() -> list[tuple[str, Any]]:
    def drop(*path: str | int) -> Any:
        def apply(m: Any) -> None:
            for key in path[:-1]:
                m = m[key]
            del m[path[-1]]

        return apply

    def put(value: Any, *path: str | int) -> Any:
        def apply(m: Any) -> None:
            for key in path[:-1]:
                m = m[key]
            m[path[-1]] = value

        return apply

    return [
        ("missing graphs", drop("graphs")),
        ("missing denoiser", drop("graphs", "denoiser")),
        ("unknown top-level field", put(1, "surprise")),
        ("schema version 2", put(2, "schema_version")),
        ("precision fp64", put("fp64", "precision")),
        ("bad sha256", put({"sha256": "ABC", "size": 1}, "files", "denoiser.onnx")),
        ("negative size", put({"sha256": "0" * 64, "size": -1}, "files", "denoiser.onnx")),
        ("file in a sub-folder", put({"sha256": "0" * 64, "size": 1}, "files", "../x.onnx")),
        ("graph file not onnx", put("denoiser.bin", "graphs", "denoiser", "file")),
        ("graph without external_data", drop("graphs", "denoiser", "external_data")),
        ("bad input dtype", put("float64", "graphs", "denoiser", "inputs", 0, "dtype")),
        ("float dimension", put([1.5], "graphs", "denoiser", "inputs", 0, "shape")),
        ("missing constant", drop("constants", "denoiser_layers")),
        ("erg layers not integers", put(["a"], "constants", "erg", "tag_layers")),
        ("defaults carry a seed", put(1, "defaults", "seed")),
        ("bad scheduler default", put("ddim", "defaults", "scheduler")),
        ("missing opset", drop("exporter", "opset")),
    ]


@pytest.mark.parametrize(("label", "mutate"), _mutations(), ids=[m[0] for m in _mutations()])
def test_schema_rejects_a_broken_manifest(
    label: str, mutate: Any, validator: Draft202012Validator, manifest: dict[str, Any]
) -> None:
    broken = copy.deepcopy(manifest)
    mutate(broken)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(broken)
