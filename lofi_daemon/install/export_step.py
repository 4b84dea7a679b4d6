"""The export step: ``lofi-export onnx`` in a child process, its progress read from its stdout.

The exporter is run as ``<exporter> --log-level INFO onnx CHECKPOINT OUT --force --progress json``
and prints one JSON object per stdout line::

    {"event": "start", "total": 6}                                    before the first graph
    {"event": "graph_start", "graph": "denoiser", "file": "denoiser.onnx", "index": 3, "total": 6}
                                                                      as each graph begins
    {"event": "graph", "graph": "denoiser", "file": "denoiser.onnx", "done": 3, "total": 6}
                                                                      after each graph is written
    {"event": "done", "models_dir": "/absolute/path"}                 at the end (exit status 0)
    {"event": "error", "kind": "missing_extra" | "export", "message": "..."}
                                                                      on failure (exit status 2 | 1)

The progress message names what is running now (``exporting denoiser.onnx (3/6)``) from the
``graph_start`` events; an exporter without them gets ``exported <file> (i/6)`` after each graph.
Other stdout lines are ignored; stderr is the exporter's log, whose last lines explain a failure
that came without an error event (a crash, a kill).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.install.child import Child, child_env
from lofi_daemon.install.extra import INSTALL_HINT
from lofi_daemon.install.options import InstallOptions
from lofi_daemon.install.progress import Reporter

log = logging.getLogger(__name__)

#: The graphs of a v1 model directory, until the exporter's ``start`` event says otherwise
#: (each backend's count is ``BackendSpec.graphs``).
EXPORTED_GRAPHS: Final = 6
EXPORT_FAILED_REMEDY: Final = "Read the message above; rerun the setup after fixing the cause."
#: The fields each event must carry, with their types (further fields are ignored).
EVENT_FIELDS: Final[dict[str, dict[str, type]]] = {
    "start": {"total": int},
    "graph_start": {"graph": str, "file": str, "index": int, "total": int},
    "graph": {"graph": str, "file": str, "done": int, "total": int},
    "done": {"models_dir": str},
    "error": {"kind": str, "message": str},
}


@dataclass(frozen=True)
class ExportEvent:
    """One progress line of the exporter; only the fields of its ``event`` are set."""

    event: str
    total: int = 0
    graph: str = ""
    file: str = ""
    done: int = 0
    index: int = 0
    models_dir: str = ""
    kind: str = ""
    message: str = ""


def parse_event(line: str) -> ExportEvent | None:
    """The event on a stdout line, or None for anything else (logged at debug level)."""
    try:
        data = json.loads(line)
    except ValueError:
        log.debug("exporter stdout: %s", line)
        return None
    name = data.get("event") if isinstance(data, dict) else None
    fields = EVENT_FIELDS.get(name) if isinstance(name, str) else None
    if fields is None or not isinstance(name, str):
        log.debug("exporter stdout, not a progress event: %s", line)
        return None
    values: dict[str, Any] = {}
    for key, kind in fields.items():
        value = data.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            log.debug("exporter stdout, malformed %s event: %s", name, line)
            return None
        values[key] = value
    return ExportEvent(name, **values)


@dataclass
class ExportStatus:
    """What the exporter has reported so far."""

    total: int = EXPORTED_GRAPHS
    done: int = 0
    written: list[str] = field(default_factory=list)
    running: str | None = None  # the graph file being exported now (graph_start events)
    announces_starts: bool = False  # the exporter sends graph_start events
    models_dir: Path | None = None  # set by the done event
    error: ExportEvent | None = None

    def apply(self, event: ExportEvent) -> None:
        if event.event in ("start", "graph", "graph_start") and event.total > 0:
            self.total = event.total
        if event.event == "graph_start":
            self.announces_starts = True
            self.running = event.file
        elif event.event == "graph":
            self.done = max(self.done, event.done)
            self.written.append(event.file)
            if self.running == event.file:
                self.running = None
        elif event.event == "done":
            self.models_dir = Path(event.models_dir)
        elif event.event == "error":
            self.error = event


def exporter_command(
    options: InstallOptions, checkpoint_dir: Path, out: Path, extra: Sequence[str] = ()
) -> list[str]:
    """The exporter's command line; ``extra`` (e.g. ``--lora ...``) goes last. A variant
    (``--base`` in ``extra``) has its base's precision; anything else gets ``--precision``."""
    exporter = options.exporter or (sys.executable, "-m", "lofi_export")
    args = ["--log-level", "INFO", "onnx", str(checkpoint_dir), str(out), "--force"]
    if "--base" not in extra:
        args += ["--precision", options.export_precision()]
    return [*exporter, *args, "--progress", "json", *extra]


def export_checkpoint(
    checkpoint_dir: Path,
    out: Path,
    options: InstallOptions,
    report: Reporter,
    cancel: threading.Event,
    lock_fd: int | None,
    extra: Sequence[str] = (),
) -> Path:
    """Export ``checkpoint_dir`` into the model directory ``out``; returns ``out``.

    ``extra``: further exporter arguments (a LoRA variant's ``--lora ... --base ...``).

    Progress is phase ``export``, counted in graphs.

    Raises:
        LofiError: SETUP_FAILED when the exporter cannot start, fails (with the install hint as
            remedy when the export extra is missing), or ends without its ``done`` event or
            without writing a manifest.
        CancelledError: ``cancel`` was set; the exporter has been stopped.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    status = ExportStatus(total=options.spec.graphs)
    report("export", 0, status.total, f"exporting {checkpoint_dir} to ONNX")
    child = Child(
        exporter_command(options, checkpoint_dir, out, extra), child_env(options), lock_fd=lock_fd
    )

    def tick() -> None:
        for line in child.new_lines():
            event = parse_event(line)
            if event is None:
                continue
            status.apply(event)
            if event.event == "graph_start":
                index = min(max(event.index, 1), status.total)
                report(
                    "export",
                    min(status.done, index - 1),
                    status.total,
                    f"exporting {event.file} ({index}/{status.total})",
                )
            elif event.event == "graph" and not status.announces_starts:
                report(
                    "export",
                    min(event.done, status.total),
                    status.total,
                    f"exported {event.file} ({event.done}/{status.total})",
                )

    code = child.wait(cancel, tick)
    check_outcome(code, status, child.tail)
    if status.models_dir is not None and status.models_dir.resolve() != out.resolve():
        log.warning("the exporter reports %s, expected %s", status.models_dir, out)
    if not (out / "manifest.json").is_file():
        raise LofiError(errors.SETUP_FAILED, f"the export wrote no manifest in {out}")
    report("export", status.total, status.total, f"exported {len(status.written)} graphs")
    return out


def check_outcome(code: int, status: ExportStatus, stderr_tail: Iterable[str]) -> None:
    """Raise the error a finished exporter reported (or left unreported); return if it succeeded.

    Raises:
        LofiError: SETUP_FAILED.
    """
    error = status.error
    if error is not None and error.kind == "missing_extra":
        raise LofiError(errors.SETUP_FAILED, error.message, remedy=f"Run: {INSTALL_HINT}")
    if code != 0 or error is not None:
        detail = error.message if error is not None else _stderr_detail(list(stderr_tail))
        raise LofiError(
            errors.SETUP_FAILED,
            f"the ONNX export failed (exit status {code}): {detail or 'no message'}",
            remedy=EXPORT_FAILED_REMEDY,
        )
    if status.models_dir is None:
        raise LofiError(
            errors.SETUP_FAILED,
            f"the exporter ended without reporting a finished export "
            f"({status.done} of {status.total} graphs reported)",
            remedy=EXPORT_FAILED_REMEDY,
        )


def _stderr_detail(lines: list[str]) -> str:
    """The log lines that mention an error, else the last five."""
    return "; ".join(line for line in lines if "error" in line.lower()) or "\n".join(lines[-5:])
