"""``lofi-daemon serve``: the JSON-RPC stdio daemon.

The main thread reads stdin and answers every request at once; generation runs on the
:class:`~lofi_daemon.jobs.JobRunner` worker thread, which sends notifications. stdout carries
protocol messages only: at startup the real stdout is kept for the protocol writer and both
file descriptor 1 and ``sys.stdout`` are pointed at stderr, so a stray ``print`` (from Python or
from a native library) cannot corrupt a frame. The protocol is documented in docs/protocol.md.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, BinaryIO, Final

from lofi_daemon import __version__, errors
from lofi_daemon.errors import LofiError
from lofi_daemon.paths import BACKEND, default_cache_dir, default_log_dir, default_models_dir
from lofi_daemon.pipeline.params import (
    MAX_DURATION_SEC,
    MAX_SEED,
    MIN_DURATION_SEC,
    GenerationParams,
)
from lofi_daemon.service.cache import DEFAULT_MAX_BYTES, TrackCache, track_id_for
from lofi_daemon.service.install_jobs import SetupRequest, SetupRunner
from lofi_daemon.service.jobs import (
    DEFAULT_QUEUE_LIMIT,
    PRIORITIES,
    PROGRESS_INTERVAL_SEC,
    PROGRESS_STEP_PERCENT,
    GenerationEngine,
    Job,
    JobRunner,
    complete_payload,
)
from lofi_daemon.service.rpc import Dispatcher, Handler, MessageWriter, Reply

log = logging.getLogger(__name__)

SAMPLE_RATE: Final = 48000
CANCEL_GRACE_SEC: Final = 30.0
LOG_MAX_BYTES: Final = 1_000_000
LOG_BACKUPS: Final = 3
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")


def default_log_file() -> Path:
    return default_log_dir() / "daemon.log"


@dataclass
class ServeConfig:
    """Settings of one daemon run (all come from the command line)."""

    models_dir: Path
    cache_dir: Path
    provider: str = "auto"
    threads: int | None = None
    queue_limit: int = DEFAULT_QUEUE_LIMIT
    cache_max_bytes: int = DEFAULT_MAX_BYTES
    keep_loaded: bool = False
    log_level: str = "INFO"
    log_stderr: bool = False
    log_file: Path | None = None


EngineFactory = Callable[[ServeConfig], GenerationEngine]

# JSON-RPC method name -> DaemonServer handler attribute.
METHODS: Final = {
    "ping": "ping",
    "generate": "generate",
    "cancel": "cancel",
    "status": "status",
    "get_backends": "get_backends",
    "tracks.list": "tracks_list",
    "tracks.delete": "tracks_delete",
    "setup": "setup",
    "setup.cancel": "setup_cancel",
    "shutdown": "shutdown",
}
SETUP_PARAMS: Final = ("backend", "confirm", "checkpoint", "force")


class _Terminated(BaseException):
    """Raised by the signal handler to break out of a blocking stdin read."""


def _check_params(params: dict[str, Any], allowed: tuple[str, ...], method: str) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        names = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise LofiError(errors.INVALID_PARAMS, f"{method} does not take {names}")


def _track_id_param(params: dict[str, Any], method: str) -> str:
    _check_params(params, ("track_id",), method)
    track_id = params.get("track_id")
    if not isinstance(track_id, str):
        raise LofiError(errors.INVALID_PARAMS, f"{method} needs a string track_id")
    return track_id


class DaemonServer:
    """The request handlers and the read loop over one pair of binary streams.

    Args:
        engine: the generation engine (``Engine`` or a test double).
        cache: the track cache.
        stdin: where requests are read, one per line.
        stdout: where responses and notifications are written.
        queue_limit: most generations accepted at once (running one included).
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
        self.setup_runner = SetupRunner(models_dir, self.writer.notify, self._reload_engine)
        self.dispatcher = Dispatcher(self.writer, self.handlers())
        self._stdin = stdin
        self._shutdown: bool | None = None  # cancel_running of a shutdown request
        self._terminate = threading.Event()
        self._reading = False

    def handlers(self) -> dict[str, Handler]:
        return {method: getattr(self, attribute) for method, attribute in METHODS.items()}

    # -- lifecycle -----------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until shutdown, end of input or a termination signal; returns the exit code."""
        self.runner.start()
        reason = self._serve()
        cancel_running = reason != "shutdown" or bool(self._shutdown)
        log.info(
            "stopping (%s); %s the running generation",
            reason,
            "cancelling" if cancel_running else "finishing",
        )
        self._stop_setup()
        self._drain(cancel_running=cancel_running)
        try:
            self.engine.close()
        except Exception:
            log.exception("closing the engine failed")
        log.info("stopped")
        return 0

    def install_signal_handlers(self) -> None:
        """Make SIGTERM, SIGINT and SIGHUP stop the daemon cleanly (main thread only)."""
        for name in ("SIGTERM", "SIGINT", "SIGHUP"):
            signum = getattr(signal, name, None)
            if signum is not None:
                signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._terminate.set()
        if self._reading:
            raise _Terminated()

    def _serve(self) -> str:
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

    def _reload_engine(self) -> None:
        reload = getattr(self.engine, "reload", None)
        if callable(reload):
            reload()

    # -- handlers ------------------------------------------------------------------------------

    def ping(self, params: dict[str, Any]) -> dict[str, Any]:
        _check_params(params, (), "ping")
        return {"status": "ok", "version": __version__, "pid": os.getpid()}

    def generate(self, params: dict[str, Any]) -> Reply:
        request = self._generation_params(params)
        priority = params.get("priority", "normal")
        if priority not in PRIORITIES:
            raise LofiError(errors.INVALID_PARAMETER, 'priority must be "normal" or "high"')
        model_version = self._require_ready()
        if request.seed is None:
            request = request.with_seed(secrets.randbelow(MAX_SEED + 1))
        track_id = track_id_for(request, model_version=model_version, backend=BACKEND)
        base = {"track_id": track_id, "seed": request.seed}

        position = self.runner.position(track_id)
        if position is not None:
            return Reply({**base, "status": "queued", "position": position})
        entry = self.cache.get(track_id)
        if entry is not None:
            log.info("cache hit %s", track_id)
            return Reply(
                {**base, "status": "cached", "position": 0, "path": str(entry.path)},
                after=lambda: self.writer.notify(
                    "generation_complete", complete_payload(entry, cached=True)
                ),
            )
        if self.setup_runner.running:
            raise LofiError(
                errors.BACKEND_NOT_INSTALLED,
                "a setup is installing the models; generate again after setup_complete",
                remedy="Wait for the setup to finish (or cancel it with setup.cancel).",
            )
        job = Job(
            track_id=track_id,
            params=request,
            out_path=self.cache.audio_path(track_id, request.format),
            priority=priority,
            model_version=model_version,
        )
        position = self.runner.submit(job, hold=True)
        log.info("queued %s at position %d", track_id, position)
        return Reply(
            {**base, "status": "queued", "position": position},
            after=lambda: self.runner.release(track_id),
        )

    def cancel(self, params: dict[str, Any]) -> Any:
        track_id = _track_id_param(params, "cancel")
        outcome = self.runner.cancel(track_id)
        if outcome.status == "cancelled":
            return Reply(
                {"track_id": track_id, "status": "cancelled"},
                after=lambda: self.runner.announce_cancelled(track_id),
            )
        return {"track_id": track_id, "status": "cancelling", "step": outcome.step}

    def status(self, params: dict[str, Any]) -> dict[str, Any]:
        _check_params(params, (), "status")
        return {**self.runner.snapshot(), "setup": self.setup_runner.snapshot()}

    def get_backends(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        _check_params(params, (), "get_backends")
        state = self._engine_status()
        return [
            {
                "name": BACKEND,
                "status": state.get("status", "error"),
                "message": state.get("message", ""),
                "min_duration_sec": MIN_DURATION_SEC,
                "max_duration_sec": MAX_DURATION_SEC,
                "sample_rate": SAMPLE_RATE,
                "model_version": state.get("model_version"),
                "providers": list(state.get("providers") or []),
            }
        ]

    def tracks_list(self, params: dict[str, Any]) -> dict[str, Any]:
        _check_params(params, (), "tracks.list")
        entries = self.cache.list()
        return {
            "tracks": [entry.to_json() for entry in entries],
            "total_bytes": sum(entry.size_bytes for entry in entries),
            "max_bytes": self.cache.max_bytes,
            "cache_dir": str(self.cache.root),
        }

    def tracks_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        track_id = _track_id_param(params, "tracks.delete")
        if not self.cache.delete(track_id):
            raise LofiError(errors.TRACK_NOT_FOUND, f"no cached track {track_id[:64]!r}")
        return {"track_id": track_id, "deleted": True}

    def setup(self, params: dict[str, Any]) -> Reply:
        request = self._setup_request(params)
        busy = self.runner.snapshot()
        if busy["running"] is not None or busy["queue"]:
            raise LofiError(
                errors.SETUP_FAILED,
                "a generation is running or queued; the setup cannot run at the same time",
                remedy="Wait for the generations to finish (or cancel them), then run the setup.",
            )
        launch = self.setup_runner.start(request)
        return Reply({"status": "started"}, after=launch)

    def setup_cancel(self, params: dict[str, Any]) -> dict[str, Any]:
        _check_params(params, (), "setup.cancel")
        return {"cancelled": self.setup_runner.cancel()}

    def shutdown(self, params: dict[str, Any]) -> Reply:
        _check_params(params, ("cancel_running",), "shutdown")
        cancel_running = params.get("cancel_running", False)
        if not isinstance(cancel_running, bool):
            raise LofiError(errors.INVALID_PARAMS, "cancel_running must be true or false")

        def stop() -> None:
            self._shutdown = cancel_running

        return Reply({"status": "shutting_down"}, after=stop)

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _generation_params(params: dict[str, Any]) -> GenerationParams:
        """Validate the generation fields of a ``generate`` request (shared rules with the CLI).

        A value of the wrong JSON type gets the same code as an out-of-range value of that
        parameter (INVALID_DURATION for ``duration_sec``, ...); unknown names get INVALID_PARAMS.
        """
        fields = {k: v for k, v in params.items() if k not in ("priority", "backend")}
        backend = params.get("backend", BACKEND)
        if backend != BACKEND:
            shown = repr(backend)[:60]
            raise LofiError(errors.INVALID_BACKEND, f"unknown backend {shown}; use {BACKEND!r}")
        if "prompt" not in fields:
            raise LofiError(errors.INVALID_PROMPT, "generate needs a prompt")
        try:
            return GenerationParams.from_dict(fields)
        except TypeError as exc:
            raise LofiError(errors.INVALID_PARAMS, f"invalid parameters: {exc}") from exc

    @staticmethod
    def _setup_request(params: dict[str, Any]) -> SetupRequest:
        _check_params(params, SETUP_PARAMS, "setup")
        backend = params.get("backend")
        if not isinstance(backend, str):
            raise LofiError(errors.INVALID_PARAMS, f"setup needs a string backend ({BACKEND!r})")
        if backend != BACKEND:
            shown = repr(backend)[:60]
            raise LofiError(errors.INVALID_BACKEND, f"unknown backend {shown}; use {BACKEND!r}")
        for name in ("confirm", "force"):
            if not isinstance(params.get(name, False), bool):
                raise LofiError(errors.INVALID_PARAMS, f"{name} must be true or false")
        checkpoint = params.get("checkpoint")
        if checkpoint is not None and (not isinstance(checkpoint, str) or not checkpoint.strip()):
            raise LofiError(errors.INVALID_PARAMS, "checkpoint must be a folder path (a string)")
        return SetupRequest(
            backend=backend,
            confirm=params.get("confirm", False),
            checkpoint=Path(checkpoint).expanduser() if checkpoint is not None else None,
            force=params.get("force", False),
        )

    def _engine_status(self) -> dict[str, Any]:
        try:
            state = self.engine.status()
        except LofiError as exc:
            return {"status": "error", "message": exc.message, "model_version": None}
        except Exception as exc:
            log.exception("engine status failed")
            return {"status": "error", "message": f"{type(exc).__name__}: {exc}"}
        return state if isinstance(state, dict) else {"status": "error", "message": "bad status"}

    def _require_ready(self) -> str:
        """The model version, or the error that explains why no generation can run."""
        state = self._engine_status()
        message = state.get("message") or ""
        remedy = state.get("remedy") if isinstance(state.get("remedy"), str) else None
        if state.get("status") == "not_installed":
            raise LofiError(
                errors.MODEL_NOT_FOUND, message or "the models are not installed", remedy=remedy
            )
        if state.get("status") != "ready":
            raise LofiError(
                errors.MODEL_LOAD_FAILED, message or "the models cannot be used", remedy=remedy
            )
        version = state.get("model_version")
        return version if isinstance(version, str) and version else self.engine.model_version


# -- process entry point ---------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lofi-daemon serve",
        description="JSON-RPC 2.0 daemon over stdin/stdout (see docs/protocol.md).",
    )
    parser.add_argument(
        "--models",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"model directory (default: {default_models_dir()})",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"track cache directory (default: {default_cache_dir()})",
    )
    parser.add_argument("--log-stderr", action="store_true", help="also log to stderr")
    parser.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS)
    parser.add_argument(
        "--log-file",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"log file (default: {default_log_file()})",
    )
    parser.add_argument(
        "--provider", default="auto", help="ONNX Runtime execution provider (default: auto)"
    )
    parser.add_argument(
        "--threads", type=_positive_int, default=None, help="intra-op threads for ONNX Runtime"
    )
    parser.add_argument(
        "--queue-limit",
        type=_positive_int,
        default=DEFAULT_QUEUE_LIMIT,
        help=f"generations accepted at once (default: {DEFAULT_QUEUE_LIMIT})",
    )
    parser.add_argument(
        "--cache-max-bytes",
        type=_non_negative_int,
        default=DEFAULT_MAX_BYTES,
        help=f"track cache size cap in bytes (default: {DEFAULT_MAX_BYTES})",
    )
    parser.add_argument(
        "--keep-loaded",
        action="store_true",
        help="keep the model sessions loaded between generations",
    )
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    return ServeConfig(
        models_dir=(args.models or default_models_dir()).expanduser(),
        cache_dir=(args.cache_dir or default_cache_dir()).expanduser(),
        provider=args.provider,
        threads=args.threads,
        queue_limit=args.queue_limit,
        cache_max_bytes=args.cache_max_bytes,
        keep_loaded=args.keep_loaded,
        log_level=args.log_level,
        log_stderr=args.log_stderr,
        log_file=args.log_file,
    )


def setup_logging(config: ServeConfig) -> Path | None:
    """Log to a rotating file (and to stderr with ``--log-stderr``); never to stdout.

    Returns the log file in use, or None when it could not be opened (then stderr is used).
    """
    root = logging.getLogger()
    root.setLevel(config.log_level)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s")
    path = config.log_file or default_log_file()
    to_stderr = config.log_stderr
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
        )
    except OSError as exc:
        sys.stderr.write(f"lofi-daemon: cannot open the log file {path}: {exc}\n")
        path, to_stderr = None, True
    else:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    if to_stderr:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(formatter)
        root.addHandler(stream)
    logging.captureWarnings(True)
    return path


def claim_stdout() -> BinaryIO:
    """Keep the real stdout for protocol frames and send everything else written to stdout
    (``print``, native libraries writing to fd 1) to stderr instead."""
    sys.stdout.flush()
    try:
        protocol_fd = os.dup(sys.stdout.fileno())
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        stream: BinaryIO = os.fdopen(protocol_fd, "wb")
    except (AttributeError, OSError, ValueError):
        stream = sys.stdout.buffer
    sys.stdout = sys.stderr
    return stream


def _default_engine(config: ServeConfig) -> GenerationEngine:
    from lofi_daemon.pipeline.engine import Engine

    return Engine(
        config.models_dir,
        provider=config.provider,
        threads=config.threads,
        keep_loaded=config.keep_loaded,
    )


def serve_main(
    argv: list[str] | None = None, *, engine_factory: EngineFactory | None = None
) -> int:
    """Run ``lofi-daemon serve``; returns the process exit code.

    Args:
        argv: the arguments after ``serve`` (default: ``sys.argv[1:]``).
        engine_factory: builds the engine from the config (tests pass a double).
    """
    config = config_from_args(build_parser().parse_args(argv))
    protocol_out = claim_stdout()
    log_path = setup_logging(config)
    log.info(
        "lofi-daemon %s serve (pid %d); models %s; cache %s; log %s",
        __version__,
        os.getpid(),
        config.models_dir,
        config.cache_dir,
        log_path,
    )
    try:
        engine = (engine_factory or _default_engine)(config)
        cache = TrackCache(config.cache_dir, max_bytes=config.cache_max_bytes)
    except LofiError as exc:
        log.error("cannot start: %s (%s)", exc, exc.remedy)
        sys.stderr.write(f"lofi-daemon: {exc}\n{exc.remedy}\n")
        return 1
    server = DaemonServer(
        engine,
        cache,
        stdin=sys.stdin.buffer,
        stdout=protocol_out,
        queue_limit=config.queue_limit,
        models_dir=config.models_dir,
    )
    server.install_signal_handlers()
    try:
        return server.run()
    except Exception:
        log.exception("the daemon failed")
        return 1
    finally:
        logging.shutdown()
