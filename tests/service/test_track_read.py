"""``tracks.read``: chunks of a finished track's file, with the whole file's sha256."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from daemon_checks import GEN, MakeDaemon, error_code
from service.cached_tracks import add_track

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.service.cache import TrackCache
from lofi_daemon.service.track_read import MAX_READ_BYTES, TrackReader

TRACK = "a" * 24


@pytest.fixture
def reader(tmp_path: Path) -> TrackReader:
    cache = TrackCache(tmp_path / "cache")
    add_track(cache, TRACK, 3.5)  # ~1.3 MB float WAV: two 1 MiB chunks
    return TrackReader(cache)


def audio_of(reader: TrackReader) -> bytes:
    entry = reader.cache.get(TRACK, touch=False)
    assert entry is not None
    return entry.path.read_bytes()


def fetch(reader: TrackReader, length: int | None = None) -> tuple[bytes, list[dict[str, Any]]]:
    """Every chunk of TRACK, as a client does it: one read after another until ``eof``."""
    parts: list[bytes] = []
    replies: list[dict[str, Any]] = []
    offset = 0
    while True:
        params: dict[str, Any] = {"track_id": TRACK, "offset": offset}
        if length is not None:
            params["length"] = length
        reply = reader.read(params)
        replies.append(reply)
        data = base64.b64decode(reply["data"])
        assert reply["length"] == len(data) and reply["offset"] == offset
        parts.append(data)
        offset += len(data)
        if reply["eof"]:
            return b"".join(parts), replies


def refused(reader: TrackReader, params: dict[str, Any]) -> LofiError:
    with pytest.raises(LofiError) as caught:
        reader.read(params)
    return caught.value


@pytest.mark.parametrize("length", [None, 300_001, MAX_READ_BYTES])
def test_chunks_reassemble_the_file_byte_for_byte(reader: TrackReader, length: int | None) -> None:
    audio = audio_of(reader)
    assert len(audio) > MAX_READ_BYTES
    data, replies = fetch(reader, length)
    assert data == audio
    assert {r["size"] for r in replies} == {len(audio)}
    assert {r["sha256"] for r in replies} == {hashlib.sha256(audio).hexdigest()}
    assert [r["eof"] for r in replies] == [False] * (len(replies) - 1) + [True]
    assert reader.memo.computed == 1  # the whole-file digest is computed once


def test_digest_follows_a_changed_file(reader: TrackReader) -> None:
    first = reader.read({"track_id": TRACK, "length": 0})
    assert first["data"] == "" and first["length"] == 0 and not first["eof"]
    entry = reader.cache.get(TRACK, touch=False)
    assert entry is not None
    with open(entry.path, "ab") as handle:
        handle.write(b"more")
    os.utime(entry.path, ns=(1, 1))
    second = reader.read({"track_id": TRACK, "offset": first["size"]})
    assert second["size"] == first["size"] + 4 and base64.b64decode(second["data"]) == b"more"
    assert second["sha256"] == hashlib.sha256(entry.path.read_bytes()).hexdigest()
    assert second["sha256"] != first["sha256"] and second["eof"]


def test_offset_at_the_end_is_an_empty_last_chunk(reader: TrackReader) -> None:
    size = len(audio_of(reader))
    reply = reader.read({"track_id": TRACK, "offset": size})
    assert reply["data"] == "" and reply["eof"] and reply["size"] == size


@pytest.mark.parametrize(
    ("params", "code", "words"),
    [
        ({"track_id": TRACK, "length": MAX_READ_BYTES + 1}, errors.INVALID_PARAMETER, "1048576"),
        ({"track_id": TRACK, "length": -1}, errors.INVALID_PARAMETER, "length"),
        ({"track_id": TRACK, "offset": -1}, errors.INVALID_PARAMETER, "offset"),
        ({"track_id": TRACK, "offset": 10**9}, errors.INVALID_PARAMETER, "past the end"),
        ({"track_id": TRACK, "offset": 1.5}, errors.INVALID_PARAMS, "offset"),
        ({"track_id": TRACK, "length": True}, errors.INVALID_PARAMS, "length"),
        ({"track_id": 5}, errors.INVALID_PARAMS, "track_id"),
        ({"track_id": TRACK, "size": 1}, errors.INVALID_PARAMS, "size"),
        ({"track_id": "b" * 24}, errors.TRACK_NOT_FOUND, "b" * 24),
        ({"track_id": "../../etc/passwd"}, errors.TRACK_NOT_FOUND, "passwd"),
    ],
)
def test_bad_requests_are_refused(
    reader: TrackReader, params: dict[str, Any], code: int, words: str
) -> None:
    error = refused(reader, params)
    assert error.code == code and words in error.message


def test_an_unfinished_track_is_not_found(reader: TrackReader) -> None:
    # the audio is written before the sidecar: without one, the track is still being made
    other = "c" * 24
    reader.cache.audio_path(other, "wav").write_bytes(b"RIFF....")
    assert refused(reader, {"track_id": other}).code == errors.TRACK_NOT_FOUND


def test_the_daemon_answers_tracks_read(make_daemon: MakeDaemon) -> None:
    client = make_daemon().client
    track_id = client.result("generate", {**GEN, "seed": 3})["track_id"]
    done = client.terminal(track_id)
    audio = Path(done["params"]["path"]).read_bytes()
    reply = client.result("tracks.read", {"track_id": track_id})
    assert base64.b64decode(reply["data"]) == audio[:MAX_READ_BYTES]
    assert reply["sha256"] == hashlib.sha256(audio).hexdigest() and reply["size"] == len(audio)
    missing = client.call("tracks.read", {"track_id": "d" * 24})
    assert error_code(missing) == errors.TRACK_NOT_FOUND
