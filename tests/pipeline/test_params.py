"""GenerationParams: defaults, the validation rules and their error codes (docs/protocol.md,
table of ``generate`` params), and the dict round trip."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.pipeline.params import MAX_SEED, GenerationParams

DEFAULTS: dict[str, Any] = {
    "duration_sec": 30.0,
    "seed": None,
    "infer_steps": 27,
    "guidance_scale": 15.0,
    "scheduler": "euler",
    "cfg_type": "apg",
    "omega_scale": 10.0,
    "guidance_interval": 0.5,
    "guidance_interval_decay": 0.0,
    "min_guidance_scale": 3.0,
    "guidance_scale_text": 0.0,
    "guidance_scale_lyric": 0.0,
    "use_erg_tag": True,
    "use_erg_lyric": True,
    "use_erg_diffusion": True,
    "format": "wav",
    "wav_subtype": "pcm16",
}

GUIDANCE_SCALES = (
    "guidance_scale",
    "min_guidance_scale",
    "guidance_scale_text",
    "guidance_scale_lyric",
)
INTERVALS = ("guidance_interval", "guidance_interval_decay")
ERG_SWITCHES = ("use_erg_tag", "use_erg_lyric", "use_erg_diffusion")


def test_defaults_are_the_documented_ones() -> None:
    params = GenerationParams(prompt="lofi")
    expected = {"prompt": "lofi", **DEFAULTS}
    assert params.to_dict() == expected
    assert GenerationParams.field_names() == tuple(expected)
    params.validate()  # the defaults are valid


def test_from_dict_fills_in_the_defaults() -> None:
    assert GenerationParams.from_dict({"prompt": "lofi"}) == GenerationParams(prompt="lofi")


def test_from_dict_without_a_prompt_is_invalid_prompt() -> None:
    with pytest.raises(LofiError) as info:
        GenerationParams.from_dict({"duration_sec": 10})
    assert info.value.code == errors.INVALID_PROMPT
    assert "prompt is required" in info.value.message


def test_from_dict_rejects_unknown_keys_before_anything_else() -> None:
    with pytest.raises(LofiError) as info:
        GenerationParams.from_dict({"prompt": "", "steps": 5, "bogus": 1})
    assert info.value.code == errors.INVALID_PARAMS
    assert "bogus, steps" in info.value.message


def _rejected(field: str, value: Any) -> LofiError:
    with pytest.raises(LofiError) as info:
        GenerationParams.from_dict({"prompt": "lofi", field: value})
    return info.value


# (field, value, expected error code)
REJECTED: list[tuple[str, Any, int]] = [
    ("prompt", "", errors.INVALID_PROMPT),
    ("prompt", "   ", errors.INVALID_PROMPT),
    ("prompt", "\n\t ", errors.INVALID_PROMPT),
    ("prompt", "x" * 1001, errors.INVALID_PROMPT),
    ("prompt", 5, errors.INVALID_PROMPT),
    ("prompt", None, errors.INVALID_PROMPT),
    ("prompt", "\ud800", errors.INVALID_PROMPT),  # a lone surrogate, sent as a JSON escape
    ("prompt", "rain \udcff", errors.INVALID_PROMPT),  # a non-UTF-8 argv byte (surrogateescape)
    ("duration_sec", 4.99, errors.INVALID_DURATION),
    ("duration_sec", 240.01, errors.INVALID_DURATION),
    ("duration_sec", 0, errors.INVALID_DURATION),
    ("duration_sec", -30, errors.INVALID_DURATION),
    ("duration_sec", True, errors.INVALID_DURATION),
    ("duration_sec", "30", errors.INVALID_DURATION),
    ("duration_sec", None, errors.INVALID_DURATION),
    ("duration_sec", math.nan, errors.INVALID_DURATION),
    ("duration_sec", math.inf, errors.INVALID_DURATION),
    ("duration_sec", 10**400, errors.INVALID_DURATION),  # too big for a float
    ("seed", -1, errors.INVALID_PARAMETER),
    ("seed", MAX_SEED + 1, errors.INVALID_PARAMETER),
    ("seed", True, errors.INVALID_PARAMETER),
    ("seed", 1.0, errors.INVALID_PARAMETER),
    ("seed", "1", errors.INVALID_PARAMETER),
    ("infer_steps", 0, errors.INVALID_INFERENCE_STEPS),
    ("infer_steps", 201, errors.INVALID_INFERENCE_STEPS),
    ("infer_steps", 27.0, errors.INVALID_INFERENCE_STEPS),
    ("infer_steps", True, errors.INVALID_INFERENCE_STEPS),
    ("infer_steps", "27", errors.INVALID_INFERENCE_STEPS),
    *[(name, -0.01, errors.INVALID_GUIDANCE_SCALE) for name in GUIDANCE_SCALES],
    *[(name, True, errors.INVALID_GUIDANCE_SCALE) for name in GUIDANCE_SCALES],
    *[(name, "1", errors.INVALID_GUIDANCE_SCALE) for name in GUIDANCE_SCALES],
    *[(name, math.nan, errors.INVALID_GUIDANCE_SCALE) for name in GUIDANCE_SCALES],
    *[(name, math.inf, errors.INVALID_GUIDANCE_SCALE) for name in GUIDANCE_SCALES],
    ("omega_scale", math.nan, errors.INVALID_PARAMETER),
    ("omega_scale", -math.inf, errors.INVALID_PARAMETER),
    ("omega_scale", False, errors.INVALID_PARAMETER),
    ("omega_scale", "10", errors.INVALID_PARAMETER),
    *[(name, -0.01, errors.INVALID_PARAMETER) for name in INTERVALS],
    *[(name, 1.01, errors.INVALID_PARAMETER) for name in INTERVALS],
    *[(name, True, errors.INVALID_PARAMETER) for name in INTERVALS],
    *[(name, math.nan, errors.INVALID_PARAMETER) for name in INTERVALS],
    ("scheduler", "ddim", errors.INVALID_SCHEDULER),
    ("scheduler", "Euler", errors.INVALID_SCHEDULER),
    ("scheduler", None, errors.INVALID_SCHEDULER),
    ("cfg_type", "apg2", errors.INVALID_CFG_TYPE),
    ("cfg_type", "", errors.INVALID_CFG_TYPE),
    *[(name, 1, errors.INVALID_PARAMS) for name in ERG_SWITCHES],
    *[(name, "true", errors.INVALID_PARAMS) for name in ERG_SWITCHES],
    *[(name, None, errors.INVALID_PARAMS) for name in ERG_SWITCHES],
    ("format", "mp3", errors.INVALID_FORMAT),
    ("format", "WAV", errors.INVALID_FORMAT),
    ("wav_subtype", "pcm24", errors.INVALID_FORMAT),
    ("wav_subtype", None, errors.INVALID_FORMAT),
]


@pytest.mark.parametrize(("field", "value", "code"), REJECTED)
def test_an_invalid_value_gets_its_code_and_names_the_field(
    field: str, value: Any, code: int
) -> None:
    error = _rejected(field, value)
    assert error.code == code, error.message
    assert field in error.message


# Values at the edges of each documented range are accepted.
ACCEPTED: list[tuple[str, Any]] = [
    ("prompt", "x"),
    ("prompt", "x" * 1000),
    ("prompt", "  lofi  "),
    ("prompt", "lo-fi \u00e9t\u00e9 \U0001f3b5 \u96e8"),  # any real Unicode, astral included
    ("duration_sec", 5),
    ("duration_sec", 5.0),
    ("duration_sec", 240),
    ("duration_sec", 60.5),
    ("seed", 0),
    ("seed", MAX_SEED),
    ("infer_steps", 1),
    ("infer_steps", 200),
    *[(name, 0) for name in GUIDANCE_SCALES],
    *[(name, 1e6) for name in GUIDANCE_SCALES],
    ("omega_scale", -5.0),  # only finiteness is required
    ("omega_scale", 0),
    *[(name, 0) for name in INTERVALS],
    *[(name, 1.0) for name in INTERVALS],
    ("scheduler", "heun"),
    ("scheduler", "pingpong"),
    ("cfg_type", "cfg"),
    ("cfg_type", "cfg_star"),
    *[(name, False) for name in ERG_SWITCHES],
    ("format", "flac"),
    ("format", "ogg"),
    ("wav_subtype", "float"),
]


@pytest.mark.parametrize(("field", "value"), ACCEPTED)
def test_a_value_inside_the_range_is_accepted(field: str, value: Any) -> None:
    params = GenerationParams.from_dict({"prompt": "lofi", field: value})
    assert getattr(params, field) == value


def test_validate_checks_a_directly_built_instance() -> None:
    params = GenerationParams(prompt="lofi", infer_steps=0)  # the constructor does not validate
    with pytest.raises(LofiError) as info:
        params.validate()
    assert info.value.code == errors.INVALID_INFERENCE_STEPS


def test_with_seed_changes_only_the_seed() -> None:
    params = GenerationParams.from_dict({"prompt": "lofi", "infer_steps": 8, "scheduler": "heun"})
    seeded = params.with_seed(1234)
    assert seeded.seed == 1234
    assert params.seed is None  # the original is untouched
    assert dataclasses.replace(seeded, seed=None) == params


def test_to_dict_round_trips_through_from_dict() -> None:
    data = {
        "prompt": "rainy night jazz",
        "duration_sec": 12.5,
        "seed": 7,
        "infer_steps": 60,
        "guidance_scale": 7.5,
        "scheduler": "pingpong",
        "cfg_type": "cfg_star",
        "omega_scale": 5.0,
        "guidance_interval": 0.3,
        "guidance_interval_decay": 0.1,
        "min_guidance_scale": 1.0,
        "guidance_scale_text": 2.0,
        "guidance_scale_lyric": 1.5,
        "use_erg_tag": False,
        "use_erg_lyric": True,
        "use_erg_diffusion": False,
        "format": "flac",
        "wav_subtype": "float",
    }
    params = GenerationParams.from_dict(data)
    assert params.to_dict() == data
    assert GenerationParams.from_dict(params.to_dict()) == params
