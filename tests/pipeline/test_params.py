"""GenerationParams: defaults, the validation rules and their error codes (docs/protocol.md,
table of ``generate`` params), and the dict round trip."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import pytest

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.pipeline.params import (
    BACKEND_FIELDS,
    MAX_SEED,
    SOURCE_TASKS,
    TASK_FIELDS,
    TASKS,
    GenerationParams,
    accepted_fields,
)

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
    "task": "text2music",
    "retake_variance": None,
    "retake_seed": None,
    "repaint_start": 0.0,
    "repaint_end": 0.0,
    "extend_left": 0.0,
    "extend_right": 0.0,
    "ref_strength": 0.5,
    "edit_prompt": None,
    "edit_n_min": 0.0,
    "edit_n_max": 1.0,
    "edit_n_avg": 1,
    "backend": "ace-step",
    "lyrics": None,
    "vocal_language": "unknown",
    "bpm": None,
    "keyscale": None,
    "time_signature": None,
    "shift": 3,
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
    assert params.to_dict() == {**DEFAULTS, **data}
    assert GenerationParams.from_dict(params.to_dict()) == params


# ---------------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------------

# A valid set of fields for each task (the source itself is the engine's business).
TASK_BASE: dict[str, dict[str, Any]] = {
    "text2music": {},
    "retake": {"task": "retake"},
    "repaint": {"task": "repaint", "repaint_start": 1.0, "repaint_end": 3.0},
    "extend": {"task": "extend", "extend_right": 5.0},
    "audio2audio": {"task": "audio2audio"},
    "edit": {"task": "edit", "edit_prompt": "jazz piano"},
}

# A value other than the default for each task-specific field.
OTHER_VALUE: dict[str, Any] = {
    "retake_variance": 0.3,
    "retake_seed": 5,
    "repaint_start": 1.0,
    "repaint_end": 2.0,
    "extend_left": 1.0,
    "extend_right": 1.0,
    "ref_strength": 0.7,
    "edit_prompt": "jazz",
    "edit_n_min": 0.2,
    "edit_n_max": 0.8,
    "edit_n_avg": 2,
}


def task_params(task: str, **overrides: Any) -> GenerationParams:
    return GenerationParams.from_dict({"prompt": "lofi", **TASK_BASE[task], **overrides})


def task_error(task: str, **overrides: Any) -> LofiError:
    with pytest.raises(LofiError) as info:
        task_params(task, **overrides)
    return info.value


def test_the_task_tables_cover_every_task_and_field() -> None:
    assert set(TASK_BASE) == set(TASKS)
    assert set(OTHER_VALUE) == set(TASK_FIELDS)
    assert set(SOURCE_TASKS) == {"repaint", "extend", "audio2audio", "edit"}
    for task in TASKS:
        params = task_params(task)
        assert params.task == task
        assert params.uses_source == (task in SOURCE_TASKS)


@pytest.mark.parametrize(
    ("field", "task"),
    [(f, t) for f, tasks in TASK_FIELDS.items() for t in TASKS if t not in tasks],
)
def test_a_task_field_on_another_task_is_refused(field: str, task: str) -> None:
    error = task_error(task, **{field: OTHER_VALUE[field]})
    assert error.code == errors.INVALID_PARAMETER
    assert field in error.message and task in error.message


@pytest.mark.parametrize(
    ("field", "task"), [(f, t) for f, tasks in TASK_FIELDS.items() for t in tasks]
)
def test_a_task_field_is_accepted_on_its_own_task(field: str, task: str) -> None:
    value = OTHER_VALUE[field]
    if (task, field) == ("repaint", "repaint_end"):
        value = 4.0  # after repaint_start
    if (task, field) == ("edit", "edit_n_min"):
        value = 0.2
    assert getattr(task_params(task, **{field: value}), field) == value


def test_an_unknown_task_is_refused() -> None:
    error = _rejected("task", "remix")
    assert error.code == errors.INVALID_PARAMETER
    assert "remix" in error.message and "text2music" in error.message


TASK_REJECTED: list[tuple[str, dict[str, Any], int, str]] = [
    ("retake", {"retake_variance": -0.01}, errors.INVALID_PARAMETER, "retake_variance"),
    ("retake", {"retake_variance": 1.01}, errors.INVALID_PARAMETER, "retake_variance"),
    ("retake", {"retake_variance": math.nan}, errors.INVALID_PARAMETER, "retake_variance"),
    ("retake", {"retake_variance": True}, errors.INVALID_PARAMETER, "retake_variance"),
    ("retake", {"retake_seed": -1}, errors.INVALID_PARAMETER, "retake_seed"),
    ("retake", {"retake_seed": MAX_SEED + 1}, errors.INVALID_PARAMETER, "retake_seed"),
    ("retake", {"retake_seed": 1.0}, errors.INVALID_PARAMETER, "retake_seed"),
    ("repaint", {"retake_variance": 0.0}, errors.INVALID_PARAMETER, "retake_variance"),
    ("extend", {"retake_variance": 0}, errors.INVALID_PARAMETER, "retake_variance"),
    ("repaint", {"repaint_start": -1.0}, errors.INVALID_PARAMETER, "repaint_start"),
    ("repaint", {"repaint_end": math.inf}, errors.INVALID_PARAMETER, "repaint_end"),
    ("repaint", {"repaint_end": 241.0}, errors.INVALID_PARAMETER, "repaint_end"),
    ("repaint", {"repaint_end": 1.0}, errors.INVALID_PARAMETER, "repaint_end"),  # = start
    ("repaint", {"repaint_end": 1.02}, errors.INVALID_PARAMETER, "repaint_end"),  # same frame
    ("repaint", {"repaint_start": "1"}, errors.INVALID_PARAMETER, "repaint_start"),
    ("extend", {"extend_right": 0.0}, errors.INVALID_PARAMETER, "extend_left or extend_right"),
    ("extend", {"extend_right": 0.05}, errors.INVALID_PARAMETER, "extend_left or extend_right"),
    ("extend", {"extend_left": -1.0}, errors.INVALID_PARAMETER, "extend_left"),
    ("extend", {"extend_right": 250.0}, errors.INVALID_PARAMETER, "extend_right"),
    ("audio2audio", {"ref_strength": 1.0}, errors.INVALID_PARAMETER, "ref_strength"),
    ("audio2audio", {"ref_strength": -0.1}, errors.INVALID_PARAMETER, "ref_strength"),
    ("audio2audio", {"ref_strength": math.nan}, errors.INVALID_PARAMETER, "ref_strength"),
    # int((1 - 0.9) * 5) = 0 steps left
    ("audio2audio", {"ref_strength": 0.9, "infer_steps": 5}, errors.INVALID_PARAMETER, "ref_"),
    ("edit", {"edit_prompt": None}, errors.INVALID_PROMPT, "edit_prompt"),
    ("edit", {"edit_prompt": "  "}, errors.INVALID_PROMPT, "edit_prompt"),
    ("edit", {"edit_prompt": "x" * 1001}, errors.INVALID_PROMPT, "edit_prompt"),
    ("edit", {"edit_prompt": "rain \udcff"}, errors.INVALID_PROMPT, "edit_prompt"),
    ("edit", {"edit_prompt": 3}, errors.INVALID_PROMPT, "edit_prompt"),
    ("edit", {"edit_n_min": 0.5, "edit_n_max": 0.5}, errors.INVALID_PARAMETER, "edit_n_min"),
    ("edit", {"edit_n_min": -0.1}, errors.INVALID_PARAMETER, "edit_n_min"),
    ("edit", {"edit_n_max": 1.5}, errors.INVALID_PARAMETER, "edit_n_max"),
    ("edit", {"edit_n_avg": 0}, errors.INVALID_PARAMETER, "edit_n_avg"),
    ("edit", {"edit_n_avg": 9}, errors.INVALID_PARAMETER, "edit_n_avg"),
    ("edit", {"edit_n_avg": 2.0}, errors.INVALID_PARAMETER, "edit_n_avg"),
    ("edit", {"scheduler": "heun"}, errors.INVALID_SCHEDULER, "euler"),
    ("edit", {"scheduler": "pingpong"}, errors.INVALID_SCHEDULER, "euler"),
    ("edit", {"cfg_type": "cfg_star"}, errors.INVALID_CFG_TYPE, "cfg_star"),
]


@pytest.mark.parametrize(("task", "overrides", "code", "fragment"), TASK_REJECTED)
def test_an_invalid_task_field_gets_its_code(
    task: str, overrides: dict[str, Any], code: int, fragment: str
) -> None:
    error = task_error(task, **overrides)
    assert error.code == code, error.message
    assert fragment in error.message


TASK_ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("retake", {"retake_variance": 0.0}),  # reproduces text2music
    ("retake", {"retake_variance": 1.0, "retake_seed": MAX_SEED}),
    ("repaint", {"repaint_start": 0.0, "repaint_end": 240.0}),
    ("extend", {"extend_left": 3.0, "extend_right": 0.0, "retake_variance": 0.4}),
    ("audio2audio", {"ref_strength": 0.0}),
    ("audio2audio", {"ref_strength": 0.95, "infer_steps": 20}),
    ("edit", {"edit_n_min": 0.0, "edit_n_max": 0.01, "edit_n_avg": 8, "cfg_type": "cfg"}),
    # the source decides the length: duration_sec is not range-checked for source tasks
    ("repaint", {"duration_sec": 240.01}),
]


@pytest.mark.parametrize(("task", "overrides"), TASK_ACCEPTED)
def test_task_values_at_the_edges_are_accepted(task: str, overrides: dict[str, Any]) -> None:
    params = task_params(task, **overrides)
    for name, value in overrides.items():
        assert getattr(params, name) == value


def test_duration_is_still_checked_for_text_tasks_and_must_be_positive_for_source_tasks() -> None:
    assert task_error("retake", duration_sec=241.0).code == errors.INVALID_DURATION
    assert task_error("edit", duration_sec=0).code == errors.INVALID_DURATION
    assert task_error("extend", duration_sec=math.nan).code == errors.INVALID_DURATION


@pytest.mark.parametrize(
    ("task", "variance"),
    [
        ("text2music", None),
        ("retake", 0.5),
        ("repaint", 0.5),
        ("extend", 1.0),
        ("audio2audio", None),
        ("edit", None),
    ],
)
def test_resolved_fills_the_task_default_variance(task: str, variance: float | None) -> None:
    params = task_params(task)
    assert params.retake_variance is None
    resolved = params.resolved()
    assert resolved.retake_variance == variance
    assert dataclasses.replace(resolved, retake_variance=None) == params
    # a given variance is kept
    if variance is not None:
        assert task_params(task, retake_variance=0.25).resolved().retake_variance == 0.25


def test_an_old_sidecar_without_the_task_fields_loads_as_text2music() -> None:
    old = {key: value for key, value in DEFAULTS.items() if key not in TASK_FIELDS}
    del old["task"]
    params = GenerationParams.from_dict({"prompt": "lofi", **old, "seed": 3})
    assert params == GenerationParams(prompt="lofi", seed=3)
    assert params.task == "text2music"


def test_a_task_round_trips_through_to_dict() -> None:
    params = task_params("edit", edit_n_min=0.2, edit_n_max=0.4, edit_n_avg=3, seed=9)
    data = params.to_dict()
    assert data["task"] == "edit" and data["edit_prompt"] == "jazz piano"
    assert set(data) == set(DEFAULTS) | {"prompt"}
    assert GenerationParams.from_dict(data) == params
    assert params.with_seed(4).to_dict() == {**data, "seed": 4}


# -- backends --------------------------------------------------------------------------------

TURBO = "ace-step-1.5"


def refused(build: Callable[[], object]) -> LofiError:
    with pytest.raises(LofiError) as info:
        build()
    return info.value


def turbo(**fields: Any) -> GenerationParams:
    return GenerationParams.from_dict({"prompt": "lofi", "backend": TURBO, **fields})


def test_turbo_takes_its_own_fields() -> None:
    params = turbo(
        lyrics="[verse]\nrain on the window",
        vocal_language="en",
        bpm=84,
        keyscale="F# minor",
        time_signature=4,
        shift=1,
        duration_sec=600,
        seed=3,
        format="flac",
    )
    assert (params.bpm, params.keyscale, params.shift) == (84, "F# minor", 1)
    assert params.diffusion_steps == 8 and GenerationParams(prompt="x").diffusion_steps == 27
    assert turbo(keyscale="B♭ major").keyscale == "B♭ major"
    assert set(accepted_fields(TURBO)) == {
        "prompt",
        "duration_sec",
        "seed",
        "format",
        "wav_subtype",
        "backend",
        "lyrics",
        "vocal_language",
        "bpm",
        "keyscale",
        "time_signature",
        "shift",
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("infer_steps", 8),
        ("guidance_scale", 7.0),
        ("scheduler", "heun"),
        ("cfg_type", "cfg"),
        ("use_erg_tag", False),
        ("omega_scale", 5.0),
        ("edit_prompt", "jazz"),
    ],
)
def test_a_v1_only_field_on_turbo_names_the_field_and_backend(name: str, value: Any) -> None:
    error = refused(lambda: turbo(**{name: value}))
    assert error.code == errors.INVALID_PARAMETER
    assert name in error.message and TURBO in error.message


def test_turbo_accepts_v1_fields_left_at_their_default() -> None:
    assert turbo(infer_steps=27, guidance_scale=15).backend == TURBO


@pytest.mark.parametrize("task", [t for t in TASKS if t != "text2music"])
def test_turbo_runs_text2music_only(task: Any) -> None:
    error = refused(lambda: GenerationParams(prompt="x", backend=TURBO, task=task).validate())
    assert error.code == errors.INVALID_PARAMETER
    assert f"task {task!r} is not available on the backend {TURBO}" in error.message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("lyrics", "la la"),
        ("vocal_language", "en"),
        ("bpm", 90),
        ("keyscale", "C major"),
        ("time_signature", 3),
        ("shift", 1),
    ],
)
def test_a_turbo_field_on_v1_names_the_field_and_backend(name: str, value: Any) -> None:
    error = refused(lambda: GenerationParams.from_dict({"prompt": "x", name: value}))
    assert error.code == errors.INVALID_PARAMETER
    assert f"{name} is not a parameter of the backend ace-step" in error.message


@pytest.mark.parametrize(
    ("fields", "code", "needle"),
    [
        ({"duration_sec": 4.9}, errors.INVALID_DURATION, "between 5 and 600 on the backend"),
        ({"duration_sec": 601}, errors.INVALID_DURATION, "between 5 and 600"),
        ({"lyrics": "x" * 20000}, errors.INVALID_PARAMETER, "lyrics are 20000 characters"),
        ({"lyrics": "  "}, errors.INVALID_PARAMETER, "lyrics must be non-empty"),
        ({"lyrics": 3}, errors.INVALID_PARAMETER, "lyrics must be non-empty"),
        ({"lyrics": "\ud800"}, errors.INVALID_PARAMETER, "not valid text"),
        ({"vocal_language": "english"}, errors.INVALID_PARAMETER, "unknown vocal_language"),
        ({"bpm": 29}, errors.INVALID_PARAMETER, "bpm must be a whole number in 30..300"),
        ({"bpm": 301}, errors.INVALID_PARAMETER, "bpm must be"),
        ({"bpm": 90.5}, errors.INVALID_PARAMETER, "bpm must be"),
        ({"bpm": True}, errors.INVALID_PARAMETER, "bpm must be"),
        ({"keyscale": "c major"}, errors.INVALID_PARAMETER, "unknown key 'c major'"),
        ({"keyscale": "H minor"}, errors.INVALID_PARAMETER, "unknown key"),
        ({"time_signature": 5}, errors.INVALID_PARAMETER, "time_signature must be one of 2, 3"),
        ({"shift": 4}, errors.INVALID_PARAMETER, "shift must be one of 1, 2, 3"),
        ({"shift": 2.0}, errors.INVALID_PARAMETER, "shift must be one of"),
    ],
)
def test_turbo_values_are_checked(fields: dict[str, Any], code: int, needle: str) -> None:
    error = refused(lambda: turbo(**fields))
    assert error.code == code and needle in error.message, error.message


def test_v1_durations_stay_v1s() -> None:
    error = refused(lambda: GenerationParams.from_dict({"prompt": "x", "duration_sec": 300}))
    assert error.code == errors.INVALID_DURATION and "between 5 and 240" in error.message


@pytest.mark.parametrize("backend", ["musicgen", "", 3, None])
def test_unknown_backend(backend: Any) -> None:
    error = refused(lambda: GenerationParams.from_dict({"prompt": "x", "backend": backend}))
    assert error.code == errors.INVALID_BACKEND and "ace-step-1.5" in error.message


def test_every_field_belongs_to_a_backend() -> None:
    assert set(BACKEND_FIELDS) == set(GenerationParams.field_names())
    assert all(owners for owners in BACKEND_FIELDS.values())
