"""The radio notification params: each builder gives exactly the fields docs/protocol.md lists."""

from __future__ import annotations

import re
from pathlib import Path

from lofi_daemon.service.radio_payloads import (
    save_failed_payload,
    saved_payload,
    segment_payload,
    starved_payload,
    stopped_payload,
)

PROTOCOL_DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
SEGMENT = {
    "index": 2,
    "kind": "generated",
    "track_id": "0" * 24,
    "path": "/c/x.flac",
    "duration_sec": 5.0,
    "start_sec": 10.0,
    "prompt": "rain",
}


def documented(method: str) -> list[str]:
    text = PROTOCOL_DOC.read_text(encoding="utf-8")
    match = re.search(rf"^\| `{method}` \| ([^|]+) \|$", text, re.MULTILINE)
    assert match, f"{method} is not in a notification table"
    return [name.strip(" `") for name in match.group(1).split(",")]


def test_radio_segment() -> None:
    payload = segment_payload("s1", 12.34567, SEGMENT)
    assert payload == {"station_id": "s1", "buffer_ahead_sec": 12.346, **SEGMENT}
    assert list(payload) == documented("radio_segment")


def test_radio_starved() -> None:
    payload = starved_payload("s1", 1.0, 0.51234, None)
    assert payload["rtf"] == 0.512 and payload["fill_track_id"] is None
    assert "no cached track" in payload["message"]
    assert list(payload) == documented("radio_starved")
    assert "library" in starved_payload("s1", 1.0, None, "1" * 24)["message"]


def test_radio_stopped() -> None:
    assert stopped_payload("s1", "stopped") == {"station_id": "s1", "reason": "stopped"}
    failed = stopped_payload("s1", "failed", "boom")
    assert failed["message"] == "boom"
    assert documented("radio_stopped")[:2] == ["station_id", "reason"]


def test_radio_saved() -> None:
    payload = saved_payload("s1", Path("/m/a.flac"), 61.23456, 12, 3, 2)
    assert payload == {
        "station_id": "s1",
        "path": "/m/a.flac",
        "duration_sec": 61.235,
        "segments": 12,
        "first_index": 3,
        "missing": 2,
    }
    assert list(payload) == documented("radio_saved")


def test_radio_save_failed() -> None:
    payload = save_failed_payload("s1", Path("/m/a.flac"), -32018, "disk full")
    assert payload == {
        "station_id": "s1",
        "path": "/m/a.flac",
        "code": -32018,
        "message": "disk full",
    }
    assert list(payload) == documented("radio_save_failed")
