"""``lofi-daemon setup ace-step|ace-step-1.5``: install a backend's models from a terminal.

The work is :func:`lofi_daemon.install.installer.run_install`; this module adds the command
line, a progress display on stderr and the download prompt.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.install.backend_spec import backend_spec, spec_for_repo
from lofi_daemon.install.installer import run_install
from lofi_daemon.install.options import PRECISION_CHOICES, InstallOptions
from lofi_daemon.install.plan import InstallPlan
from lofi_daemon.install.progress import format_bytes
from lofi_daemon.install.variant import VariantOptions, run_variant_install
from lofi_daemon.install.verify import verify_installation
from lofi_daemon.model.backends import NAMES, backend_models_dir
from lofi_daemon.paths import default_models_dir

BACKENDS = NAMES


def add_setup_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "setup",
        help="install a backend: download the checkpoint, export it to ONNX, verify every sha256",
    )
    p.add_argument("backend", choices=BACKENDS)
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="export this local checkpoint folder (official layout) instead of downloading",
    )
    p.add_argument(
        "--models",
        type=Path,
        default=None,
        help="model directory to install into (default for ace-step: $LOFI_MODELS_DIR or the "
        "user cache; ace-step-1.5 goes beside it, or to $LOFI_MODELS_DIR_ACE_STEP_1_5)",
    )
    p.add_argument("-y", "--yes", action="store_true", help="agree to the download without asking")
    p.add_argument(
        "--force",
        action="store_true",
        help="reinstall even if a verified installation (from the same checkpoint) exists",
    )
    p.add_argument(
        "--keep-download",
        action="store_true",
        help="keep the downloaded checkpoint (<models>.download) after installing",
    )
    p.add_argument("--revision", default=None, help="hub branch, tag or commit (default: main)")
    p.add_argument(
        "--verify",
        action="store_true",
        help="only check the installed files against their sha256 and exit",
    )
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISION_CHOICES,
        help="the graph set to export: fp16 (half the disk; fp16 weights and matrix products, "
        "fp32 islands), fp32, or auto: fp16 when a CUDA GPU works here, else fp32 (default)",
    )
    p.add_argument(
        "--lora",
        default=None,
        metavar="DIR_OR_HUB_REPO",
        help="install a LoRA (folder with pytorch_lora_weights.safetensors, or a hub repo id) "
        "as a named variant beside the installed base model (docs/lora.md); ace-step only",
    )
    p.add_argument("--lora-weight", type=float, default=1.0, help="the LoRA's weight (1.0)")
    p.add_argument(
        "--lora-name",
        default=None,
        help="the variant's name (default: the LoRA's folder or repository name)",
    )


class ProgressPrinter:
    """Setup progress on stderr: one rewritten line on a terminal, else a line every 10 %."""

    def __init__(self, enabled: bool, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.phase: str | None = None
        self.bucket = -1
        self.open_line = False

    def __call__(self, phase: str, done: int, total: int, percent: float, message: str) -> None:
        if not self.enabled:
            return
        if phase != self.phase:
            self.finish()
            self.phase, self.bucket = phase, -1
        line = f"[{phase}] {percent:5.1f}%  {message}"
        if self.tty:
            self.stream.write(f"\r\x1b[K{line}")
            self.open_line = True
            if percent >= 100:
                self.finish()
        elif int(percent // 10) > self.bucket:
            self.bucket = int(percent // 10)
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.open_line:
            self.stream.write("\n")
            self.stream.flush()
            self.open_line = False


def ask_download(plan: InstallPlan) -> bool:
    """Ask on the terminal whether to download what ``plan`` still needs."""
    spec = spec_for_repo(plan.repo_id)
    what = f"{spec.title} weights" if spec is not None else f"the LoRA {plan.repo_id}"
    sys.stderr.write(
        f"lofi-daemon: download {format_bytes(plan.remaining_bytes)} of {what} from the "
        "Hugging Face hub? [y/N] "
    )
    sys.stderr.flush()
    try:
        answer = input()
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def run_setup_cli(args: argparse.Namespace) -> int:
    backend = backend_spec(args.backend).name
    models = args.models or backend_models_dir(backend, default_models_dir())
    uses_lora = args.lora is not None or args.lora_name is not None or args.lora_weight != 1.0
    if uses_lora and not backend_spec(backend).lora:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"--lora, --lora-weight and --lora-name are options of ace-step (v1) only; "
            f"{backend} has no LoRA variants",
            remedy=f"Leave them out for {backend}.",
        )
    printer = ProgressPrinter(enabled=not args.no_progress)
    try:
        if args.verify:
            manifest = verify_installation(models, progress=printer, backend=backend)
            printer.finish()
            print(f"{models}: every sha256 matches ({manifest.model_version})")
            return 0
        if args.lora is None and (args.lora_name is not None or args.lora_weight != 1.0):
            raise LofiError(errors.INVALID_PARAMETER, "--lora-name and --lora-weight need --lora")
        options = InstallOptions(
            models_dir=models,
            checkpoint=args.checkpoint,
            assume_yes=args.yes,
            force=args.force,
            keep_download=args.keep_download,
            revision=args.revision,
            backend=backend,
            precision=args.precision,
        )
        confirm = ask_download if not args.yes and sys.stdin.isatty() else None
        if args.lora is not None:
            return _setup_variant(args, options, printer, confirm)
        result = run_install(options, progress=printer, confirm=confirm)
    finally:
        printer.finish()
    if result.already_installed and args.checkpoint is not None:
        sys.stderr.write(
            f"lofi-daemon: already installed from this checkpoint and verified "
            f"(use --force to export again): {models}\n"
        )
    elif result.already_installed:
        sys.stderr.write(
            f"lofi-daemon: already installed and verified (use --force to reinstall): {models}\n"
        )
    print(result.models_dir)
    return 0


def _setup_variant(
    args: argparse.Namespace,
    options: InstallOptions,
    printer: ProgressPrinter,
    confirm: Callable[[InstallPlan], bool] | None,
) -> int:
    variant = VariantOptions(args.lora, args.lora_weight, args.lora_name, options)
    result = run_variant_install(variant, progress=printer, confirm=confirm)
    printer.finish()
    if result.already_installed:
        sys.stderr.write(
            f"lofi-daemon: variant {result.name!r} is already installed with this LoRA and weight "
            f"(use --force to export again): {result.models_dir}\n"
        )
    print(result.models_dir)
    return 0
