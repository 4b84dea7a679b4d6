"""``lofi-daemon``: generate from a terminal, benchmark, serve JSON-RPC over stdio, install models."""

from __future__ import annotations

import argparse
import logging
import sys

from lofi_daemon import __version__
from lofi_daemon.cli.bench import add_bench_parser, run_bench
from lofi_daemon.cli.generate import add_generate_parser, run_generate
from lofi_daemon.cli.install import add_setup_parser, run_setup_cli
from lofi_daemon.cli.serve import (
    DEFAULT_LOG_LEVEL,
    LOG_LEVELS,
    add_serve_parser,
    log_level,
    run_serve,
)
from lofi_daemon.errors import LofiError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lofi-daemon", description="Local lofi music generation (ACE-Step v1)."
    )
    parser.add_argument("--version", action="version", version=f"lofi-daemon {__version__}")
    parser.add_argument(
        "--log-level",
        type=log_level,
        default=DEFAULT_LOG_LEVEL,
        choices=LOG_LEVELS,
        help=f"log level (default: {DEFAULT_LOG_LEVEL}); serve also takes it after its name",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_generate_parser(sub)
    add_bench_parser(sub)
    add_setup_parser(sub)
    add_serve_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "serve":
        return run_serve(args)  # claims stdout for the protocol before anything else
    logging.basicConfig(level=args.log_level, format="lofi-daemon: %(message)s", stream=sys.stderr)
    try:
        if args.command == "generate":
            return run_generate(args)
        if args.command == "setup":
            return run_setup_cli(args)
        return run_bench(args)
    except LofiError as exc:
        print(f"lofi-daemon: error: {exc.message}\n  remedy: {exc.remedy}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lofi-daemon: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
