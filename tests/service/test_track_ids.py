"""Track ids: every audio-affecting input changes the id, equal values share one, and only
id-shaped strings pass :func:`is_track_id`."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.service.track_ids import (
    TRACK_ID_CHARS,
    canonical_params,
    is_track_id,
    track_id_for,
)

BASE = GenerationParams(prompt="lofi beat", duration_sec=0.05, seed=7)


def tid(params: GenerationParams = BASE, **kwargs: Any) -> str:
    return track_id_for(dataclasses.replace(params, **kwargs), model_version="m1", backend="b")


def test_track_id_is_stable_hex() -> None:
    assert tid() == tid()
    assert len(tid()) == TRACK_ID_CHARS and is_track_id(tid())


CHANGED_VALUES = [
    ("prompt", "lofi beat "),
    ("duration_sec", 30.5),
    ("seed", 8),
    ("infer_steps", 28),
    ("guidance_scale", 14.0),
    ("scheduler", "heun"),
    ("cfg_type", "cfg"),
    ("omega_scale", 9.0),
    ("guidance_interval", 0.4),
    ("guidance_interval_decay", 0.1),
    ("min_guidance_scale", 2.0),
    ("guidance_scale_text", 1.0),
    ("guidance_scale_lyric", 1.0),
    ("use_erg_tag", False),
    ("use_erg_lyric", False),
    ("use_erg_diffusion", False),
    ("format", "flac"),
    ("wav_subtype", "float"),
]


def test_the_id_test_covers_every_parameter() -> None:
    assert {name for name, _ in CHANGED_VALUES} == set(GenerationParams.field_names())


@pytest.mark.parametrize(("name", "value"), CHANGED_VALUES)
def test_every_audio_parameter_changes_the_id(name: str, value: Any) -> None:
    assert tid(**{name: value}) != tid()


def test_model_version_and_backend_change_the_id() -> None:
    assert track_id_for(BASE, model_version="m2", backend="b") != tid()
    assert track_id_for(BASE, model_version="m1", backend="c") != tid()


def test_numerically_equal_values_share_an_id() -> None:
    assert tid(duration_sec=30) == tid(duration_sec=30.0)
    assert tid(guidance_scale_text=-0.0) == tid(guidance_scale_text=0.0)


def test_random_seed_has_no_track_id() -> None:
    with pytest.raises(ValueError):
        tid(seed=None)


@pytest.mark.parametrize("value", ["../etc/passwd", "A" * TRACK_ID_CHARS, "abc", 5, None])
def test_is_track_id_rejects_unsafe_values(value: Any) -> None:
    assert not is_track_id(value)


def test_canonical_params_hold_every_field_with_floats_as_floats() -> None:
    canonical = canonical_params(dataclasses.replace(BASE, duration_sec=30, omega_scale=-0.0))
    assert set(canonical) == set(GenerationParams.field_names())
    assert type(canonical["duration_sec"]) is float and canonical["duration_sec"] == 30.0
    assert str(canonical["omega_scale"]) == "0.0"  # -0.0 + 0.0 is +0.0
    assert canonical["seed"] == 7 and type(canonical["seed"]) is int
    assert canonical["use_erg_tag"] is True
