"""``lofi-export``: the command line of the export tool.

This module imports nothing heavy at the top, so that without the ``export`` extra the command can
still tell the user exactly what to install.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from pathlib import Path

INSTALL_HINT = 'pip install "lofi-nvim[export]"  (or, from a clone: pip install -e ".[export]")'
REQUIRED = ("torch", "transformers", "diffusers", "safetensors", "onnx", "onnxscript")


def missing_export_packages() -> list[str]:
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lofi-export", description="Export ACE-Step v1 to ONNX for lofi.nvim."
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    onnx = sub.add_parser("onnx", help="export an official-layout checkpoint to a model directory")
    onnx.add_argument("checkpoint_dir", type=Path)
    onnx.add_argument("models_dir", type=Path)
    onnx.add_argument("--precision", default="fp32", choices=["fp32"])
    onnx.add_argument("--force", action="store_true", help="replace an existing model directory")

    tiny = sub.add_parser("tiny", help="write a random-weight checkpoint in the official layout")
    tiny.add_argument("checkpoint_dir", type=Path)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--preset", default="tiny", choices=["tiny", "full"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="lofi-export: %(message)s", stream=sys.stderr)
    missing = missing_export_packages()
    if missing:
        print(
            f"lofi-export: error: the export extra is not installed (missing: {', '.join(missing)}).\n"
            f"Install it with:\n    {INSTALL_HINT}",
            file=sys.stderr,
        )
        return 2
    from .errors import ExportError

    try:
        if args.command == "tiny":
            from .tiny import preset_by_name, write_tiny_checkpoint

            write_tiny_checkpoint(args.checkpoint_dir, preset_by_name(args.preset), seed=args.seed)
            print(args.checkpoint_dir)
        else:
            from .export_models import export_models

            print(
                export_models(
                    args.checkpoint_dir, args.models_dir, precision=args.precision, force=args.force
                )
            )
    except ExportError as exc:
        print(f"lofi-export: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"lofi-export: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
