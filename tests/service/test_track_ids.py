"""Track ids: every audio-affecting input changes the id, equal values share one, text2music ids
are what they were before the audio tasks, and only id-shaped strings pass :func:`is_track_id`."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from lofi_daemon.pipeline.backend_params import TURBO_FIELDS
from lofi_daemon.pipeline.params import TASK_FIELDS, GenerationParams
from lofi_daemon.service.track_ids import (
    COMMON_FIELDS,
    TRACK_ID_CHARS,
    SourceKey,
    canonical_params,
    hashed_fields,
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


# Task fields: (task the field belongs to, value other than its default).
TASK_VALUES = [
    ("retake_variance", "retake", 0.3),
    ("retake_seed", "retake", 12),
    ("repaint_start", "repaint", 1.0),
    ("repaint_end", "repaint", 3.0),
    ("extend_left", "extend", 2.0),
    ("extend_right", "extend", 3.0),
    ("ref_strength", "audio2audio", 0.7),
    ("edit_prompt", "edit", "jazz"),
    ("edit_n_min", "edit", 0.2),
    ("edit_n_max", "edit", 0.6),
    ("edit_n_avg", "edit", 2),
]
TASK_BASES = {
    "retake": dataclasses.replace(BASE, task="retake", retake_seed=5),
    "repaint": dataclasses.replace(
        BASE, task="repaint", retake_seed=5, repaint_start=0.5, repaint_end=2.0
    ),
    "extend": dataclasses.replace(BASE, task="extend", retake_seed=5, extend_right=1.0),
    "audio2audio": dataclasses.replace(BASE, task="audio2audio"),
    "edit": dataclasses.replace(BASE, task="edit", edit_prompt="jazz piano"),
}
SOURCE = SourceKey("path", "ab" * 32)


def test_the_id_test_covers_every_parameter() -> None:
    covered = {name for name, _ in CHANGED_VALUES} | {name for name, *_ in TASK_VALUES}
    turbo = {name for name, _ in TURBO_VALUES}
    assert covered | turbo | {"task", "backend"} == set(GenerationParams.field_names())


def test_text2music_ids_are_unchanged_by_the_task_fields() -> None:
    # Computed with the code before the audio tasks existed (issue 11): a text2music track id
    # must stay what it was, so existing caches keep their hits.
    old = GenerationParams(prompt="lofi beat", duration_sec=30.0, seed=7)
    assert track_id_for(old, model_version="m1", backend="ace-step") == "db744a04f40a343f996aaa25"
    assert hashed_fields("text2music") == COMMON_FIELDS and len(COMMON_FIELDS) == 18
    assert "task" not in canonical_params(old)


@pytest.mark.parametrize(("name", "task", "value"), TASK_VALUES)
def test_every_task_parameter_changes_its_tasks_id(name: str, task: str, value: Any) -> None:
    base = TASK_BASES[task]
    if task == "repaint" and name == "repaint_start":
        base = dataclasses.replace(base, repaint_end=3.0)
    source = SOURCE if task not in ("retake",) else None
    before = track_id_for(base, model_version="m1", backend="b", source=source)
    changed = dataclasses.replace(base, **{name: value})
    assert track_id_for(changed, model_version="m1", backend="b", source=source) != before


def test_task_ids_differ_from_text2music_and_resolve_defaults() -> None:
    retake = TASK_BASES["retake"]
    assert tid(retake) != tid(dataclasses.replace(retake, task="text2music", retake_seed=None))
    # retake_variance None means the task default (0.5): the same track.
    assert tid(retake) == tid(retake, retake_variance=0.5)
    assert tid(retake, retake_variance=1) == tid(retake, retake_variance=1.0)


def test_source_tasks_ignore_the_duration_and_hash_the_source_and_variant() -> None:
    extend = TASK_BASES["extend"]

    def key(params: GenerationParams, **kwargs: Any) -> str:
        return track_id_for(params, model_version="m1", backend="b", **kwargs)

    assert key(extend, source=SOURCE) == key(
        dataclasses.replace(extend, duration_sec=99.0), source=SOURCE
    )
    other = SourceKey("path", "cd" * 32)
    assert key(extend, source=SOURCE) != key(extend, source=other)
    track = SourceKey("track", "ab" * 32, ref="0" * TRACK_ID_CHARS)
    assert key(extend, source=SOURCE) != key(extend, source=track)
    assert key(extend, source=SOURCE) != key(extend, source=SOURCE, variant="jazz")


def test_retake_tasks_need_a_fixed_retake_seed() -> None:
    with pytest.raises(ValueError, match="retake seed"):
        tid(TASK_BASES["extend"], retake_seed=None)


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
    assert set(canonical) == set(COMMON_FIELDS)
    assert set(COMMON_FIELDS) == set(GenerationParams.field_names()) - {
        "task",
        "backend",
        *TASK_FIELDS,
        *TURBO_FIELDS,
    }
    assert type(canonical["duration_sec"]) is float and canonical["duration_sec"] == 30.0
    assert str(canonical["omega_scale"]) == "0.0"  # -0.0 + 0.0 is +0.0
    assert canonical["seed"] == 7 and type(canonical["seed"]) is int
    assert canonical["use_erg_tag"] is True


# -- backends ------------------------------------------------------------------------------

TURBO = GenerationParams(prompt="lofi beat", duration_sec=30.0, seed=7, backend="ace-step-1.5")
TURBO_VALUES = [
    ("prompt", "lofi beat "),
    ("duration_sec", 31.0),
    ("seed", 8),
    ("format", "flac"),
    ("wav_subtype", "float"),
    ("lyrics", "[verse]\nla la"),
    ("vocal_language", "en"),
    ("bpm", 90),
    ("keyscale", "F# minor"),
    ("time_signature", 4),
    ("shift", 1),
]


def turbo_id(**changes: Any) -> str:
    params = dataclasses.replace(TURBO, **changes)
    return track_id_for(params, model_version="t1", backend="ace-step-1.5")


def test_v1_ids_are_unchanged_by_the_backend_fields() -> None:
    # Computed with the code before ACE-Step 1.5 (issue 13): v1 ids, text2music and task ones,
    # must stay what they were, so existing caches keep their hits.
    text = GenerationParams(prompt="rainy night lofi, soft piano", duration_sec=30.0, seed=42)
    version = "ace-step-v1-3.5b-0123456789ab"
    assert track_id_for(text, model_version=version, backend="ace-step") == (
        "31bd8f49de83b19acebac624"
    )
    retake = GenerationParams(prompt="rainy night lofi", seed=7, task="retake", retake_seed=9)
    assert track_id_for(retake, model_version="m1", backend="ace-step") == (
        "7af87d98b064d158500f2690"
    )
    assert not set(TURBO_FIELDS) & set(canonical_params(text))


@pytest.mark.parametrize(("name", "value"), TURBO_VALUES)
def test_every_turbo_parameter_changes_a_turbo_id(name: str, value: Any) -> None:
    assert turbo_id(**{name: value}) != turbo_id()


def test_turbo_ids_hash_only_turbo_fields() -> None:
    assert hashed_fields("text2music", "ace-step-1.5") == tuple(n for n, _ in TURBO_VALUES)
    assert turbo_id(bpm=90) == turbo_id(bpm=90)
    v1 = dataclasses.replace(TURBO, backend="ace-step")
    assert track_id_for(v1, model_version="t1", backend="ace-step") != turbo_id()


def test_a_turbo_id_needs_its_own_backend() -> None:
    with pytest.raises(ValueError, match="does not match"):
        track_id_for(TURBO, model_version="t1", backend="ace-step")
