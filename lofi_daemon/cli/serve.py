"""``lofi-daemon serve``: the JSON-RPC stdio daemon's options, logging and stdout.

stdout carries protocol messages only. The first thing :func:`run_serve` does is
:func:`claim_stdout`: the real stdout is kept for the protocol writer, and both file descriptor 1
and ``sys.stdout`` are pointed at stderr, so a stray ``print`` (from Python or from a native
library) cannot corrupt a frame. Only then is the engine built, which is when ONNX Runtime is
first imported: this module and the service modules it uses import nothing heavy.

The read loop and lifecycle are :mod:`lofi_daemon.service.server`; the protocol is documented in
docs/protocol.md.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from lofi_daemon import __version__
from lofi_daemon.cli.generate_args import add_keep_loaded_arguments
from lofi_daemon.errors import LofiError
from lofi_daemon.model.backends import NAMES
from lofi_daemon.paths import default_cache_dir, default_log_dir, default_models_dir
from lofi_daemon.pipeline.residency import DEFAULT_IDLE_TIMEOUT_SEC, ResidencyConfig
from lofi_daemon.service.cache import DEFAULT_MAX_BYTES, TrackCache
from lofi_daemon.service.jobs import DEFAULT_QUEUE_LIMIT, GenerationEngine
from lofi_daemon.service.server import DaemonServer

log = logging.getLogger(__name__)

LOG_MAX_BYTES: Final = 1_000_000
LOG_BACKUPS: Final = 3
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_LOG_LEVEL: Final = "INFO"
DESCRIPTION: Final = "JSON-RPC 2.0 daemon over stdin/stdout (see docs/protocol.md)."


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
    keep_loaded: str = "auto"  # the residency policy: auto, true or false (docs/residency.md)
    idle_unload_sec: float = DEFAULT_IDLE_TIMEOUT_SEC
    log_level: str = DEFAULT_LOG_LEVEL
    log_stderr: bool = False
    log_file: Path | None = None
    backend: str | None = None  # generate's default backend (None: the only installed one)


EngineFactory = Callable[[ServeConfig], GenerationEngine]


# -- command line ----------------------------------------------------------------------------


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def log_level(text: str) -> str:
    """A log level name in any case (``debug`` is ``DEBUG``)."""
    return text.upper()


def add_serve_arguments(
    parser: argparse.ArgumentParser, *, log_level_default: str | None = DEFAULT_LOG_LEVEL
) -> None:
    """The options of ``serve``.

    ``log_level_default`` None leaves ``--log-level`` unset when it is not given, so that the
    top-level ``lofi-daemon --log-level`` (given before ``serve``) shows through.
    """
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
    parser.add_argument(
        "--log-level",
        type=log_level,
        choices=LOG_LEVELS,
        default=argparse.SUPPRESS if log_level_default is None else log_level_default,
        metavar="LEVEL",
        help=f"{', '.join(LOG_LEVELS)}, in any case (default: {DEFAULT_LOG_LEVEL})",
    )
    parser.add_argument(
        "--log-file",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"log file (default: {default_log_file()})",
    )
    parser.add_argument(
        "--provider",
        default="auto",
        metavar="NAME",
        help="ONNX Runtime execution provider (default: auto)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="intra-op threads for ONNX Runtime (default: its own choice)",
    )
    parser.add_argument(
        "--queue-limit",
        type=positive_int,
        default=DEFAULT_QUEUE_LIMIT,
        metavar="N",
        help=f"generations accepted at once (default: {DEFAULT_QUEUE_LIMIT})",
    )
    parser.add_argument(
        "--cache-max-bytes",
        type=non_negative_int,
        default=DEFAULT_MAX_BYTES,
        metavar="N",
        help=f"track cache size cap in bytes (default: {DEFAULT_MAX_BYTES})",
    )
    parser.add_argument(
        "--backend",
        choices=NAMES,
        default=None,
        metavar="NAME",
        help=f"backend of a generate that names none: {', '.join(NAMES)} (default: the only "
        "installed one, else ace-step)",
    )
    add_keep_loaded_arguments(parser)


def add_serve_parser(sub: argparse._SubParsersAction) -> None:
    """``serve`` as a subcommand of the ``lofi-daemon`` parser."""
    parser = sub.add_parser(
        "serve",
        help="JSON-RPC 2.0 over stdio (used by the Neovim plugin)",
        description=DESCRIPTION,
    )
    add_serve_arguments(parser, log_level_default=None)


def build_parser() -> argparse.ArgumentParser:
    """``serve`` on its own (for :func:`serve_main`); the same options as the subcommand."""
    parser = argparse.ArgumentParser(prog="lofi-daemon serve", description=DESCRIPTION)
    add_serve_arguments(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    return ServeConfig(
        models_dir=(args.models or default_models_dir()).expanduser(),
        cache_dir=(args.cache_dir or default_cache_dir()).expanduser(),
        provider=args.provider,
        threads=args.threads,
        queue_limit=args.queue_limit,
        cache_max_bytes=args.cache_max_bytes,
        keep_loaded=args.keep_loaded,
        idle_unload_sec=args.idle_unload,
        log_level=getattr(args, "log_level", DEFAULT_LOG_LEVEL),
        log_stderr=args.log_stderr,
        log_file=args.log_file,
        backend=getattr(args, "backend", None),
    )


# -- process setup ---------------------------------------------------------------------------


def setup_logging(config: ServeConfig) -> Path | None:
    """Log to a rotating file (and to stderr with ``--log-stderr``); never to stdout.

    Returns the log file in use, or None when it could not be opened (then stderr is used).
    """
    root = logging.getLogger()
    root.setLevel(config.log_level)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s")
    path = config.log_file or default_log_file()
    in_use: Path | None = path
    to_stderr = config.log_stderr
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
        )
    except OSError as exc:
        sys.stderr.write(f"lofi-daemon: cannot open the log file {path}: {exc}\n")
        in_use, to_stderr = None, True
    else:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    if to_stderr:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(formatter)
        root.addHandler(stream)
    logging.captureWarnings(True)
    return in_use


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
    from lofi_daemon.pipeline.engine import Engine  # loads ONNX Runtime: only when serving

    return Engine(
        config.models_dir,
        provider=config.provider,
        threads=config.threads,
        keep_loaded=ResidencyConfig(config.keep_loaded, config.idle_unload_sec),
    )


def run_serve(args: argparse.Namespace, *, engine_factory: EngineFactory | None = None) -> int:
    """Run the daemon with parsed ``serve`` options; returns the process exit code.

    Args:
        args: the options (from :func:`add_serve_parser` or :func:`build_parser`).
        engine_factory: builds the engine from the config (tests pass a double).
    """
    config = config_from_args(args)
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
        backend=config.backend,
    )
    server.install_signal_handlers()
    try:
        return server.run()
    except Exception:
        log.exception("the daemon failed")
        return 1
    finally:
        logging.shutdown()


def serve_main(
    argv: list[str] | None = None, *, engine_factory: EngineFactory | None = None
) -> int:
    """Run ``lofi-daemon serve`` from its own arguments (those after ``serve``).

    Args:
        argv: the arguments after ``serve`` (default: ``sys.argv[1:]``).
        engine_factory: builds the engine from the config (tests pass a double).
    """
    return run_serve(build_parser().parse_args(argv), engine_factory=engine_factory)
