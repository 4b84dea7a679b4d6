import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model.manifest import load_manifest
from lofi_daemon.turbo.manifest import TurboConstants, load_turbo_manifest


def _edit(root: Path, change: Callable[[dict[str, Any]], object]) -> None:
    path = root / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _error(root: Path) -> LofiError:
    with pytest.raises(LofiError) as info:
        load_turbo_manifest(root)
    return info.value


def test_loads_graphs_arrays_tokenizer_and_typed_constants(synthetic_turbo: Path) -> None:
    manifest = load_turbo_manifest(synthetic_turbo)
    assert manifest.model_version.startswith("ace-step-1.5-turbo-")
    assert manifest.graph_path("dit") == synthetic_turbo / "dit.onnx"
    assert manifest.array_path("silence_timbre") == synthetic_turbo / "silence_timbre.npy"
    assert manifest.tokenizer_file == "tokenizer.json"
    c = manifest.constants
    assert isinstance(c, TurboConstants)
    assert (c.sample_rate, c.samples_per_latent_frame, c.latent_channels) == (48000, 1920, 4)
    assert c.max_duration_sec == 600.0


def test_latent_frames_as_upstream(synthetic_turbo: Path) -> None:
    c = load_turbo_manifest(synthetic_turbo).constants
    assert c.latent_frames(5.0) == 128  # 125 raised to the minimum
    assert c.latent_frames(6.2) == 155
    assert c.latent_frames(6.04) == 150  # round(d, 1) first
    assert c.latent_frames(600.0) == 15000


def test_missing_directory_is_not_found_with_the_setup_remedy(tmp_path: Path) -> None:
    err = _error(tmp_path / "nothing")
    assert err.code == errors.MODEL_NOT_FOUND
    assert ":Lofi setup ace-step-1.5" in err.remedy


def test_a_v1_directory_is_named_as_such(synthetic_turbo: Path) -> None:
    _edit(synthetic_turbo, lambda d: d.pop("backend"))
    err = _error(synthetic_turbo)
    assert err.code == errors.MODEL_LOAD_FAILED
    assert "holds ace-step (v1) models, not ace-step-1.5" in err.message
    assert ":Lofi setup ace-step-1.5" in err.remedy


def test_the_v1_loader_refuses_a_1_5_directory(synthetic_turbo: Path) -> None:
    with pytest.raises(LofiError) as info:
        load_manifest(synthetic_turbo)
    assert info.value.code == errors.MODEL_LOAD_FAILED
    assert "holds ace-step-1.5 models, not ace-step (v1)" in info.value.message
    assert ":Lofi setup ace-step" in info.value.remedy


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.update(schema_version=2), "schema_version 2"),
        (lambda d: d["graphs"].pop("dit"), "graphs missing: dit"),
        (lambda d: d["arrays"].pop("silence_latent"), "arrays missing: silence_latent"),
        (lambda d: d.pop("tokenizer"), "tokenizer.file"),
        (lambda d: d["constants"].pop("hidden_size"), "constants.hidden_size is missing"),
        (lambda d: d["constants"].update(latent_channels=2.5), "constants.latent_channels"),
        (lambda d: d["constants"].update(vocab_size="big"), "constants.vocab_size"),
        (lambda d: d["files"].pop("dit.onnx"), "files does not list dit.onnx"),
        (lambda d: d.pop("model_version"), "model_version"),
    ],
)
def test_malformed_manifests_name_the_problem(
    synthetic_turbo: Path, change: Callable[[dict[str, Any]], object], expected: str
) -> None:
    _edit(synthetic_turbo, change)
    err = _error(synthetic_turbo)
    assert err.code == errors.MODEL_LOAD_FAILED
    assert expected in err.message


def test_a_missing_or_resized_file_is_reported(synthetic_turbo: Path) -> None:
    (synthetic_turbo / "embed_tokens.npy").write_bytes(b"short")
    err = _error(synthetic_turbo)
    assert err.code == errors.MODEL_LOAD_FAILED and "embed_tokens.npy" in err.message
    (synthetic_turbo / "embed_tokens.npy").unlink()
    err = _error(synthetic_turbo)
    assert err.code == errors.MODEL_NOT_FOUND and "embed_tokens.npy" in err.message


def test_unreadable_json(synthetic_turbo: Path) -> None:
    (synthetic_turbo / "manifest.json").write_text("{")
    assert _error(synthetic_turbo).code == errors.MODEL_LOAD_FAILED
