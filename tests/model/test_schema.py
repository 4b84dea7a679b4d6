"""The runtime's own manifest-schema check (``lofi_daemon.model.schema``) and ``load_manifest``.

The runtime does not depend on ``jsonschema``; its small validator must agree with it on the real
manifest and on every broken one here (issue 10, item 24: a wrong-typed manifest loaded, reported
``ready`` and then failed inside a generation).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model.manifest import MANIFEST_NAME, load_manifest
from lofi_daemon.model.schema import SchemaError, first_error, manifest_schema

Mutation = Callable[[dict[str, Any]], None]


def _put(value: Any, *path: str | int) -> Mutation:
    def apply(m: Any) -> None:
        for key in path[:-1]:
            m = m[key]
        m[path[-1]] = value

    return apply


def _drop(*path: str | int) -> Mutation:
    def apply(m: Any) -> None:
        for key in path[:-1]:
            m = m[key]
        del m[path[-1]]

    return apply


#: (label, mutation, a fragment of the runtime's message)
BROKEN: list[tuple[str, Mutation, str]] = [
    ("defaults is a list", _put([], "defaults"), "defaults: must be of type object"),
    ("files is a list", _put([], "files"), "files: must be of type object"),
    ("files empty", _put({}, "files"), "files: needs at least 1"),
    ("model_version a number", _put(5, "model_version"), "model_version: must be of type string"),
    ("tokenizer a list", _put([], "tokenizer"), "tokenizer: must be of type object"),
    ("graphs a list", _put([], "graphs"), "graphs: must be of type object"),
    ("inputs a string", _put("x", "graphs", "denoiser", "inputs"), "graphs.denoiser.inputs"),
    ("empty outputs", _put([], "graphs", "vocoder", "outputs"), "graphs.vocoder.outputs"),
    ("graph file in a folder", _put("../x.onnx", "graphs", "denoiser", "file"), "file"),
    ("size a string", _put({"sha256": "0" * 64, "size": "1"}, "files", "vocoder.onnx"), "size"),
    ("unknown field", _put(1, "surprise"), "surprise: is not a known field"),
    ("missing source", _drop("source"), "'source' is missing"),
    ("bad scheduler default", _put("ddim", "defaults", "scheduler"), "defaults.scheduler"),
    ("defaults carry a seed", _put(1, "defaults", "seed"), "defaults"),
    ("negative shift", _put(-1.0, "constants", "scheduler_shift"), "constants.scheduler_shift"),
    ("repeated erg layers", _put([8, 8], "constants", "erg", "tag_layers"), "repeated"),
    ("precision fp64", _put("fp64", "precision"), "precision"),
    ("opset too old", _put(11, "exporter", "opset"), "exporter.opset"),
]


@pytest.fixture(scope="module")
def manifest(tiny_models: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tiny_models / MANIFEST_NAME).read_text(encoding="utf-8"))
    return data


def test_the_exported_manifest_passes(manifest: dict[str, Any]) -> None:
    assert first_error(manifest) is None


@pytest.mark.parametrize(("label", "mutate", "text"), BROKEN, ids=[b[0] for b in BROKEN])
def test_agrees_with_jsonschema_on_a_broken_manifest(
    label: str, mutate: Mutation, text: str, manifest: dict[str, Any]
) -> None:
    broken = copy.deepcopy(manifest)
    mutate(broken)
    assert not Draft202012Validator(manifest_schema()).is_valid(broken)  # truly broken
    problem = first_error(broken)
    assert problem is not None and text in problem


def _models_with(tiny_models: Path, folder: Path, mutate: Mutation) -> Path:
    """``tiny_models`` with an edited manifest; the model files are links to the originals."""
    shutil.copytree(
        tiny_models,
        folder,
        copy_function=os.symlink,
        ignore=shutil.ignore_patterns(MANIFEST_NAME),
    )
    manifest = json.loads((tiny_models / MANIFEST_NAME).read_text(encoding="utf-8"))
    mutate(manifest)
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
    return folder


@pytest.mark.parametrize(("label", "mutate", "text"), BROKEN, ids=[b[0] for b in BROKEN])
def test_load_manifest_refuses_a_manifest_that_breaks_the_schema(
    label: str, mutate: Mutation, text: str, tiny_models: Path, tmp_path: Path
) -> None:
    root = _models_with(tiny_models, tmp_path / "models", mutate)
    with pytest.raises(LofiError) as info:
        load_manifest(root)
    assert info.value.code == errors.MODEL_LOAD_FAILED
    assert str(root / MANIFEST_NAME) in info.value.message
    assert text in info.value.message
    assert "\n" not in info.value.message
    assert "setup ace-step" in info.value.remedy


def test_a_keyword_the_validator_does_not_know_is_an_error() -> None:
    with pytest.raises(SchemaError, match="dependentRequired"):
        first_error({}, {"dependentRequired": {"a": ["b"]}})


@pytest.mark.parametrize(
    ("schema", "good", "bad"),
    [
        ({"type": "integer"}, 3.0, 3.5),
        ({"type": "number"}, 1, True),
        ({"const": 1}, 1, True),
        ({"enum": [0]}, 0, False),
        ({"anyOf": [{"type": "null"}, {"type": "string"}]}, None, 1),
        ({"not": {"required": ["seed"]}}, {"x": 1}, {"seed": 1}),
        ({"propertyNames": {"pattern": "^[a-z]+$"}}, {"ab": 1}, {"A": 1}),
        ({"additionalProperties": {"type": "string"}}, {"a": "x"}, {"a": 1}),
        ({"exclusiveMinimum": 0}, 0.1, 0),
        ({"maximum": 1}, 1, 1.5),
        ({"minLength": 1}, "a", ""),
        ({"uniqueItems": True}, [1, 2], [{"a": 1}, {"a": 1}]),
    ],
)
def test_keywords_behave_as_in_jsonschema(schema: dict[str, Any], good: Any, bad: Any) -> None:
    validator = Draft202012Validator(schema)
    assert validator.is_valid(good) and not validator.is_valid(bad)
    assert first_error(good, schema) is None
    assert first_error(bad, schema) is not None


@pytest.mark.parametrize(
    "content", ["[" * 100_000 + "]" * 100_000, '{"schema_version": 1, "a": {'], ids=["deep", "cut"]
)
def test_an_unreadable_manifest_is_model_load_failed(tmp_path: Path, content: str) -> None:
    (tmp_path / MANIFEST_NAME).write_text(content, encoding="utf-8")
    with pytest.raises(LofiError) as info:
        load_manifest(tmp_path)
    assert info.value.code == errors.MODEL_LOAD_FAILED
    assert "unreadable" in info.value.message
