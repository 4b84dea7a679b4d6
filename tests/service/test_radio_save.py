"""RadioSaver without a daemon: which segments a save covers, the holds, one save at a time,
exactly one ending notification, and a save given up at shutdown (the daemon-level cases are
in tests/service/test_radio.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.fsutil import temp_path
from lofi_daemon.radio.plan import Segment
from lofi_daemon.radio.save import Saved
from lofi_daemon.service.cache import TrackCache
from lofi_daemon.service.radio_save import RadioSaver, cached_run


class FakeCache:
    """The three TrackCache calls RadioSaver makes, over a set of present track ids."""

    def __init__(self, present: set[str]) -> None:
        self.present = present
        self.holds: dict[str, int] = {}

    def hold(self, ids: Sequence[str]) -> None:
        for i in ids:
            self.holds[i] = self.holds.get(i, 0) + 1

    def release(self, ids: Sequence[str]) -> None:
        for i in ids:
            self.holds[i] -= 1
            if not self.holds[i]:
                del self.holds[i]

    def get(self, track_id: str, *, touch: bool = True) -> object | None:
        return object() if track_id in self.present else None


def segs(count: int) -> list[Segment]:
    return [
        Segment(i, "generated", f"t{i}", Path(f"/c/t{i}.flac"), 5.0, 5.0 * i, "p", i)
        for i in range(count)
    ]


class Writer:
    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls: list[tuple[list[Path], Path]] = []

    def __call__(self, paths: Sequence[Path], out: Path) -> Saved:
        self.calls.append((list(paths), out))
        self.gate.wait(10)
        return Saved(out, 5.0 * len(paths), len(paths))


def make(present: set[str]) -> tuple[RadioSaver, FakeCache, Writer, list[tuple[str, Any]]]:
    cache = FakeCache(present)
    sent: list[tuple[str, Any]] = []
    writer = Writer()
    saver = RadioSaver(cast(TrackCache, cache), lambda m, p: sent.append((m, p)), write=writer)
    return saver, cache, writer, sent


def test_cached_run() -> None:
    five = segs(5)
    assert cached_run(five, lambda i: True) == 0
    assert cached_run(five, lambda i: i != "t0") == 1
    assert cached_run(five, lambda i: i != "t2") == 3  # t0 and t1 are before the gap
    with pytest.raises(LofiError) as caught:
        cached_run(five, lambda i: i != "t4")
    assert caught.value.code == errors.TRACK_NOT_FOUND and caught.value.remedy
    assert "newest segment (4, t4)" in caught.value.message
    with pytest.raises(LofiError) as caught:
        cached_run([], lambda i: True)
    assert caught.value.code == errors.INVALID_PARAMETER


def test_a_save_holds_its_run_and_ends_with_one_notification(tmp_path: Path) -> None:
    saver, cache, writer, sent = make({"t1", "t3", "t4"})
    out = tmp_path / "a.flac"
    job, launch = saver.begin("st", segs(5), out)
    assert job.reply() == {"status": "saving", "path": str(out), "segments": 2, "first_index": 3}
    assert job.missing == 2  # t0 and t2 are gone; t1 is cached but before the gap
    assert cache.holds == {"t3": 1, "t4": 1}
    assert saver.running == out and not writer.calls  # nothing is written before launch
    second = tmp_path / "b.flac"
    with pytest.raises(LofiError, match=r"a save is already running \(.*a\.flac\)"):
        saver.begin("st", segs(5), second)
    assert cache.holds == {"t3": 1, "t4": 1}
    launch()
    writer.gate.set()
    assert saver.wait(10)
    assert writer.calls == [([Path("/c/t3.flac"), Path("/c/t4.flac")], out)]
    assert sent == [
        (
            "radio_saved",
            {
                "station_id": "st",
                "path": str(out),
                "duration_sec": 10.0,
                "segments": 2,
                "first_index": 3,
                "missing": 2,
            },
        )
    ]
    assert cache.holds == {} and saver.running is None
    saver.begin("st", segs(5), second)  # the slot is free again


def test_refusals_before_anything_is_held(tmp_path: Path) -> None:
    saver, cache, _, sent = make({"t0"})
    (tmp_path / "there.flac").write_bytes(b"x")
    for out, words in (
        (Path("rel.flac"), "relative"),
        (tmp_path / "there.flac", "already exists"),
        (tmp_path / "x.mp3", "'.mp3'"),
        (tmp_path / "nope" / "x.flac", "does not exist"),
    ):
        with pytest.raises(LofiError, match=words) as caught:
            saver.begin("st", segs(1), out)
        assert caught.value.code == errors.INVALID_PARAMETER
    with pytest.raises(LofiError) as caught:
        saver.begin("st", segs(2), tmp_path / "y.flac")  # t1, the newest, is gone
    assert caught.value.code == errors.TRACK_NOT_FOUND
    assert cache.holds == {} and saver.running is None and not sent


def test_a_save_that_does_not_end_is_given_up(tmp_path: Path) -> None:
    saver, cache, writer, sent = make({"t0"})
    out = tmp_path / "slow.flac"
    job, launch = saver.begin("st", segs(1), out)
    launch()
    leftover = temp_path(out)
    leftover.write_bytes(b"half")
    other = tmp_path / "other.flac.tmp"
    other.write_bytes(b"not ours")
    assert not saver.wait(0.1)
    assert [m for m, _ in sent] == ["radio_save_failed"]
    assert sent[0][1]["code"] == errors.OUTPUT_WRITE_FAILED
    assert not leftover.exists() and other.exists()
    assert saver.running is None
    writer.gate.set()  # it ends late: logged, not sent
    assert job.thread is not None
    job.thread.join(5)
    assert cache.holds == {} and len(sent) == 1


def test_a_signal_gives_up_the_wait_at_once(tmp_path: Path) -> None:
    saver, cache, writer, sent = make({"t0"})
    job, launch = saver.begin("st", segs(1), tmp_path / "signal.flac")
    launch()
    began = time.monotonic()
    assert not saver.wait(30, interrupted=lambda: True)
    assert time.monotonic() - began < 10  # not the 30 s grace
    assert [m for m, _ in sent] == ["radio_save_failed"]
    writer.gate.set()
    assert job.thread is not None
    job.thread.join(5)
    assert cache.holds == {} and len(sent) == 1
    assert saver.wait(30)  # nothing runs any more
