"""Writing protocol messages to stdout: one whole line per message, from any thread, and never
blocking the daemon's exit on a client that stopped reading (docs/protocol.md, "Lifecycle")."""

from __future__ import annotations

import json
import logging
import os
import select
import stat
import threading
import time
from typing import Any, BinaryIO, Final

log = logging.getLogger(__name__)

JSONRPC_VERSION: Final = "2.0"
LOG_PREVIEW_CHARS: Final = 300
STOP_WRITE_GRACE_SEC: Final = 5.0  # once stopping: longest a write may wait for the client
POLL_INTERVAL_MS: Final = 100  # how often a waiting write looks at the stop flag


def notification(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC_VERSION, "method": method, "params": params}


def encode_message(message: dict[str, Any]) -> bytes:
    """Serialize one message as a single ASCII line (non-ASCII is escaped, so the output is
    valid UTF-8 even for strings holding lone surrogates)."""
    text = json.dumps(message, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.encode("ascii") + b"\n"


def preview(data: bytes | str, limit: int = LOG_PREVIEW_CHARS) -> str:
    """A truncated, printable form of a payload for DEBUG logs."""
    text = data if isinstance(data, str) else data.decode("utf-8", "replace")
    text = text.rstrip("\r\n")
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


class _Abandoned(Exception):
    """A write gave up: the daemon is stopping and the client does not read."""


def _pipe_fd(stream: BinaryIO) -> int | None:
    """The stream's file descriptor, made non-blocking, when it is a POSIX pipe or socket (what
    a client can leave unread); None for anything else (files, terminals, in-memory streams)."""
    if os.name != "posix":
        return None
    try:
        fd = stream.fileno()
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            return None
        stream.flush()  # from now on the descriptor is written directly
        os.set_blocking(fd, False)
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None
    return fd


class MessageWriter:
    """Writes whole messages to a binary stream; safe to call from several threads.

    Each message is written and flushed under a lock, so lines never interleave. Once the
    stream breaks (the client went away) further messages are dropped.

    A pipe or socket is written without blocking: while the client does not read, a write waits
    for it (the protocol's back pressure), but once :meth:`stop_waiting` has been called a write
    that cannot go on for :data:`STOP_WRITE_GRACE_SEC` is dropped, and so is every later
    message, so that the daemon can always exit. A message cut short that way leaves a last line
    without its newline.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._fd = _pipe_fd(stream)
        self._lock = threading.Lock()
        self._closed = False
        self._stopping_since: float | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def stop_waiting(self) -> None:
        """The daemon is stopping: from now on no write waits more than
        :data:`STOP_WRITE_GRACE_SEC` for the client. Takes no lock (safe in a signal handler)."""
        if self._stopping_since is None:
            self._stopping_since = time.monotonic()

    def send(self, message: dict[str, Any]) -> bool:
        """Write one message; returns False when it could not be delivered."""
        try:
            data = encode_message(message)
        except (TypeError, ValueError):
            log.exception("cannot serialize message %s", preview(repr(message)))
            return False
        with self._lock:
            if self._closed:
                return False
            try:
                if self._fd is None:
                    self._stream.write(data)
                    self._stream.flush()
                else:
                    self._write_fd(self._fd, data)
            except _Abandoned:
                self._closed = True
                log.warning(
                    "stdout is not being read and the daemon is stopping; dropping this and "
                    "further messages"
                )
                return False
            except (BrokenPipeError, ConnectionError, OSError, ValueError) as exc:
                self._closed = True
                log.warning("stdout is closed; dropping further messages (%s)", exc)
                return False
        log.debug("-> %s", preview(data))
        return True

    def _write_fd(self, fd: int, data: bytes) -> None:
        """Write all of ``data`` to a non-blocking descriptor, waiting while the pipe is full.

        Raises:
            _Abandoned: the daemon is stopping and the pipe stayed full for the grace time.
        """
        if self._stream.closed:  # its descriptor number may belong to another file by now
            raise ValueError("the stream is closed")
        view = memoryview(data)
        stalled_since = time.monotonic()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        while view:
            try:
                written = os.write(fd, view)
            except BlockingIOError:
                written = 0
            if written:
                view = view[written:]
                stalled_since = time.monotonic()
                continue
            stopping = self._stopping_since
            if (
                stopping is not None
                and time.monotonic() - max(stalled_since, stopping) > STOP_WRITE_GRACE_SEC
            ):
                raise _Abandoned()
            poller.poll(POLL_INTERVAL_MS)

    def notify(self, method: str, params: dict[str, Any]) -> bool:
        return self.send(notification(method, params))
