"""radio.save in an in-process daemon with the fake engine: the exact concatenation, off the
request thread, the run that is left after evictions, failures, and saves through a shutdown."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from daemon_checks import MakeDaemon, error_code
from daemon_doubles import RpcClient
from service.radio_client import notes, start, stop_station, wait_segments

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.fsutil import temp_path
from lofi_daemon.radio.save import Saved, save_concatenation
from lofi_daemon.service import server as server_module

SAVE_ENDS = ("radio_saved", "radio_save_failed")


def save_end(client: RpcClient, path: Path, timeout: float = 15.0) -> dict[str, Any]:
    """The one notification that ends the save to ``path``."""
    return client.wait_for(
        lambda m: m.get("method") in SAVE_ENDS and m["params"]["path"] == str(path), timeout
    )


def save_ends(client: RpcClient) -> list[dict[str, Any]]:
    return [m for m in list(client.messages) if m.get("method") in SAVE_ENDS]


def int16(path: str | Path) -> np.ndarray:
    return sf.read(str(path), dtype="int16")[0]


def assert_saved_run(client: RpcClient, station_id: str, out: Path, first: int, count: int) -> None:
    """``out`` holds exactly segments ``first`` .. ``first + count - 1``, back to back."""
    segments = wait_segments(client, station_id, first + count)[first : first + count]
    assert [s["index"] for s in segments] == list(range(first, first + count))
    np.testing.assert_array_equal(int16(out), np.concatenate([int16(s["path"]) for s in segments]))


class GatedWriter:
    """A save writer that waits for ``gate`` before writing (``save_concatenation``), so a
    test can act while a save runs; ``fail`` makes it raise instead of writing."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.fail = fail

    def __call__(self, paths: Sequence[Path], out: Path) -> Saved:
        self.started.set()
        self.gate.wait(30)
        if self.fail is not None:
            raise self.fail
        return save_concatenation(paths, out)


def test_save_writes_the_exact_concatenation(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    daemon = make_daemon()
    client = daemon.client
    station_id = start(client)
    wait_segments(client, station_id, 3)
    out = tmp_path / "session.flac"
    reply = client.call("radio.save", {"path": str(out)})
    started = reply["result"]
    assert started["status"] == "saving" and started["path"] == str(out)
    assert started["first_index"] == 0 and started["segments"] >= 3
    end = save_end(client, out)
    assert client.index(reply) < client.index(end)
    assert end["method"] == "radio_saved"
    saved = end["params"]
    assert saved == {
        "station_id": station_id,
        "path": str(out),
        "duration_sec": saved["duration_sec"],
        "segments": started["segments"],
        "first_index": 0,
        "missing": 0,
    }
    assert_saved_run(client, station_id, out, 0, started["segments"])
    assert sf.info(str(out)).samplerate == 48000
    assert saved["duration_sec"] == pytest.approx(sf.info(str(out)).duration, abs=1e-3)
    again = client.call("radio.save", {"path": str(out)})
    assert error_code(again) == errors.INVALID_PARAMETER  # never overwrites, refused at once
    assert "already exists" in again["error"]["message"]
    stop_station(client)
    assert len(save_ends(client)) == 1
    assert not daemon.server.cache.held()


def test_a_save_runs_off_the_request_thread_and_outlives_the_station(
    make_daemon: MakeDaemon, tmp_path: Path
) -> None:
    daemon = make_daemon()
    client = daemon.client
    writer = GatedWriter()
    daemon.server.radio.saver.write = writer
    station_id = start(client)
    wait_segments(client, station_id, 3)
    out = tmp_path / "long.wav"
    started = client.result("radio.save", {"path": str(out)})
    assert writer.started.wait(10)
    # The daemon answers while the file is being written.
    assert client.result("radio.status")["station_id"] == station_id
    second = client.call("radio.save", {"path": str(tmp_path / "other.flac")})
    assert error_code(second) == errors.INVALID_PARAMETER
    assert f"a save is already running ({out})" in second["error"]["message"]
    ids = [s["track_id"] for s in notes(client, "radio_segment", station_id)]
    stop_station(client)  # the save goes on, its segments held
    cache = daemon.server.cache
    assert set(ids[: started["segments"]]) <= cache.held()
    assert not save_ends(client) and not out.exists()
    writer.gate.set()
    end = save_end(client, out)
    assert end["method"] == "radio_saved" and end["params"]["segments"] == started["segments"]
    assert_saved_run(client, station_id, out, 0, started["segments"])
    assert not cache.held()
    assert len(save_ends(client)) == 1


def test_a_save_keeps_the_run_that_ends_at_the_newest_segment(
    make_daemon: MakeDaemon, tmp_path: Path
) -> None:
    daemon = make_daemon()
    client = daemon.client
    station_id = start(client)
    segments = wait_segments(client, station_id, 3)
    cache = daemon.server.cache
    # Segment 1 was evicted after it was played; segment 0 (liked, say) is still cached but
    # is left out too: the file is one continuous run.
    assert cache.delete(segments[1]["track_id"])
    out = tmp_path / "partial.flac"
    started = client.result("radio.save", {"path": str(out)})
    assert started["first_index"] == 2
    end = save_end(client, out)["params"]
    assert (end["first_index"], end["missing"]) == (2, 1)
    assert end["segments"] == started["segments"]
    assert_saved_run(client, station_id, out, 2, started["segments"])
    newest = notes(client, "radio_segment", station_id)[-1]
    assert cache.delete(newest["track_id"])
    gone = client.call("radio.save", {"path": str(tmp_path / "none.flac")})
    assert error_code(gone) == errors.TRACK_NOT_FOUND
    assert "newest segment" in gone["error"]["message"]
    assert gone["error"]["data"]["remedy"]
    assert not (tmp_path / "none.flac").exists()
    stop_station(client)
    assert len(save_ends(client)) == 1 and not cache.held()


def test_a_failed_save_ends_with_radio_save_failed(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    daemon = make_daemon()
    client = daemon.client
    station_id = start(client)
    wait_segments(client, station_id, 1)
    for failure, code in (
        (LofiError(errors.OUTPUT_WRITE_FAILED, "disk full"), errors.OUTPUT_WRITE_FAILED),
        (RuntimeError("boom"), errors.INTERNAL_ERROR),
    ):
        writer = GatedWriter(fail=failure)
        writer.gate.set()
        daemon.server.radio.saver.write = writer
        out = tmp_path / f"{code}.flac"
        client.result("radio.save", {"path": str(out)})
        end = save_end(client, out)
        assert end["method"] == "radio_save_failed"
        assert end["params"]["station_id"] == station_id
        assert end["params"]["code"] == code and end["params"]["message"]
        assert not out.exists()
    assert "disk full" in save_ends(client)[0]["params"]["message"]
    assert "RuntimeError: boom" in save_ends(client)[1]["params"]["message"]
    assert len(save_ends(client)) == 2  # one each
    stop_station(client)
    assert not daemon.server.cache.held()


def test_shutdown_lets_a_running_save_finish(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    daemon = make_daemon()
    client = daemon.client
    writer = GatedWriter()
    daemon.server.radio.saver.write = writer
    station_id = start(client)
    wait_segments(client, station_id, 2)
    out = tmp_path / "last.flac"
    started = client.result("radio.save", {"path": str(out)})
    assert writer.started.wait(10)
    threading.Timer(0.3, writer.gate.set).start()
    assert daemon.stop() == 0
    end = save_end(client, out)  # the reader thread may get it after stop() returns
    assert save_ends(client) == [end]
    assert end["method"] == "radio_saved"
    assert_saved_run(client, station_id, out, 0, started["segments"])


def test_shutdown_gives_up_a_save_that_does_not_end(
    make_daemon: MakeDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "SAVE_GRACE_SEC", 0.3)
    daemon = make_daemon()
    client = daemon.client
    out = tmp_path / "stuck.flac"
    writer = GatedWriter(fail=LofiError(errors.OUTPUT_WRITE_FAILED, "too late"))
    temporary = temp_path(out)

    def stuck(paths: Sequence[Path], dest: Path) -> Saved:
        temporary.write_bytes(b"partial")  # what an interrupted save_concatenation leaves
        return writer(paths, dest)

    daemon.server.radio.saver.write = stuck
    station_id = start(client)
    wait_segments(client, station_id, 1)
    client.result("radio.save", {"path": str(out)})
    assert writer.started.wait(10)
    assert daemon.stop() == 0  # within the grace, not after the writer
    end = save_end(client, out)  # the reader thread may get it after stop() returns
    assert save_ends(client) == [end]
    assert end["method"] == "radio_save_failed"
    assert end["params"]["code"] == errors.OUTPUT_WRITE_FAILED
    assert "daemon stopped before the save" in end["params"]["message"]
    assert not temporary.exists() and not out.exists()
    writer.gate.set()  # the thread ends; its late failure is only logged
