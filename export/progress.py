"""``lofi-export onnx --progress json``: machine-readable progress, one JSON object per line.

The model installer (``lofi_daemon/install/``) runs ``lofi-export`` as a child process and reads
these lines from its stdout instead of parsing log text, so the format is a contract::

    {"event": "start", "total": 6}
    {"event": "graph_start", "graph": "<name>", "file": "<name>.onnx", "index": i, "total": 6}
    {"event": "graph", "graph": "<name>", "file": "<name>.onnx", "done": i, "total": 6}
    {"event": "done", "models_dir": "<absolute path>"}
    {"event": "error", "kind": "missing_extra" | "export", "message": "<the stderr error text>"}

``start`` comes once the checkpoint is validated, before the first graph is traced; one
``graph_start`` comes as each graph begins tracing (``index`` counts 1..total, so a reader can say
what is running now) and one ``graph`` follows each graph file written (``done`` counts 1..total); ``done`` comes once the model
directory is in place, ``error`` instead of it on failure. Logs stay on stderr, and while events
are being written nothing else reaches stdout (see :func:`stdout_for_events`).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TextIO

Event = dict[str, Any]
#: Receives each event as it happens.
ProgressFn = Callable[[Event], None]
ErrorKind = Literal["missing_extra", "export"]


def start_event(total: int) -> Event:
    return {"event": "start", "total": total}


def graph_start_event(graph: str, file: str, index: int, total: int) -> Event:
    return {"event": "graph_start", "graph": graph, "file": file, "index": index, "total": total}


def graph_event(graph: str, file: str, done: int, total: int) -> Event:
    return {"event": "graph", "graph": graph, "file": file, "done": done, "total": total}


def done_event(models_dir: Path) -> Event:
    return {"event": "done", "models_dir": os.path.abspath(models_dir)}


def error_event(kind: ErrorKind, message: str) -> Event:
    return {"event": "error", "kind": kind, "message": message}


class JsonLines:
    """A :data:`ProgressFn` writing each event as one JSON line, flushed at once."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, event: Event) -> None:
        self.stream.write(json.dumps(event) + "\n")
        self.stream.flush()


@contextlib.contextmanager
def stdout_for_events() -> Iterator[TextIO]:
    """Yield a stream onto the process's stdout; meanwhile route every other stdout write to stderr.

    Python-level writes (``print``) are redirected with ``sys.stdout``. When stdout is a real file
    descriptor, the descriptor itself is pointed at stderr too, so that a library writing to fd 1
    from C cannot break the one-JSON-object-per-line contract; it is restored on exit.
    """
    stream = sys.stdout
    try:
        fd, err_fd = stream.fileno(), sys.stderr.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        fd = err_fd = -1
    if fd < 0 or err_fd < 0:  # e.g. captured in-process: only Python-level writes exist
        with contextlib.redirect_stdout(sys.stderr):
            yield stream
        return
    stream.flush()
    saved = os.dup(fd)
    events = os.fdopen(os.dup(saved), "w", encoding="utf-8", buffering=1)
    os.dup2(err_fd, fd)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield events
    finally:
        events.close()
        stream.flush()  # whatever was buffered meanwhile belongs to stderr
        sys.stderr.flush()
        os.dup2(saved, fd)
        os.close(saved)
