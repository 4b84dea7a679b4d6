"""JSON-RPC 2.0 over newline-delimited JSON: framing, validation and dispatch.

Framing: every message is one UTF-8 JSON value on one line, terminated by ``\\n``. Lines may be
of any length. A line holding only ASCII whitespace is ignored. Bytes that are not UTF-8, text
that is not JSON, and the non-standard JSON constants ``NaN``/``Infinity`` are parse errors.

This module knows nothing about generation; :class:`Dispatcher` maps method names to handler
callables supplied by :mod:`lofi_daemon.service.handlers`. Messages are written by
:class:`~lofi_daemon.service.writer.MessageWriter`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, Final

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.service.writer import (
    JSONRPC_VERSION,
    MessageWriter,
    encode_message,
    notification,
    preview,
)

__all__ = [
    "JSONRPC_VERSION",
    "Dispatcher",
    "MessageWriter",
    "Reply",
    "Request",
    "encode_message",
    "notification",
    "preview",
]

log = logging.getLogger(__name__)

MAX_ERROR_MESSAGE_CHARS: Final = 1000

JsonId = str | int | float | None
Handler = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Reply:
    """A handler result with an action to run once the reply has been written.

    The action runs after the response line is flushed, so anything it sends (for example
    the first notification of a queued track) reaches the client after the response.
    """

    result: Any
    after: Callable[[], object] | None = None  # its return value is ignored


@dataclass(frozen=True)
class Request:
    """A validated request or notification."""

    method: str
    params: dict[str, Any]
    id: JsonId = None
    is_notification: bool = False


class InvalidMessage(Exception):
    """A message that cannot be dispatched; ``reply_id`` is the id to answer with."""

    def __init__(self, error: LofiError, reply_id: JsonId, *, answer: bool = True) -> None:
        super().__init__(error.message)
        self.error = error
        self.reply_id = reply_id
        self.answer = answer


def read_lines(stream: BinaryIO) -> Iterator[bytes]:
    """Yield the lines of a binary stream, of any length, until end of file."""
    while True:
        line = stream.readline()
        if not line:
            return
        yield line


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_line(line: bytes) -> Any:
    """Decode one framed line into a JSON value.

    Raises:
        LofiError: PARSE_ERROR when the bytes are not UTF-8 or not strict JSON.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LofiError(errors.PARSE_ERROR, f"the line is not valid UTF-8 ({exc.reason})") from exc
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise LofiError(errors.PARSE_ERROR, "the JSON is nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, over-long integers
        raise LofiError(errors.PARSE_ERROR, f"invalid JSON: {exc}") from exc


def is_blank(line: bytes) -> bool:
    """True for a line holding only ASCII whitespace (such lines are ignored)."""
    return not line.strip()


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (str, int))


def parse_request(message: Any) -> Request:
    """Validate a decoded JSON value as a JSON-RPC 2.0 request or notification.

    An object without an ``id`` member whose ``method`` is a string is a notification: it is
    never answered, even when the rest of it is wrong (``answer`` is False on the error).

    Raises:
        InvalidMessage: the error to report and the id to report it with.
    """
    if isinstance(message, list):
        raise InvalidMessage(
            LofiError(errors.INVALID_REQUEST, "batch requests are not supported; send one object"),
            None,
        )
    if not isinstance(message, dict):
        raise InvalidMessage(
            LofiError(errors.INVALID_REQUEST, "a message must be a JSON object"), None
        )
    method = message.get("method")
    if "id" not in message:
        if isinstance(method, str):
            params = _params(message, None, answer=False)
            if message.get("jsonrpc") != JSONRPC_VERSION:
                raise InvalidMessage(
                    LofiError(errors.INVALID_REQUEST, 'jsonrpc must be "2.0"'), None, answer=False
                )
            return Request(method=method, params=params, is_notification=True)
        raise InvalidMessage(
            LofiError(errors.INVALID_REQUEST, "a request needs a string method and an id"), None
        )
    request_id = message["id"]
    if not _valid_id(request_id):
        raise InvalidMessage(
            LofiError(errors.INVALID_REQUEST, "id must be a string, a number or null"), None
        )
    if message.get("jsonrpc") != JSONRPC_VERSION:
        raise InvalidMessage(LofiError(errors.INVALID_REQUEST, 'jsonrpc must be "2.0"'), request_id)
    if not isinstance(method, str):
        raise InvalidMessage(
            LofiError(errors.INVALID_REQUEST, "method must be a string"), request_id
        )
    params = _params(message, request_id, answer=True)
    return Request(method=method, params=params, id=request_id)


def _params(message: dict[str, Any], request_id: JsonId, *, answer: bool) -> dict[str, Any]:
    """The named parameters of a message; ``[]`` and ``null`` count as no parameters."""
    params = message.get("params")
    if params is None:
        return {}
    if isinstance(params, dict):
        return params
    if isinstance(params, list):
        if not params:
            return {}
        raise InvalidMessage(
            LofiError(errors.INVALID_PARAMS, "params must be an object (named parameters)"),
            request_id,
            answer=answer,
        )
    raise InvalidMessage(
        LofiError(errors.INVALID_REQUEST, "params must be an object or an array"),
        request_id,
        answer=answer,
    )


def response(request_id: JsonId, result: Any) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC_VERSION, "id": request_id, "result": result}


def error_response(request_id: JsonId, error: LofiError) -> dict[str, Any]:
    """An error response; over-long messages (echoing a huge input) are truncated."""
    body = error.to_jsonrpc()
    message = body["message"]
    if len(message) > MAX_ERROR_MESSAGE_CHARS:
        body["message"] = f"{message[:MAX_ERROR_MESSAGE_CHARS]}... (truncated)"
    return {"jsonrpc": JSONRPC_VERSION, "id": request_id, "error": body}


class Dispatcher:
    """Decodes lines, validates them, calls handlers and writes exactly one reply per request.

    Handlers take the named params and return a JSON-serializable result or a :class:`Reply`.
    A :class:`LofiError` becomes an error response with its code; any other exception becomes
    INTERNAL_ERROR (and is logged with its traceback).
    """

    def __init__(self, writer: MessageWriter, handlers: Mapping[str, Handler]) -> None:
        self._writer = writer
        self._handlers = dict(handlers)

    def handle_line(self, line: bytes) -> None:
        """Process one framed line (its trailing newline may still be attached)."""
        if is_blank(line):
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug("<- %s", preview(line))
        try:
            request = parse_request(decode_line(line))
        except LofiError as exc:
            self._send_error(None, exc)
            return
        except InvalidMessage as exc:
            if exc.answer:
                self._send_error(exc.reply_id, exc.error)
            else:
                log.debug("ignoring invalid notification: %s", exc.error.message)
            return
        self.dispatch(request)

    def dispatch(self, request: Request) -> None:
        handler = self._handlers.get(request.method)
        if handler is None:
            self._finish(
                request,
                error=LofiError(
                    errors.METHOD_NOT_FOUND, f"unknown method {preview(request.method, 80)!r}"
                ),
            )
            return
        try:
            outcome = handler(request.params)
        except LofiError as exc:
            self._finish(request, error=exc)
            return
        except Exception as exc:
            log.exception("handler for %s failed", request.method)
            self._finish(
                request, error=LofiError(errors.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
            )
            return
        if isinstance(outcome, Reply):
            try:
                self._finish(request, result=outcome.result)
            finally:
                if outcome.after is not None:
                    outcome.after()
        else:
            self._finish(request, result=outcome)

    def _finish(
        self, request: Request, *, result: Any = None, error: LofiError | None = None
    ) -> None:
        if request.is_notification:
            if error is not None:
                log.debug("notification %s failed: %s", request.method, error)
            return
        if error is not None:
            self._send_error(request.id, error)
            return
        if not self._writer.send(response(request.id, result)) and not self._writer.closed:
            self._send_error(
                request.id, LofiError(errors.INTERNAL_ERROR, "the result is not serializable")
            )

    def _send_error(self, request_id: JsonId, error: LofiError) -> None:
        self._writer.send(error_response(request_id, error))


ERROR_TABLE_START: Final = "<!-- error-table:start (generated from lofi_daemon/errors.py) -->"
ERROR_TABLE_END: Final = "<!-- error-table:end -->"


def error_table_markdown() -> str:
    """The error table of docs/protocol.md, generated from :data:`errors.ERROR_TABLE`.

    Regenerate the section with
    ``python -c "from lofi_daemon.service.rpc import error_table_markdown as t; print(t())"``.
    """
    rows = ["| Code | Name | Meaning | Remedy |", "|---:|---|---|---|"]
    for info in errors.ERROR_TABLE:
        cells = (str(info.code), f"`{info.name}`", info.meaning, info.remedy)
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows)
