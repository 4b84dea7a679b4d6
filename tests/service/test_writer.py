"""MessageWriter over a real pipe: whole lines from many threads, back pressure while the client
does not read, and a bounded wait once the daemon is stopping (issue 10, item 23)."""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Iterator
from typing import IO, Any

import pytest

from lofi_daemon.service import writer as writer_module
from lofi_daemon.service.writer import MessageWriter

HANG_GUARD_SEC = 30.0  # only how long a hang may take to show; never a timing assertion
BIG = 1 << 20  # more than any pipe buffer


@pytest.fixture
def pipe() -> Iterator[tuple[io.BufferedReader, io.BufferedWriter]]:
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "rb") as reader, os.fdopen(write_fd, "wb") as out:
        yield reader, out


def in_thread(target: Any, *args: Any) -> tuple[threading.Thread, list[Any]]:
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(target(*args)), daemon=True)
    thread.start()
    return thread, results


def read_messages(reader: IO[bytes]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in iter(reader.readline, b"")]


def test_lines_never_interleave_over_a_pipe(
    pipe: tuple[io.BufferedReader, io.BufferedWriter],
) -> None:
    reader, out = pipe
    writer = MessageWriter(out)
    collected, messages = in_thread(read_messages, reader)

    def spam(worker: int) -> None:
        for n in range(200):
            writer.send({"worker": worker, "n": n, "pad": "p" * (n * 97)})  # up to ~19 KiB

    threads = [threading.Thread(target=spam, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG_GUARD_SEC)
    out.close()
    collected.join(HANG_GUARD_SEC)
    (received,) = messages
    assert len(received) == 800
    for worker in range(4):
        assert [m["n"] for m in received if m["worker"] == worker] == list(range(200))


def test_a_stopping_writer_gives_up_on_a_client_that_does_not_read(
    pipe: tuple[io.BufferedReader, io.BufferedWriter], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "STOP_WRITE_GRACE_SEC", 0.2)
    _, out = pipe
    writer = MessageWriter(out)
    assert writer.send({"small": True})  # room in the pipe: written at once
    writer.stop_waiting()
    sender, results = in_thread(writer.send, {"pad": "p" * BIG})  # can never fit
    sender.join(HANG_GUARD_SEC)
    assert results == [False] and writer.closed
    assert writer.send({"later": True}) is False  # dropped at once, no wait


def test_a_stopping_writer_still_delivers_to_a_client_that_reads(
    pipe: tuple[io.BufferedReader, io.BufferedWriter], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "STOP_WRITE_GRACE_SEC", 5.0)
    reader, out = pipe
    writer = MessageWriter(out)
    writer.stop_waiting()
    collected, messages = in_thread(read_messages, reader)
    assert writer.send({"pad": "p" * BIG})  # many partial writes, each drained by the reader
    assert writer.send({"after": True})
    out.close()
    collected.join(HANG_GUARD_SEC)
    assert [len(m.get("pad", "")) for m in messages[0]] == [BIG, 0]
