"""Framing, validation and dispatch of lofi_daemon.service.rpc, and the protocol document."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.service.handlers import DEPRECATED_METHODS, METHODS
from lofi_daemon.service.rpc import (
    ERROR_TABLE_END,
    ERROR_TABLE_START,
    Dispatcher,
    InvalidMessage,
    MessageWriter,
    Reply,
    decode_line,
    encode_message,
    error_table_markdown,
    parse_request,
    read_lines,
)


def lines_of(buffer: io.BytesIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


# -- framing ---------------------------------------------------------------------------------


def test_read_lines_keeps_lines_of_any_length() -> None:
    big = b"x" * (10 * 1024 * 1024)
    stream = io.BytesIO(b"a\n" + big + b"\nlast-without-newline")
    assert [len(line) for line in read_lines(stream)] == [2, len(big) + 1, 20]


def test_decode_line_accepts_json_with_crlf() -> None:
    assert decode_line(b'{"a": [1, "\xc3\xa9"]}\r\n') == {"a": [1, "é"]}


@pytest.mark.parametrize(
    "line",
    [
        b"\xff\xfe{}",  # not UTF-8
        b'{"method": "ping", "x": "\xc3"}',  # truncated UTF-8 sequence
        b"{not json}",
        b'{"a": NaN}',
        b"[Infinity]",
        b"[" * 100_000 + b"]" * 100_000,  # nesting deeper than the decoder allows
        b'{"a": ' + b"9" * 5000 + b"}",  # integer longer than Python converts
        b"\x00",
    ],
)
def test_decode_line_reports_parse_errors(line: bytes) -> None:
    with pytest.raises(LofiError) as info:
        decode_line(line)
    assert info.value.code == errors.PARSE_ERROR


def test_encode_message_is_one_ascii_line_even_with_lone_surrogates() -> None:
    data = encode_message({"id": "\ud800", "result": "é\n"})
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    data.decode("ascii")
    assert json.loads(data) == {"id": "\ud800", "result": "é\n"}


def test_encode_message_rejects_nan() -> None:
    with pytest.raises(ValueError):
        encode_message({"result": float("nan")})


# -- request validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "code", "reply_id"),
    [
        ([{"jsonrpc": "2.0", "id": 1, "method": "ping"}], errors.INVALID_REQUEST, None),
        ([], errors.INVALID_REQUEST, None),
        (42, errors.INVALID_REQUEST, None),
        ("ping", errors.INVALID_REQUEST, None),
        (None, errors.INVALID_REQUEST, None),
        ({}, errors.INVALID_REQUEST, None),
        ({"jsonrpc": "2.0", "method": 1}, errors.INVALID_REQUEST, None),
        ({"jsonrpc": "2.0", "id": True, "method": "ping"}, errors.INVALID_REQUEST, None),
        ({"jsonrpc": "2.0", "id": [1], "method": "ping"}, errors.INVALID_REQUEST, None),
        ({"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}, errors.INVALID_REQUEST, None),
        ({"id": 3, "method": "ping"}, errors.INVALID_REQUEST, 3),
        ({"jsonrpc": "1.0", "id": 3, "method": "ping"}, errors.INVALID_REQUEST, 3),
        ({"jsonrpc": "2.0", "id": "a", "method": None}, errors.INVALID_REQUEST, "a"),
        ({"jsonrpc": "2.0", "id": "a"}, errors.INVALID_REQUEST, "a"),
        ({"jsonrpc": "2.0", "id": 4, "method": "x", "params": 5}, errors.INVALID_REQUEST, 4),
        ({"jsonrpc": "2.0", "id": 4, "method": "x", "params": "s"}, errors.INVALID_REQUEST, 4),
        ({"jsonrpc": "2.0", "id": 5, "method": "x", "params": [1]}, errors.INVALID_PARAMS, 5),
    ],
)
def test_parse_request_rejects(message: Any, code: int, reply_id: Any) -> None:
    with pytest.raises(InvalidMessage) as info:
        parse_request(message)
    assert info.value.error.code == code
    assert info.value.reply_id == reply_id
    assert info.value.answer


@pytest.mark.parametrize(
    "message",
    [
        {"method": "ping"},
        {"jsonrpc": "1.0", "method": "ping"},
        {"jsonrpc": "2.0", "method": "ping", "params": 7},
        {"jsonrpc": "2.0", "method": "ping", "params": [1, 2]},
    ],
)
def test_invalid_notifications_are_never_answered(message: dict[str, Any]) -> None:
    with pytest.raises(InvalidMessage) as info:
        parse_request(message)
    assert not info.value.answer


@pytest.mark.parametrize("request_id", [0, -7, 2**70, 1.5, "abc", "", None])
def test_parse_request_accepts_every_valid_id(request_id: Any) -> None:
    request = parse_request({"jsonrpc": "2.0", "id": request_id, "method": "m"})
    assert request.id == request_id and not request.is_notification


@pytest.mark.parametrize("params", [None, [], {}])
def test_empty_params_forms_mean_no_params(params: Any) -> None:
    message = {"jsonrpc": "2.0", "id": 1, "method": "m", "params": params}
    assert parse_request(message).params == {}


def test_notification_is_recognized() -> None:
    request = parse_request({"jsonrpc": "2.0", "method": "cancel", "params": {"track_id": "x"}})
    assert request.is_notification and request.params == {"track_id": "x"}


# -- writer ----------------------------------------------------------------------------------


def test_writer_never_interleaves_lines_across_threads() -> None:
    buffer = io.BytesIO()
    writer = MessageWriter(buffer)

    def spam(worker: int) -> None:
        for n in range(300):
            writer.send({"worker": worker, "n": n, "pad": "p" * (n * 7)})

    threads = [threading.Thread(target=spam, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    messages = lines_of(buffer)
    assert len(messages) == 1800
    for worker in range(6):
        assert [m["n"] for m in messages if m["worker"] == worker] == list(range(300))


class _BrokenStream(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        raise BrokenPipeError("reader went away")


def test_writer_survives_a_broken_pipe() -> None:
    writer = MessageWriter(_BrokenStream())  # type: ignore[arg-type]
    assert writer.send({"a": 1}) is False
    assert writer.closed
    assert writer.send({"a": 2}) is False


# -- dispatcher ------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.writer = MessageWriter(self.buffer)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.seen_at_after: list[int] = []

        def echo(params: dict[str, Any]) -> Any:
            self.calls.append(("echo", params))
            return {"echo": params}

        def fail_app(params: dict[str, Any]) -> Any:
            raise LofiError(errors.QUEUE_FULL, "full")

        def crash(params: dict[str, Any]) -> Any:
            raise RuntimeError("boom")

        def deferred(params: dict[str, Any]) -> Reply:
            def after() -> None:
                self.seen_at_after.append(len(self.buffer.getvalue().splitlines()))
                self.writer.notify("later", {})

            return Reply({"ok": True}, after=after)

        def unserializable(params: dict[str, Any]) -> Any:
            return {"value": object()}

        self.dispatcher = Dispatcher(
            self.writer,
            {
                "echo": echo,
                "fail_app": fail_app,
                "crash": crash,
                "deferred": deferred,
                "unserializable": unserializable,
            },
        )

    def feed(self, message: Any) -> list[dict[str, Any]]:
        self.dispatcher.handle_line(json.dumps(message).encode() + b"\n")
        return lines_of(self.buffer)


def test_dispatch_answers_with_the_request_id() -> None:
    rec = Recorder()
    [reply] = rec.feed({"jsonrpc": "2.0", "id": "r1", "method": "echo", "params": {"x": 1}})
    assert reply == {"jsonrpc": "2.0", "id": "r1", "result": {"echo": {"x": 1}}}


@pytest.mark.parametrize(
    ("method", "code"),
    [
        ("nope", errors.METHOD_NOT_FOUND),
        ("fail_app", errors.QUEUE_FULL),
        ("crash", errors.INTERNAL_ERROR),
        ("unserializable", errors.INTERNAL_ERROR),
    ],
)
def test_dispatch_errors_map_to_codes(method: str, code: int) -> None:
    rec = Recorder()
    [reply] = rec.feed({"jsonrpc": "2.0", "id": 9, "method": method})
    assert reply["id"] == 9 and reply["error"]["code"] == code
    assert reply["error"]["data"]["name"] == errors.error_info(code).name
    assert reply["error"]["data"]["remedy"]


def test_after_runs_once_the_reply_is_written() -> None:
    rec = Recorder()
    messages = rec.feed({"jsonrpc": "2.0", "id": 1, "method": "deferred"})
    assert rec.seen_at_after == [1]
    assert [m.get("id", m.get("method")) for m in messages] == [1, "later"]


def test_notifications_run_but_are_never_answered() -> None:
    rec = Recorder()
    rec.feed({"jsonrpc": "2.0", "method": "echo", "params": {"n": 1}})
    rec.feed({"jsonrpc": "2.0", "method": "crash"})
    rec.feed({"jsonrpc": "2.0", "method": "no-such-method"})
    assert rec.calls == [("echo", {"n": 1})]
    assert rec.buffer.getvalue() == b""


@pytest.mark.parametrize("line", [b"\n", b"   \r\n", b"\t\n"])
def test_blank_lines_are_ignored(line: bytes) -> None:
    rec = Recorder()
    rec.dispatcher.handle_line(line)
    assert rec.buffer.getvalue() == b""


def test_garbage_gets_one_parse_error_with_null_id() -> None:
    rec = Recorder()
    rec.dispatcher.handle_line(b'{"jsonrpc": "2.0", "id": 1, "method": "echo"\n')
    [reply] = lines_of(rec.buffer)
    assert reply["id"] is None and reply["error"]["code"] == errors.PARSE_ERROR


def test_huge_method_name_gives_a_short_error() -> None:
    rec = Recorder()
    [reply] = rec.feed({"jsonrpc": "2.0", "id": 1, "method": "m" * 1_000_000})
    assert reply["error"]["code"] == errors.METHOD_NOT_FOUND
    assert len(reply["error"]["message"]) < 2000


# -- the protocol document -------------------------------------------------------------------

PROTOCOL_DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_protocol_doc_error_table_matches_error_table() -> None:
    text = PROTOCOL_DOC.read_text(encoding="utf-8")
    start = text.index(ERROR_TABLE_START) + len(ERROR_TABLE_START)
    section = text[start : text.index(ERROR_TABLE_END)].strip()
    assert section == error_table_markdown(), (
        "docs/protocol.md is out of date; regenerate the table with error_table_markdown()"
    )
    documented = [int(row.split("|")[1]) for row in section.splitlines()[2:]]
    assert documented == [row.code for row in errors.ERROR_TABLE]


def test_protocol_doc_describes_every_method_and_notification() -> None:
    text = PROTOCOL_DOC.read_text(encoding="utf-8")
    for method in METHODS:
        assert f"### `{method}`" in text
    for old, new in DEPRECATED_METHODS.items():
        assert f"### `{old}` (deprecated: use `{new}`)" in text
    for name in (
        "generation_start",
        "generation_progress",
        "generation_complete",
        "generation_error",
        "generation_cancelled",
    ):
        assert f"| `{name}` |" in text
