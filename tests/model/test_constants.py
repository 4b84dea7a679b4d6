"""ModelConstants: parsing the manifest's ``constants`` object, the round trip, latent frames, and
one clear error naming the field for every malformed value (also through ``load_manifest``)."""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model.constants import ErgLayers, ModelConstants
from lofi_daemon.model.manifest import MANIFEST_NAME, load_manifest

# The constants of the tiny models' manifest.json (written by export/manifest_writer.py).
CONSTANTS: dict[str, Any] = {
    "conformer_blocks": 6,
    "dcae_scale": 0.1786,
    "dcae_shift": -1.9091,
    "denoiser_layers": 20,
    "erg": {
        "diffusion_layers": [15, 16, 17, 18, 19],
        "lyric_layers": [4, 5],
        "scale": 0.01,
        "tag_layers": [8, 9],
    },
    "latent_channels": 8,
    "latent_frames_per_second": 10.7666015625,
    "latent_height": 16,
    "mel_frames_per_latent_frame": 8,
    "mel_max": 3.0,
    "mel_min": -11.0,
    "num_train_timesteps": 1000,
    "sample_rate_model": 44100,
    "sample_rate_output": 48000,
    "samples_per_latent_frame": 4096,
    "scheduler_shift": 3.0,
    "speaker_embedding_dim": 512,
    "text_encoder_layers": 10,
    "text_hidden_size": 32,
    "text_max_tokens": 256,
    "vocoder_hop_length": 512,
}


def test_from_json_reads_every_field_with_its_type() -> None:
    constants = ModelConstants.from_json(CONSTANTS)
    assert constants.denoiser_layers == 20
    assert constants.dcae_shift == -1.9091
    assert constants.erg == ErgLayers(0.01, (8, 9), (4, 5), (15, 16, 17, 18, 19))
    for name, value in constants.to_json().items():
        if name != "erg":
            assert type(value) is type(CONSTANTS[name]), name


def test_numbers_are_coerced_to_the_field_type() -> None:
    data = {
        **CONSTANTS,
        "denoiser_layers": 20.0,
        "mel_max": 3,
        "erg": {**CONSTANTS["erg"], "scale": 1},
    }
    constants = ModelConstants.from_json(data)
    assert constants.denoiser_layers == 20 and type(constants.denoiser_layers) is int
    assert constants.mel_max == 3.0 and type(constants.mel_max) is float
    assert type(constants.erg.scale) is float


def test_to_json_round_trips() -> None:
    constants = ModelConstants.from_json(CONSTANTS)
    assert constants.to_json() == CONSTANTS
    assert json.loads(json.dumps(constants.to_json())) == CONSTANTS  # plain JSON types
    assert ModelConstants.from_json(constants.to_json()) == constants


@pytest.mark.parametrize(
    ("duration", "frames"),
    [(5.0, 53), (10.0, 107), (30.0, 322), (60.0, 645), (60.5, 651), (240.0, 2583)],
)
def test_latent_frames_round_down(duration: float, frames: int) -> None:
    constants = ModelConstants.from_json(CONSTANTS)
    assert constants.latent_frames(duration) == frames == int(duration * 44100 / 4096)


def _without(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.pop(key)


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.__setitem__(key, value)


def _set_erg(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda data: data["erg"].__setitem__(key, value)


# (what is broken, the exception type, text the message must contain)
BROKEN: list[tuple[Callable[[dict[str, Any]], None], type[Exception], str]] = [
    (_without("denoiser_layers"), ValueError, "constants.denoiser_layers is missing"),
    (_without("erg"), ValueError, "constants.erg is missing"),
    (_set("shiny_new_field", 1), ValueError, "shiny_new_field"),
    (_set("denoiser_layers", True), TypeError, "constants.denoiser_layers"),
    (_set("dcae_scale", False), TypeError, "constants.dcae_scale"),
    (_set("denoiser_layers", "20"), TypeError, "constants.denoiser_layers"),
    (_set("mel_min", "-11"), TypeError, "constants.mel_min"),
    (_set("mel_min", None), TypeError, "constants.mel_min"),
    (_set("latent_channels", [8]), TypeError, "constants.latent_channels"),
    (_set("denoiser_layers", 20.5), ValueError, "constants.denoiser_layers must be a whole number"),
    (_set("erg", [8, 9]), TypeError, "constants.erg"),
    (_set("erg", None), TypeError, "constants.erg"),
    (_set_erg("scale", "0.01"), TypeError, "constants.erg.scale"),
    (_set_erg("tag_layers", [8, "9"]), TypeError, "constants.erg.tag_layers"),
    (_set_erg("lyric_layers", [4, True]), TypeError, "constants.erg.lyric_layers"),
    (_set_erg("diffusion_layers", [15.5]), ValueError, "constants.erg.diffusion_layers"),
    (lambda data: data["erg"].pop("scale"), ValueError, "constants.erg.scale is missing"),
    (lambda data: data["erg"].pop("tag_layers"), ValueError, "constants.erg.tag_layers is missing"),
]


@pytest.mark.parametrize(("mutate", "kind", "text"), BROKEN)
def test_a_malformed_field_is_a_clear_error_naming_it(
    mutate: Callable[[dict[str, Any]], None], kind: type[Exception], text: str
) -> None:
    data = copy.deepcopy(CONSTANTS)
    mutate(data)
    with pytest.raises(kind) as info:
        ModelConstants.from_json(data)
    assert text in str(info.value)


def test_erg_layers_that_are_not_a_list_name_the_field() -> None:
    data = copy.deepcopy(CONSTANTS)
    data["erg"]["tag_layers"] = 8
    with pytest.raises(TypeError, match=r"constants\.erg\.tag_layers"):
        ModelConstants.from_json(data)


def test_an_unknown_erg_field_is_rejected() -> None:
    data = copy.deepcopy(CONSTANTS)
    data["erg"]["tag_layer"] = [8, 9]  # a misspelt extra key
    with pytest.raises(ValueError, match="tag_layer"):
        ModelConstants.from_json(data)


@pytest.mark.parametrize("data", [None, [], "constants", 3])
def test_constants_must_be_an_object(data: Any) -> None:
    with pytest.raises(TypeError, match="constants: not an object"):
        ModelConstants.from_json(data)


# --- through load_manifest, on a copy of the tiny models ----------------------------------------


def _models_with(tiny_models: Path, folder: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """``tiny_models`` with an edited manifest; the model files are links to the originals."""
    shutil.copytree(
        tiny_models,
        folder,
        copy_function=os.symlink,
        ignore=shutil.ignore_patterns(MANIFEST_NAME),
    )
    manifest = json.loads((tiny_models / MANIFEST_NAME).read_text(encoding="utf-8"))
    edit(manifest)
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def test_the_real_manifest_constants_match_and_round_trip(
    tiny_models: Path, tmp_path: Path
) -> None:
    raw = json.loads((tiny_models / MANIFEST_NAME).read_text(encoding="utf-8"))["constants"]
    assert set(raw) == set(CONSTANTS)  # the literal above has every field the exporter writes
    loaded = load_manifest(_models_with(tiny_models, tmp_path / "models", lambda m: None))
    assert loaded.constants == ModelConstants.from_json(raw)
    assert loaded.constants.to_json() == raw


@pytest.mark.parametrize(("mutate", "kind", "text"), BROKEN)
def test_load_manifest_reports_a_malformed_constant_as_model_load_failed(
    tiny_models: Path,
    tmp_path: Path,
    mutate: Callable[[dict[str, Any]], None],
    kind: type[Exception],
    text: str,
) -> None:
    root = _models_with(tiny_models, tmp_path / "models", lambda m: mutate(m["constants"]))
    with pytest.raises(LofiError) as info:
        load_manifest(root)
    assert info.value.code == errors.MODEL_LOAD_FAILED
    assert text in info.value.message
    assert str(root / MANIFEST_NAME) in info.value.message
    assert isinstance(info.value.__cause__, kind)


@pytest.mark.parametrize(
    ("edit", "text"),
    [
        (lambda m: m.pop("constants"), "'constants'"),
        (lambda m: m.__setitem__("constants", [1, 2]), "constants: not an object"),
    ],
)
def test_load_manifest_without_a_constants_object(
    tiny_models: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], None], text: str
) -> None:
    with pytest.raises(LofiError) as info:
        load_manifest(_models_with(tiny_models, tmp_path / "models", edit))
    assert info.value.code == errors.MODEL_LOAD_FAILED
    assert text in info.value.message


@pytest.mark.parametrize(
    ("field", "value", "text"),
    [
        ("dcae_scale", float("nan"), "constants.dcae_scale must be finite"),
        ("mel_max", float("inf"), "constants.mel_max must be finite"),
        ("samples_per_latent_frame", 0, "constants.samples_per_latent_frame must be positive"),
        ("denoiser_layers", -2, "constants.denoiser_layers must be positive"),
    ],
)
def test_non_finite_floats_and_non_positive_counts_are_rejected(
    field: str, value: float, text: str
) -> None:
    data = copy.deepcopy(CONSTANTS)
    data[field] = value
    with pytest.raises(ValueError, match=text):
        ModelConstants.from_json(data)
