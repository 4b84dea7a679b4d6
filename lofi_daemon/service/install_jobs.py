"""The ``setup`` method of the daemon: one model installation at a time, on its own thread.

:class:`InstallRunner` runs :func:`lofi_daemon.install.installer.run_install` on a worker thread
and turns its progress callback into throttled ``setup_progress`` notifications. Every started
setup ends with exactly one terminal notification: ``setup_complete``, ``setup_error``,
``setup_cancelled`` or ``setup_confirm`` (a download is needed and the request did not agree to
it; nothing was downloaded). See docs/protocol.md.

The protocol keeps the name ``setup`` (``:Lofi setup``); inside the code it is an install.

Each backend installs into its own model directory (``backend_models_dir(backend, models_dir)``,
``models_dir`` being the daemon's v1 directory), so a 1.5 setup never touches the v1 models; after
a successful install ``on_installed(backend)`` lets the daemon reload that backend's engine.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from lofi_daemon import errors
from lofi_daemon.errors import CancelledError, LofiError
from lofi_daemon.install.installer import run_install
from lofi_daemon.install.options import InstallOptions
from lofi_daemon.install.plan import InstallPlan, existing_ancestor
from lofi_daemon.install.progress import format_bytes
from lofi_daemon.model.backends import backend_models_dir

log = logging.getLogger(__name__)

SETUP_PROGRESS_INTERVAL_SEC: Final = 0.5
SETUP_PROGRESS_STEP_PERCENT: Final = 1.0

Emit = Callable[[str, dict[str, Any]], Any]
#: Called with the backend's name after its models were installed.
OnInstalled = Callable[[str], None]


@dataclass(frozen=True)
class InstallRequest:
    """The validated params of one ``setup`` request."""

    backend: str
    confirm: bool = False
    checkpoint: Path | None = None
    force: bool = False
    precision: str = "auto"


@dataclass
class PhaseThrottle:
    """Lets an update of a phase through when it is the phase's first or last (100 %) one, or
    when the percentage moved by ``step_percent`` or ``interval_sec`` passed since the last."""

    interval_sec: float = SETUP_PROGRESS_INTERVAL_SEC
    step_percent: float = SETUP_PROGRESS_STEP_PERCENT
    clock: Callable[[], float] = time.monotonic
    _last: dict[str, tuple[float, float]] = field(default_factory=dict)

    def admit(self, phase: str, percent: float) -> bool:
        now = self.clock()
        last = self._last.get(phase)
        if last is not None:
            last_percent, last_time = last
            if last_percent >= 100.0:
                return False
            if (
                percent < 100.0
                and percent - last_percent < self.step_percent
                and now - last_time < self.interval_sec
            ):
                return False
        self._last[phase] = (percent, now)
        return True


def _free_bytes(path: Path) -> int | None:
    """Free bytes on the disk that holds ``path`` (or its nearest existing parent)."""
    try:
        return shutil.disk_usage(existing_ancestor(path)).free
    except OSError:
        return None


class InstallRunner:
    """Runs at most one installation (a ``setup`` request) at a time on a worker thread.

    Args:
        models_dir: the daemon's (v1) model directory; v1 installs there, every other backend
            into :func:`~lofi_daemon.model.backends.backend_models_dir` of it.
        emit: sends a notification (``emit(method, params)``); called from the worker thread.
        on_installed: ``on_installed(backend)``, called on the worker thread after a successful
            install, before ``setup_complete`` is sent (the daemon makes that backend's engine
            reload its models there).
        options: extra :class:`InstallOptions` fields for every run (tests use ``exporter``).
    """

    def __init__(
        self,
        models_dir: Path,
        emit: Emit,
        on_installed: OnInstalled,
        *,
        interval_sec: float = SETUP_PROGRESS_INTERVAL_SEC,
        step_percent: float = SETUP_PROGRESS_STEP_PERCENT,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.models_dir = models_dir
        self._emit = emit
        self._on_installed = on_installed
        self._interval = interval_sec
        self._step = step_percent
        self._extra_options = dict(options or {})
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._state: dict[str, Any] | None = None

    @property
    def running(self) -> bool:
        with self._lock:
            return self._state is not None

    def start(self, request: InstallRequest) -> Callable[[], None]:
        """Reserve the setup slot for ``request``; returns the function that starts its thread.

        The daemon starts the thread once the reply is written, so the reply always comes
        before the setup's first notification.

        Raises:
            LofiError: SETUP_FAILED when a setup is already running.
        """
        with self._lock:
            if self._state is not None:
                raise LofiError(
                    errors.SETUP_FAILED,
                    "a setup is already running",
                    remedy="Wait for its setup_complete (or send setup.cancel), then retry.",
                )
            self._cancel = threading.Event()
            self._state = {
                "backend": request.backend,
                "phase": None,
                "done": 0,
                "total": 0,
                "percent": 0.0,
                "message": "starting",
                "started_at": time.monotonic(),
            }
            thread = threading.Thread(
                target=self._work, args=(request, self._cancel), name="lofi-install", daemon=True
            )
            self._thread = thread
        return thread.start

    def cancel(self) -> bool:
        """Ask the running setup to stop; False when none is running."""
        with self._lock:
            if self._state is None:
                return False
            self._cancel.set()
            return True

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker thread; True when no setup thread is alive anymore."""
        thread = self._thread
        if thread is None or thread.ident is None:  # never started
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def snapshot(self) -> dict[str, Any] | None:
        """The running setup's latest progress (not throttled), or None."""
        with self._lock:
            state = self._state
            if state is None:
                return None
            return {
                "backend": state["backend"],
                "phase": state["phase"],
                "done": state["done"],
                "total": state["total"],
                "percent": state["percent"],
                "message": state["message"],
                "elapsed_sec": round(time.monotonic() - state["started_at"], 3),
                "cancelling": self._cancel.is_set(),
            }

    # -- worker --------------------------------------------------------------------------------

    def models_dir_of(self, backend: str) -> Path:
        """Where ``setup`` of ``backend`` installs."""
        return backend_models_dir(backend, self.models_dir)

    def _options(self, request: InstallRequest) -> InstallOptions:
        return InstallOptions(
            models_dir=self.models_dir_of(request.backend),
            checkpoint=request.checkpoint,
            assume_yes=request.confirm,
            force=request.force,
            backend=request.backend,
            precision=request.precision,
            **self._extra_options,
        )

    def _work(self, request: InstallRequest, cancel: threading.Event) -> None:
        backend = request.backend
        throttle = PhaseThrottle(self._interval, self._step)
        asked: dict[str, Any] = {}

        def progress(phase: str, done: int, total: int, percent: float, message: str) -> None:
            self._on_progress(backend, throttle, phase, done, total, percent, message)

        def confirm(plan: InstallPlan) -> bool:
            asked.update(self._confirm_payload(backend, options, plan))
            return False  # the client agrees by sending setup again with confirm: true

        try:
            options = self._options(request)
            log.info("setup of %s into %s started", backend, options.models_dir)
            result = run_install(options, progress=progress, cancel=cancel, confirm=confirm)
            self._on_installed(backend)
        except CancelledError:
            log.info("setup cancelled")
            self._finish("setup_cancelled", {"backend": backend})
        except LofiError as exc:
            if asked:
                log.info("setup stopped: the download needs the user's confirmation")
                self._finish("setup_confirm", asked)
            else:
                log.error("setup failed: %s", exc)
                self._finish("setup_error", self._error_payload(backend, exc))
        except Exception as exc:  # never let the thread die silently
            log.exception("setup failed unexpectedly")
            error = LofiError(errors.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
            self._finish("setup_error", self._error_payload(backend, error))
        else:
            log.info("setup finished: %s", result.models_dir)
            self._finish(
                "setup_complete",
                {
                    "backend": backend,
                    "models_dir": str(result.models_dir),
                    "model_version": result.model_version,
                    "already_installed": result.already_installed,
                },
            )

    def _finish(self, method: str, payload: dict[str, Any]) -> None:
        # The setup is over before its end is announced: a setup request sent in reaction to
        # the terminal notification (a confirmation, a retry) is accepted.
        with self._lock:
            self._state = None
        self._emit(method, payload)

    def _on_progress(
        self,
        backend: str,
        throttle: PhaseThrottle,
        phase: str,
        done: int,
        total: int,
        percent: float,
        message: str,
    ) -> None:
        with self._lock:
            if self._state is not None:
                self._state.update(
                    phase=phase, done=done, total=total, percent=percent, message=message
                )
        if throttle.admit(phase, percent):
            self._emit(
                "setup_progress",
                {
                    "backend": backend,
                    "phase": phase,
                    "done": done,
                    "total": total,
                    "percent": percent,
                    "message": message,
                },
            )

    def _confirm_payload(
        self, backend: str, options: InstallOptions, plan: InstallPlan
    ) -> dict[str, Any]:
        """The ``setup_confirm`` params, from the plan ``run_install`` asks about."""
        remaining_bytes = plan.remaining_bytes
        download_bytes, export_bytes = plan.download_bytes, plan.export_bytes
        free = _free_bytes(options.models_dir.parent)
        parts = [f"download {format_bytes(remaining_bytes)} from {options.hub_url()}"]
        if download_bytes != remaining_bytes:
            parts.append(f"(of {format_bytes(download_bytes)})")
        parts.append(f"and export about {format_bytes(export_bytes)} of ONNX models")
        message = "Setup will " + " ".join(parts)
        if free is not None:
            message += f"; {format_bytes(free)} is free on the disk"
        return {
            "backend": backend,
            "remaining_bytes": remaining_bytes,
            "download_bytes": download_bytes,
            "export_bytes": export_bytes,
            "free_bytes": free,
            "models_dir": str(options.models_dir),
            "message": message + ".",
        }

    @staticmethod
    def _error_payload(backend: str, error: LofiError) -> dict[str, Any]:
        return {
            "backend": backend,
            "code": error.code,
            "name": error.name,
            "message": error.message,
            "remedy": error.remedy,
        }


#: The names before the runtime called model installation "install" (server.py still uses them).
SetupRequest = InstallRequest
SetupRunner = InstallRunner
