"""``lofi-export``: the command line of the export tool.

This module imports nothing heavy at the top, so that without the ``export`` extra the command can
still tell the user exactly what to install.

Subcommands: ``onnx`` (checkpoint → model directory; ``--progress json`` for the event lines of
:mod:`.progress`; an ACE-Step 1.5 checkpoint is recognised by its folders, :mod:`.turbo.detect`),
``tiny`` (a random-weight checkpoint; ``--model ace-step-1.5`` for the 1.5 layout),
``to-fp16`` (an fp32 model directory → its fp16 set, :mod:`.precision_dir`), ``compare-precision``
(an fp16 model directory vs its fp32 one, :mod:`.precision_check`) and
``bench-torch`` (ONNX Runtime vs the
torch modules; ``lofi-daemon bench --checkpoint`` runs it as a child process and reads the one JSON
object it prints). Errors are one ``lofi-export: error: ...`` line on stderr; the exit status is 2
when the export extra is missing and 1 for any other error.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
from pathlib import Path

from .progress import ErrorKind, JsonLines, ProgressFn, done_event, error_event, stdout_for_events

INSTALL_HINT = (
    'pip install torch==2.13.0 && pip install -e ".[export]"'
    "  (in the lofi.nvim folder, in the daemon's Python environment)"
)
REQUIRED = ("torch", "transformers", "diffusers", "safetensors", "onnx", "onnxscript")
ERROR_PREFIX = "lofi-export: error: "
MODEL_V1 = "ace-step"  # lofi_daemon.model.backends names (not imported here: kept light)
MODEL_TURBO = "ace-step-1.5"
EXIT_ERROR = 1
EXIT_MISSING_EXTRA = 2


def missing_export_packages() -> list[str]:
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lofi-export", description="Export ACE-Step v1 or 1.5 to ONNX for lofi.nvim."
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    onnx = sub.add_parser(
        "onnx",
        help="export an official-layout checkpoint (ACE-Step v1 or 1.5, told apart by its "
        "folders) to a model directory",
    )
    onnx.add_argument("checkpoint_dir", type=Path)
    onnx.add_argument("models_dir", type=Path)
    onnx.add_argument(
        "--precision",
        default=None,
        choices=["fp32", "fp16"],
        help="fp32 (default), or fp16: fp16 weights and matrix products with fp32 islands, about "
        "half the disk (docs/precision.md); with --base, the base directory's precision",
    )
    onnx.add_argument("--force", action="store_true", help="replace an existing model directory")
    onnx.add_argument(
        "--progress",
        default="text",
        choices=["text", "json"],
        help="text: print the model directory when done; json: one JSON event per line on stdout",
    )
    onnx.add_argument(
        "--lora",
        type=Path,
        default=None,
        help="merge this LoRA (a folder with pytorch_lora_weights.safetensors, or the file) "
        "into the transformer weights (docs/lora.md)",
    )
    onnx.add_argument(
        "--lora-weight", type=float, default=1.0, help="the LoRA's weight (default 1.0)"
    )
    onnx.add_argument(
        "--lora-source", default=None, help="how the manifest names the LoRA (default: --lora)"
    )
    onnx.add_argument(
        "--base",
        type=Path,
        default=None,
        help="with --lora: a model directory exported from the same checkpoint; export only "
        "the graphs the LoRA changes and hard-link the other files from it",
    )

    tiny = sub.add_parser("tiny", help="write a random-weight checkpoint in the official layout")
    tiny.add_argument("checkpoint_dir", type=Path)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument(
        "--preset",
        default="tiny",
        choices=["tiny", "wide", "full"],
        help="tiny (test widths), full (official sizes) or wide (official widths, 2 layers)",
    )
    tiny.add_argument(
        "--model",
        default=MODEL_V1,
        choices=[MODEL_V1, MODEL_TURBO],
        help="which release's layout to write (default: ace-step, i.e. v1)",
    )

    bench = sub.add_parser(
        "bench-torch",
        help="time each ONNX graph against the project's torch module on the same inputs "
        "and print one JSON object (graph → onnx_sec, torch_sec, onnx_over_torch, max_abs_diff)",
    )
    bench.add_argument("checkpoint_dir", type=Path)
    bench.add_argument("models_dir", type=Path, help="the model directory exported from it")
    size = bench.add_mutually_exclusive_group()
    size.add_argument(
        "--duration", type=float, default=30.0, help="seconds of audio the inputs stand for"
    )
    size.add_argument("--frames", type=int, default=None, help="latent frames, instead of seconds")
    bench.add_argument("--provider", default="auto", help="ONNX Runtime provider (as lofi-daemon)")
    bench.add_argument("--threads", type=int, default=None)
    bench.add_argument("--repeats", type=int, default=2, help="best of this many runs")
    half = sub.add_parser(
        "to-fp16",
        help="write the fp16 set of an exported fp32 model directory (no checkpoint needed)",
    )
    half.add_argument("fp32_dir", type=Path)
    half.add_argument("models_dir", type=Path, help="where the fp16 model directory goes")
    half.add_argument("--force", action="store_true", help="replace an existing folder")

    check = sub.add_parser(
        "compare-precision",
        help="compare an fp16 model directory with the fp32 one exported from the same "
        "checkpoint: per-graph SNR and max error on random inputs, optionally one track each "
        "(prints one JSON object)",
    )
    check.add_argument("fp32_dir", type=Path)
    check.add_argument("fp16_dir", type=Path)
    check.add_argument("--frames", type=int, default=16, help="size of every free dimension")
    check.add_argument(
        "--duration", type=float, default=None, help="also generate this many seconds with each"
    )
    check.add_argument(
        "--provider", default="cpu", help="ONNX Runtime provider for the graphs (as lofi-daemon)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="lofi-export: %(message)s", stream=sys.stderr)
    if args.command == "onnx" and args.progress == "json":
        with stdout_for_events() as stream:
            return _run(args, JsonLines(stream))
    return _run(args, None)


def _run(args: argparse.Namespace, events: ProgressFn | None) -> int:
    missing = missing_export_packages()
    if missing:
        return _fail(
            events,
            "missing_extra",
            f"the export extra is not installed (missing: {', '.join(missing)}).\n"
            f"Install it with:\n    {INSTALL_HINT}",
        )
    from .errors import ExportError

    try:
        if args.command == "tiny":
            _tiny(args)
        elif args.command == "bench-torch":
            return _bench_torch(args)
        elif args.command == "to-fp16":
            from .precision_dir import convert_model_dir

            print(convert_model_dir(args.fp32_dir, args.models_dir, force=args.force))
        elif args.command == "compare-precision":
            from .precision_check import precision_report

            report = precision_report(
                args.fp32_dir, args.fp16_dir, args.frames, args.duration, args.provider
            )
            print(json.dumps(report, indent=1))
        elif _backend_of(args.checkpoint_dir) == MODEL_TURBO:
            path = _onnx_turbo(args, events)
            if events is not None:
                events(done_event(path))
            else:
                print(path)
        else:
            from .export_models import export_models
            from .lora import LoraRequest

            if args.lora is None and (args.base is not None or args.lora_source is not None):
                raise ExportError("--base and --lora-source need --lora")
            lora = (
                LoraRequest(args.lora, args.lora_weight, args.lora_source, args.base)
                if args.lora is not None
                else None
            )
            path = export_models(
                args.checkpoint_dir,
                args.models_dir,
                precision=args.precision,
                force=args.force,
                progress=events,
                lora=lora,
            )
            if events is not None:
                events(done_event(path))
            else:
                print(path)
    except ExportError as exc:
        return _fail(events, "export", str(exc))
    except OSError as exc:
        return _fail(events, "export", f"{exc.filename or ''}: {exc.strerror or exc}")
    except Exception as exc:  # a bug: the traceback follows, the event consumer still learns of it
        if events is not None:
            events(error_event("export", f"{type(exc).__name__}: {exc}"))
        raise
    return 0


def _tiny(args: argparse.Namespace) -> None:
    if args.model == MODEL_TURBO:
        from .turbo.checkpoint import write_turbo_checkpoint

        write_turbo_checkpoint(args.checkpoint_dir, args.preset, args.seed)
    else:
        from .tiny import preset_by_name, write_tiny_checkpoint

        write_tiny_checkpoint(args.checkpoint_dir, preset_by_name(args.preset), seed=args.seed)
    print(args.checkpoint_dir)


def _backend_of(checkpoint_dir: Path) -> str:
    from .turbo.detect import detect_backend

    return detect_backend(checkpoint_dir)


def _onnx_turbo(args: argparse.Namespace, events: ProgressFn | None) -> Path:
    """``onnx`` on a 1.5 checkpoint; the v1-only options are refused by name."""
    from .errors import ExportError
    from .turbo.export import export_turbo

    v1_only = [
        flag
        for flag, value in (
            ("--lora", args.lora),
            ("--lora-source", args.lora_source),
            ("--base", args.base),
        )
        if value is not None
    ]
    if args.lora_weight != 1.0:
        v1_only.append("--lora-weight")
    if v1_only:
        raise ExportError(
            f"{', '.join(v1_only)}: not supported for an ACE-Step 1.5 checkpoint "
            f"({args.checkpoint_dir}); LoRA merging exists for ACE-Step v1 only"
        )
    return export_turbo(
        args.checkpoint_dir,
        args.models_dir,
        precision=args.precision or "fp32",
        force=args.force,
        progress=events,
    )


def _fail(events: ProgressFn | None, kind: ErrorKind, message: str) -> int:
    """Report an error on stderr (and as an event); return the exit status for ``kind``."""
    print(ERROR_PREFIX + message, file=sys.stderr)
    if events is not None:
        events(error_event(kind, message))
    return EXIT_MISSING_EXTRA if kind == "missing_extra" else EXIT_ERROR


def _bench_torch(args: argparse.Namespace) -> int:
    from lofi_daemon.errors import LofiError
    from lofi_daemon.model.manifest import load_manifest

    from .bench_torch import compare_with_torch

    with stdout_for_events() as stream:
        try:
            frames = args.frames
            if frames is None:
                frames = load_manifest(args.models_dir).constants.latent_frames(args.duration)
            report = compare_with_torch(
                args.checkpoint_dir,
                args.models_dir,
                frames=frames,
                provider=args.provider,
                threads=args.threads,
                repeats=args.repeats,
            )
        except LofiError as exc:  # the model directory does not load
            return _fail(None, "export", exc.message)
        stream.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
