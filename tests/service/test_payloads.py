"""The notification params: each builder gives exactly the fields docs/protocol.md lists."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.service.cache import TrackEntry
from lofi_daemon.service.payloads import (
    cancelled_payload,
    complete_payload,
    error_payload,
    final_progress_payload,
    progress_payload,
    start_payload,
)

PROTOCOL_DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
TRACK = "0123456789abcdef01234567"
PARAMS = GenerationParams(prompt="rain", duration_sec=12.5, seed=9, infer_steps=20)


@dataclass(frozen=True)
class Report:
    phase: str
    step: int
    total: int
    percent: float
    eta_sec: float | None


def documented_fields(method: str) -> list[str]:
    """The params column of ``method``'s row in the notification table of docs/protocol.md."""
    text = PROTOCOL_DOC.read_text(encoding="utf-8")
    match = re.search(rf"^\| `{method}` \| ([^|]+) \|$", text, re.MULTILINE)
    assert match, f"{method} is not in the notification table"
    return [name.strip() for name in match.group(1).strip("` ").split(",")]


def entry(tmp_path: Path) -> TrackEntry:
    meta = {
        "prompt": "rain",
        "duration_sec": 12.48,
        "seed": 9,
        "sample_rate": 48000,
        "channels": 2,
        "format": "flac",
        "model_version": "m1",
        "backend": "ace-step",
        "generation_time_sec": 3.25,
        "created_at": 1.0,
    }
    return TrackEntry(
        track_id=TRACK,
        path=tmp_path / f"{TRACK}.flac",
        meta_path=tmp_path / f"{TRACK}.json",
        size_bytes=10,
        last_used_at=2.0,
        metadata=meta,
    )


def test_start_payload() -> None:
    payload = start_payload(TRACK, PARAMS)
    assert payload == {
        "track_id": TRACK,
        "prompt": "rain",
        "duration_sec": 12.5,
        "seed": 9,
        "infer_steps": 20,
        "task": "text2music",
        "backend": "ace-step",
    }
    assert list(payload) == documented_fields("generation_start")
    turbo = GenerationParams(prompt="rain", seed=9, backend="ace-step-1.5")
    assert start_payload(TRACK, turbo)["infer_steps"] == 8  # turbo's fixed schedule
    assert start_payload(TRACK, turbo)["backend"] == "ace-step-1.5"


def test_progress_payload_rounds_and_keeps_a_missing_eta() -> None:
    payload = progress_payload(TRACK, Report("diffusion", 3, 40, 7.56, 12.345), 7.56)
    assert payload == {
        "track_id": TRACK,
        "percent": 7.6,
        "step": 3,
        "total_steps": 40,
        "phase": "diffusion",
        "eta_sec": 12.3,
    }
    assert list(payload) == documented_fields("generation_progress")
    assert progress_payload(TRACK, Report("encode", 1, 40, 2.5, None), 2.5)["eta_sec"] is None


def test_final_progress_is_100_at_the_last_step() -> None:
    last = progress_payload(TRACK, Report("decode", 38, 40, 95.0, 1.0), 95.0)
    assert final_progress_payload(TRACK, last) == {
        "track_id": TRACK,
        "percent": 100.0,
        "step": 40,
        "total_steps": 40,
        "phase": "decode",
        "eta_sec": 0.0,
    }
    never_reported = final_progress_payload(TRACK, None)
    assert (never_reported["step"], never_reported["total_steps"]) == (1, 1)


def test_complete_payload(tmp_path: Path) -> None:
    payload = complete_payload(entry(tmp_path), cached=True)
    assert payload == {
        "track_id": TRACK,
        "path": str(tmp_path / f"{TRACK}.flac"),
        "duration_sec": 12.48,
        "sample_rate": 48000,
        "channels": 2,
        "format": "flac",
        "prompt": "rain",
        "seed": 9,
        "generation_time_sec": 3.25,
        "model_version": "m1",
        "backend": "ace-step",
        "task": "text2music",
        "cached": True,
    }
    assert list(payload) == documented_fields("generation_complete")
    assert complete_payload(entry(tmp_path), cached=False)["cached"] is False


@pytest.mark.parametrize("code", [errors.MODEL_LOAD_FAILED, errors.OUTPUT_WRITE_FAILED])
def test_error_payload(code: int) -> None:
    error = LofiError(code, "it broke")
    payload = error_payload(TRACK, error)
    assert payload == {
        "track_id": TRACK,
        "code": code,
        "name": errors.error_info(code).name,
        "message": "it broke",
        "remedy": errors.error_info(code).remedy,
    }
    assert list(payload) == documented_fields("generation_error")


def test_cancelled_payload_has_a_step_only_once_started() -> None:
    assert cancelled_payload(TRACK) == {"track_id": TRACK}
    assert cancelled_payload(TRACK, 0) == {"track_id": TRACK, "step": 0}
    assert cancelled_payload(TRACK, 12) == {"track_id": TRACK, "step": 12}
