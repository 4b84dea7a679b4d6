"""StationConfig.from_params: defaults, every invalid field's code and message, inclusive
limits, the generation overrides checked as ``generate`` checks them, and the JSON round trip."""

from __future__ import annotations

import math
from typing import Any

import pytest

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.pipeline.params import MAX_PROMPT_CHARS, MAX_SEED, seconds_to_frames
from lofi_daemon.radio.config import (
    DEFAULT_AHEAD,
    DEFAULT_CONTEXT_SEC,
    DEFAULT_CROSSFADE_SEC,
    DEFAULT_SEGMENT_SEC,
    DEFAULT_VARIATION,
    GENERATION_FIELDS,
    START_PARAMS,
    StationConfig,
)
from lofi_daemon.radio.joins import JOIN_MARGIN_SEC
from lofi_daemon.radio.prompts import MAX_TAG_SUFFIX_CHARS


def build(station_seed: int = 7, **params: Any) -> StationConfig:
    return StationConfig.from_params({"prompt": "lofi hip hop", **params}, seed=station_seed)


def refused(code: int, fragment: str, params: dict[str, Any], seed: int = 7) -> None:
    with pytest.raises(LofiError) as info:
        StationConfig.from_params(params, seed=seed)
    assert info.value.code == code
    assert fragment in str(info.value), str(info.value)


def test_defaults() -> None:
    config = build()
    assert config.prompt == "lofi hip hop"
    assert config.seed == 7
    assert config.segment_sec == DEFAULT_SEGMENT_SEC
    assert config.context_sec == DEFAULT_CONTEXT_SEC
    assert config.crossfade_sec == DEFAULT_CROSSFADE_SEC
    assert config.variation == DEFAULT_VARIATION
    assert config.ahead == DEFAULT_AHEAD
    assert config.variant is None
    assert dict(config.generation) == {}
    assert config.join.crossfade_sec == DEFAULT_CROSSFADE_SEC
    assert config.join.hold_sec == DEFAULT_CROSSFADE_SEC + JOIN_MARGIN_SEC
    assert config.context_frames == seconds_to_frames(DEFAULT_CONTEXT_SEC)


def test_short_segment_lowers_the_default_context() -> None:
    config = build(segment_sec=10)
    assert config.segment_sec == 10.0
    assert isinstance(config.segment_sec, float)
    assert config.context_sec == 10.0


def test_start_params_cover_the_generation_fields() -> None:
    assert set(GENERATION_FIELDS) <= set(START_PARAMS)
    assert START_PARAMS[:8] == (
        "prompt", "seed", "segment_sec", "context_sec", "crossfade_sec", "variation", "ahead",
        "variant",
    )  # fmt: skip


LIMITS_OK: list[dict[str, Any]] = [
    {"segment_sec": 5, "context_sec": 5},
    {"segment_sec": 120, "context_sec": 120},
    {"segment_sec": 30, "context_sec": 30},
    {"segment_sec": 10, "context_sec": 5, "crossfade_sec": 1.5},  # hold 2.5 = context / 2
    {"crossfade_sec": 0.1},
    {"crossfade_sec": 5.0, "segment_sec": 12, "context_sec": 12},  # hold 6 = context / 2
    {"variation": 0},
    {"variation": 100},
    {"ahead": 1},
    {"ahead": 4},
    {"variant": "rainy-lora"},
    {"variant": None},
    {"seed": None},
    {"seed": MAX_SEED},
    {"retake_variance": None},
]


@pytest.mark.parametrize(
    "params", LIMITS_OK, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items())
)
def test_limits_are_inclusive(params: dict[str, Any]) -> None:
    config = build(**params)
    for name, value in params.items():
        if name in ("seed", "retake_variance"):
            continue
        assert getattr(config, name) == value


BAD: list[tuple[dict[str, Any], int, str]] = [
    ({"segment_sec": 4.9}, errors.INVALID_PARAMETER, "segment_sec must be between 5 and 120"),
    ({"segment_sec": 121}, errors.INVALID_PARAMETER, "segment_sec must be between 5 and 120"),
    ({"segment_sec": True}, errors.INVALID_PARAMETER, "segment_sec must be a number of seconds"),
    ({"segment_sec": "30"}, errors.INVALID_PARAMETER, "segment_sec must be a number of seconds"),
    ({"segment_sec": math.nan}, errors.INVALID_PARAMETER, "segment_sec must be finite"),
    ({"segment_sec": math.inf}, errors.INVALID_PARAMETER, "segment_sec must be finite"),
    ({"segment_sec": 10**400}, errors.INVALID_PARAMETER, "segment_sec must be finite"),
    ({"context_sec": 4}, errors.INVALID_PARAMETER, "context_sec must be at least 5 seconds"),
    ({"context_sec": None}, errors.INVALID_PARAMETER, "context_sec must be a number"),
    (
        {"context_sec": 40},
        errors.INVALID_PARAMETER,
        (
            "context_sec (40 s) must not exceed segment_sec (30 s): the context is cut from the "
            "previous segment"
        ),
    ),
    ({"crossfade_sec": 0.05}, errors.INVALID_PARAMETER, "crossfade_sec must be between 0.1 and 5"),
    ({"crossfade_sec": 5.5}, errors.INVALID_PARAMETER, "crossfade_sec must be between 0.1 and 5"),
    ({"crossfade_sec": False}, errors.INVALID_PARAMETER, "crossfade_sec must be a number"),
    (
        {"crossfade_sec": 1.6, "segment_sec": 5, "context_sec": 5},
        errors.INVALID_PARAMETER,
        "crossfade_sec (1.6 s) is too long for context_sec (5 s)",
    ),
    ({"variation": -1}, errors.INVALID_PARAMETER, "variation must be an integer in 0..100"),
    ({"variation": 101}, errors.INVALID_PARAMETER, "variation must be an integer in 0..100"),
    ({"variation": 2.0}, errors.INVALID_PARAMETER, "variation must be an integer"),
    ({"variation": True}, errors.INVALID_PARAMETER, "variation must be an integer"),
    ({"ahead": 0}, errors.INVALID_PARAMETER, "ahead must be an integer in 1..4"),
    ({"ahead": 5}, errors.INVALID_PARAMETER, "ahead must be an integer in 1..4"),
    ({"ahead": "2"}, errors.INVALID_PARAMETER, "ahead must be an integer in 1..4"),
    ({"variant": ""}, errors.INVALID_PARAMS, "variant must be a non-empty string"),
    ({"variant": 3}, errors.INVALID_PARAMS, "variant must be a non-empty string"),
    ({"seed": -1}, errors.INVALID_PARAMETER, f"seed must be an integer in 0..{MAX_SEED}"),
    ({"seed": MAX_SEED + 1}, errors.INVALID_PARAMETER, "seed must be an integer"),
    ({"seed": 1.5}, errors.INVALID_PARAMETER, "seed must be an integer"),
    ({"bpm": 80}, errors.INVALID_PARAMS, "radio.start does not take 'bpm'"),
    ({"duration_sec": 30}, errors.INVALID_PARAMS, "does not take 'duration_sec'"),
    ({"task": "extend"}, errors.INVALID_PARAMS, "does not take 'task'"),
    ({"retake_seed": 3}, errors.INVALID_PARAMS, "does not take 'retake_seed'"),
    # generation overrides: the generate codes and messages
    ({"infer_steps": 0}, errors.INVALID_INFERENCE_STEPS, "infer_steps must be an integer"),
    ({"infer_steps": True}, errors.INVALID_INFERENCE_STEPS, "infer_steps must be an integer"),
    ({"guidance_scale": -1}, errors.INVALID_GUIDANCE_SCALE, "guidance_scale must not be negative"),
    ({"scheduler": "ddim"}, errors.INVALID_SCHEDULER, "unknown scheduler 'ddim'"),
    ({"cfg_type": "x"}, errors.INVALID_CFG_TYPE, "unknown cfg_type 'x'"),
    ({"guidance_interval": 2}, errors.INVALID_PARAMETER, "guidance_interval must be between 0"),
    ({"use_erg_tag": 1}, errors.INVALID_PARAMS, "use_erg_tag must be true or false"),
    ({"retake_variance": 1.5}, errors.INVALID_PARAMETER, "retake_variance must be between 0 and 1"),
    ({"retake_variance": 0.0}, errors.INVALID_PARAMETER, "retake_variance must be above 0"),
    ({"retake_variance": "x"}, errors.INVALID_PARAMETER, "retake_variance must be a number"),
]


@pytest.mark.parametrize(("params", "code", "fragment"), BAD, ids=lambda v: str(v)[:40])
def test_bad_field(params: dict[str, Any], code: int, fragment: str) -> None:
    refused(code, fragment, {"prompt": "lofi", **params})


def test_crossfade_message_says_why() -> None:
    with pytest.raises(LofiError) as info:
        build(crossfade_sec=3.0, segment_sec=7, context_sec=7)
    message = str(info.value)
    assert info.value.code == errors.INVALID_PARAMETER
    assert "holds back crossfade + 1 s = 4 s" in message
    assert "half of the context (3.5 s)" in message


@pytest.mark.parametrize(
    ("prompt", "fragment"),
    [
        ("", "prompt must be a non-empty string"),
        ("   ", "prompt must be a non-empty string"),
        (None, "prompt must be a non-empty string"),
        (42, "prompt must be a non-empty string"),
        ("bad \ud800", "not valid text"),
        ("x" * (MAX_PROMPT_CHARS + 1), f"the limit is {MAX_PROMPT_CHARS}"),
    ],
)
def test_bad_prompt(prompt: Any, fragment: str) -> None:
    refused(errors.INVALID_PROMPT, fragment, {"prompt": prompt})


def test_missing_prompt() -> None:
    refused(errors.INVALID_PROMPT, "needs a prompt", {"segment_sec": 30})


def test_prompt_leaves_room_for_the_tags() -> None:
    longest = "x" * (MAX_PROMPT_CHARS - MAX_TAG_SUFFIX_CHARS)
    assert build(prompt=longest).prompt == longest
    refused(
        errors.INVALID_PROMPT,
        "with variation the limit is",
        {"prompt": longest + "x"},
    )
    # Without variation the prompt never grows: the generate limit applies.
    assert build(prompt="x" * MAX_PROMPT_CHARS, variation=0).variation == 0


@pytest.mark.parametrize("seed", [-1, MAX_SEED + 1, True, "7", None])
def test_bad_resolved_seed(seed: Any) -> None:
    refused(errors.INVALID_PARAMETER, "seed must be an integer", {"prompt": "lofi"}, seed=seed)


def test_generation_overrides_are_kept() -> None:
    config = build(infer_steps=8, scheduler="heun", use_erg_tag=False, retake_variance=0.7)
    assert dict(config.generation) == {
        "infer_steps": 8,
        "scheduler": "heun",
        "use_erg_tag": False,
        "retake_variance": 0.7,
    }
    # text2music refuses retake_variance: the first segment's overrides leave it out
    assert config.text2music_overrides() == {
        "infer_steps": 8,
        "scheduler": "heun",
        "use_erg_tag": False,
    }


def test_to_json_round_trip() -> None:
    config = build(
        station_seed=123,
        seed=123,
        segment_sec=20,
        context_sec=10,
        crossfade_sec=2,
        variation=3,
        ahead=1,
        variant="v1",
        infer_steps=4,
        retake_variance=0.9,
    )
    data = config.to_json()
    assert data == {
        "prompt": "lofi hip hop",
        "seed": 123,
        "segment_sec": 20.0,
        "context_sec": 10.0,
        "crossfade_sec": 2.0,
        "variation": 3,
        "ahead": 1,
        "variant": "v1",
        "infer_steps": 4,
        "retake_variance": 0.9,
    }
    assert set(data) <= set(START_PARAMS)
    assert StationConfig.from_params(data, seed=data["seed"]) == config
