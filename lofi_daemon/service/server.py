"""The daemon's read loop and lifecycle: serve requests until told to stop, then drain.

The main thread reads stdin and answers every request at once (the methods are in
:mod:`lofi_daemon.service.handlers`); generation runs on the
:class:`~lofi_daemon.service.jobs.JobRunner` worker thread and model installation on the
:class:`~lofi_daemon.service.install_jobs.SetupRunner` thread, both of which send notifications.

The daemon stops on a ``shutdown`` request, at end of input or on SIGTERM/SIGINT/SIGHUP. It then
cancels a running setup, stops the radio station (``radio_stopped`` "shutdown"), cancels the
queued generations, finishes the running one (``shutdown``)
or cancels it (every other reason), waits up to :data:`CANCEL_GRACE_SEC`, lets a running
``radio.save`` finish (up to :data:`~lofi_daemon.service.radio_save.SAVE_GRACE_SEC`, unless a
termination signal comes: then it is given up, leaving no file) and closes the engine.
The process entry point (``lofi-daemon serve``: options, logging, stdout) is
:mod:`lofi_daemon.cli.serve`. The protocol is documented in docs/protocol.md.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import BinaryIO, Final

from lofi_daemon.model.backends import V1
from lofi_daemon.paths import BACKEND, default_models_dir
from lofi_daemon.service.backend_engines import BackendEngines
from lofi_daemon.service.cache import TrackCache
from lofi_daemon.service.handlers import Handlers
from lofi_daemon.service.install_jobs import SetupRunner
from lofi_daemon.service.jobs import DEFAULT_QUEUE_LIMIT, GenerationEngine, JobRunner
from lofi_daemon.service.radio import RadioService
from lofi_daemon.service.radio_save import SAVE_GRACE_SEC
from lofi_daemon.service.rpc import Dispatcher, MessageWriter
from lofi_daemon.service.throttle import PROGRESS_INTERVAL_SEC, PROGRESS_STEP_PERCENT

log = logging.getLogger(__name__)

CANCEL_GRACE_SEC: Final = 30.0
STOP_SIGNALS: Final = ("SIGTERM", "SIGINT", "SIGHUP")


class _Terminated(BaseException):
    """Raised by the signal handler to break out of a blocking stdin read."""


class DaemonServer:
    """The read loop over one pair of binary streams, and the daemon's parts.

    Args:
        engine: the generation engine (``Engine`` or a test double).
        cache: the track cache.
        stdin: where requests are read, one per line.
        stdout: where responses and notifications are written.
        queue_limit: most generations accepted at once (running one included).
        progress_interval_sec, progress_step_percent: progress throttling.
        models_dir: where ``setup`` installs (default: the engine's, else the user default).
    """

    def __init__(
        self,
        engine: GenerationEngine,
        cache: TrackCache,
        *,
        stdin: BinaryIO,
        stdout: BinaryIO,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
        progress_interval_sec: float = PROGRESS_INTERVAL_SEC,
        progress_step_percent: float = PROGRESS_STEP_PERCENT,
        models_dir: Path | None = None,
        backend: str | None = None,
    ) -> None:
        self.engine = engine
        self.cache = cache
        self.writer = MessageWriter(stdout)
        self.runner = JobRunner(
            engine,
            cache,
            self.writer.notify,
            limit=queue_limit,
            backend=BACKEND,
            progress_interval_sec=progress_interval_sec,
            progress_step_percent=progress_step_percent,
        )
        if models_dir is None:
            engine_dir = getattr(engine, "models_dir", None)
            models_dir = Path(engine_dir) if engine_dir is not None else default_models_dir()
        self.backends = BackendEngines(engine, models_dir=models_dir, default=backend)
        self.setup_runner = SetupRunner(models_dir, self.writer.notify, self._reload_engine)
        self.radio = RadioService(self.runner, cache, self.writer.notify)
        self.handlers = Handlers(
            engine,
            cache,
            self.runner,
            self.setup_runner,
            self.writer,
            self._request_shutdown,
            radio=self.radio,
            backends=self.backends,
        )
        self.dispatcher = Dispatcher(self.writer, self.handlers.table())
        self._stdin = stdin
        self._shutdown: bool | None = None  # cancel_running of a shutdown request
        self._terminate = threading.Event()
        self._reading = False

    def run(self) -> int:
        """Serve until shutdown, end of input or a termination signal; returns the exit code."""
        self.runner.start()
        reason = self._serve()
        self.writer.stop_waiting()
        cancel_running = reason != "shutdown" or bool(self._shutdown)
        log.info(
            "stopping (%s); %s the running generation",
            reason,
            "cancelling" if cancel_running else "finishing",
        )
        self._stop_setup()
        self.radio.stop("shutdown")  # its job is cancelled before the queue drains
        self._drain(cancel_running=cancel_running)
        # A save finishes unless it takes too long or a signal says to stop now; then it is
        # given up (no file): the process must end.
        self.radio.wait_for_save(SAVE_GRACE_SEC, self._terminate.is_set)
        try:
            self.engine.close()
            self.backends.close()
        except Exception:
            log.exception("closing the engines failed")
        log.info("stopped")
        return 0

    def install_signal_handlers(self) -> None:
        """Make SIGTERM, SIGINT and SIGHUP stop the daemon cleanly (main thread only)."""
        for name in STOP_SIGNALS:
            signum = getattr(signal, name, None)
            if signum is not None:
                signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Stop: break a blocking read, and let no write wait long for a client that does not
        read (a write blocked on a full stdout gives up; this handler takes no lock)."""
        self._terminate.set()
        self.writer.stop_waiting()
        if self._reading:
            raise _Terminated()

    def _request_shutdown(self, cancel_running: bool) -> None:
        """Stop reading after the current line (the ``shutdown`` reply is already out)."""
        self._shutdown = cancel_running

    def _serve(self) -> str:
        """Read and dispatch lines; returns why it stopped."""
        try:
            while True:
                self._reading = True
                if self._terminate.is_set():
                    return "signal"
                line = self._stdin.readline()
                self._reading = False
                if not line:
                    return "end of input"
                self.dispatcher.handle_line(line)
                if self._shutdown is not None:
                    return "shutdown"
                if self._terminate.is_set():
                    return "signal"
        except _Terminated:
            return "signal"
        except (OSError, ValueError) as exc:
            log.error("cannot read stdin: %s", exc)
            return "read error"
        finally:
            self._reading = False

    def _drain(self, *, cancel_running: bool) -> None:
        """End the queue; a signal while finishing the running job turns into a cancel."""
        self.runner.close(cancel_running=cancel_running)
        deadline: float | None = time.monotonic() + CANCEL_GRACE_SEC if cancel_running else None
        while not self.runner.join(timeout=0.1):
            if deadline is None and self._terminate.is_set():
                self.runner.cancel_running()
                deadline = time.monotonic() + CANCEL_GRACE_SEC
            if deadline is not None and time.monotonic() > deadline:
                log.warning(
                    "the running generation did not stop in %gs; exiting anyway", CANCEL_GRACE_SEC
                )
                return

    def _stop_setup(self) -> None:
        """Cancel a running setup and wait for it (run_setup leaves no half-installed models)."""
        if not self.setup_runner.cancel():
            return
        log.info("cancelling the running setup")
        if not self.setup_runner.join(CANCEL_GRACE_SEC):
            log.warning("the setup did not stop in %gs; exiting anyway", CANCEL_GRACE_SEC)

    def _reload_engine(self, backend: str) -> None:
        """After a setup installed ``backend``'s models: let its engine pick them up."""
        if backend != V1.name:
            self.backends.reload()
            return
        reload = getattr(self.engine, "reload", None)
        if callable(reload):
            reload()
