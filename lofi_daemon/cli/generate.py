"""``lofi-daemon generate``: the engine from a terminal (the audio-task flags are in
:mod:`lofi_daemon.cli.task_args`, ``bench`` in :mod:`lofi_daemon.cli.bench`)."""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
from pathlib import Path

from lofi_daemon import errors
from lofi_daemon.cli.generate_args import add_backend_arguments, resolve_backend, turbo_fields
from lofi_daemon.cli.output import check_output_path, is_lofi_sidecar, output_format, sidecar_path
from lofi_daemon.cli.task_args import (
    SourceFile,
    add_task_arguments,
    check_task_flags,
    load_noise,
    source_file,
    task_fields,
    variant_models_dir,
)
from lofi_daemon.errors import LofiError
from lofi_daemon.fsutil import write_json_atomic
from lofi_daemon.model.backends import TURBO
from lofi_daemon.pipeline.engine import Engine, GenerationResult
from lofi_daemon.pipeline.params import CFG_TYPES, FORMATS, SCHEDULERS, GenerationParams
from lofi_daemon.pipeline.progress import Progress
from lofi_daemon.pipeline.providers import PROVIDER_CHOICES
from lofi_daemon.pipeline.source import SourceAudio

LOG = logging.getLogger(__name__)


class DefaultsHelp(argparse.HelpFormatter):
    """Help that shows each option's default unless its help text already speaks of it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            action.option_strings
            and "default" not in text
            and action.default is not None
            and action.default is not False
            and action.default != argparse.SUPPRESS
        ):
            text += " (default: %(default)s)"
        return text


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        type=Path,
        default=None,
        metavar="DIR",
        help="model directory of the backend (default: its folder: $LOFI_MODELS_DIR or the "
        "user cache for ace-step, the ace-step-1.5 folder beside it for ace-step-1.5)",
    )
    parser.add_argument(
        "--provider",
        default="auto",
        choices=PROVIDER_CHOICES,
        help="ONNX Runtime execution provider; auto picks the best that works",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="intra-op threads (default: all cores)"
    )


def add_generate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="generate one track from a text prompt (or repaint, extend, edit an audio file)",
        description="Generate one track from a text prompt, or make one from an audio file "
        "(--task repaint, extend, edit, audio2audio). The audio file goes to -o FILE, else "
        "to lofi-SEED.FORMAT in the current folder; its metadata goes beside it, in the same "
        "name with .json.",
        formatter_class=DefaultsHelp,
    )
    p.add_argument("prompt", help="what to play, e.g. 'lofi hip hop, mellow rhodes, 80 bpm'")
    add_backend_arguments(p)
    add_task_arguments(p)
    p.add_argument("--steps", type=int, default=27, help="denoising steps")
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="random seed (default: a random one, recorded in the sidecar)",
    )
    # No argparse ``choices`` for these names: an unknown value must fail like every other
    # invalid parameter (the engine's specific error, exit status 1), not with a usage dump.
    p.add_argument("--scheduler", default="euler", help=" | ".join(SCHEDULERS))
    p.add_argument("--cfg-type", default="apg", help="guidance: " + " | ".join(CFG_TYPES))
    p.add_argument("--guidance-scale", type=float, default=15.0, help="0 turns guidance off")
    p.add_argument("--omega", type=float, default=10.0, help="granularity (omega) scale")
    p.add_argument(
        "--guidance-interval", type=float, default=0.5, help="share of the steps guided, 0-1"
    )
    p.add_argument("--guidance-interval-decay", type=float, default=0.0, help="guidance decay, 0-1")
    p.add_argument(
        "--min-guidance-scale", type=float, default=3.0, help="lowest guidance while decaying"
    )
    p.add_argument(
        "--guidance-scale-text", type=float, default=0.0, help="text-only guidance (0: off)"
    )
    p.add_argument(
        "--guidance-scale-lyric", type=float, default=0.0, help="lyric-only guidance (0: off)"
    )
    p.add_argument("--no-erg-tag", action="store_true", help="no ERG on the prompt's text")
    p.add_argument("--no-erg-lyric", action="store_true", help="no ERG on the lyrics")
    p.add_argument("--no-erg-diffusion", action="store_true", help="no ERG in the denoiser")
    p.add_argument(
        "--initial-noise",
        type=Path,
        default=None,
        metavar="NPY",
        help="start from this .npy instead of seeded noise: shape [1, 8, 16, T] (ace-step) or "
        "[1, T, C] (ace-step-1.5)",
    )
    p.add_argument(
        "--variant",
        default=None,
        metavar="NAME",
        help="generate with this installed LoRA variant of the models",
    )
    p.add_argument(
        "--format",
        default=None,
        help=" | ".join(FORMATS) + " (default: from -o's extension, else wav)",
    )
    p.add_argument("--float", dest="wav_float", action="store_true", help="32-bit float WAV")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        metavar="FILE",
        help="the audio file, ending in "
        + ", ".join(f".{f}" for f in FORMATS)
        + " (default: lofi-SEED.FORMAT in the current folder); its folder must exist",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_engine_arguments(p)


def _params(args: argparse.Namespace, seed: int, backend: str) -> GenerationParams:
    return GenerationParams.from_dict(
        {
            **task_fields(args),
            **turbo_fields(args),
            "backend": backend,
            "prompt": args.prompt,
            "seed": seed,
            "infer_steps": args.steps,
            "guidance_scale": args.guidance_scale,
            "scheduler": args.scheduler,
            "cfg_type": args.cfg_type,
            "omega_scale": args.omega,
            "guidance_interval": args.guidance_interval,
            "guidance_interval_decay": args.guidance_interval_decay,
            "min_guidance_scale": args.min_guidance_scale,
            "guidance_scale_text": args.guidance_scale_text,
            "guidance_scale_lyric": args.guidance_scale_lyric,
            "use_erg_tag": not args.no_erg_tag,
            "use_erg_lyric": not args.no_erg_lyric,
            "use_erg_diffusion": not args.no_erg_diffusion,
            "format": output_format(args.format, args.output),
            "wav_subtype": "float" if args.wav_float else "pcm16",
        }
    )


class ProgressBar:
    """A one-line progress bar on stderr."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.last = -1.0

    def __call__(self, progress: Progress) -> None:
        if not self.enabled or (
            progress.percent - self.last < 1 and progress.step < progress.total
        ):
            return
        self.last = progress.percent
        filled = int(progress.percent / 100 * 30)
        eta = f" eta {progress.eta_sec:4.0f}s" if progress.eta_sec is not None else ""
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (30 - filled)}] {progress.percent:5.1f}% "
            f"{progress.phase:<9}{eta}"
        )
        if progress.step >= progress.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def run_generate(args: argparse.Namespace) -> int:
    check_task_flags(args)
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    backend, models_dir = resolve_backend(args.backend, args.models)
    params = _params(args, seed, backend)
    if backend == TURBO.name and args.variant is not None:
        raise LofiError(
            errors.INVALID_PARAMETER, f"--variant is not available on the backend {backend}"
        )
    noise = load_noise(args.initial_noise, "--initial-noise")
    retake_noise = load_noise(args.retake_noise, "--retake-noise")
    source = source_file(args)  # checked before any model is loaded
    output = args.output or Path(f"lofi-{seed}.{params.format}")
    check_output_path(output, models_dir)  # before any model time is spent
    progress = ProgressBar(not args.no_progress)
    if backend == TURBO.name:
        from lofi_daemon.turbo.engine import TurboEngine  # ONNX Runtime loads on first use

        turbo = TurboEngine(models_dir, provider=args.provider, threads=args.threads)
        result = turbo.generate(params, output, progress=progress, initial_noise=noise)
    else:
        engine = Engine(
            variant_models_dir(models_dir, args.variant),
            provider=args.provider,
            threads=args.threads,
        )
        result = engine.generate(
            params,
            output,
            progress=progress,
            initial_noise=noise,
            retake_noise=retake_noise,
            source=source_audio(source),
        )
    write_sidecar(result, source=source, variant=args.variant)
    LOG.info(
        "wrote %s (%.2f s, seed %d, %s)",
        result.path,
        result.duration_sec,
        result.seed,
        ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items()),
    )
    print(result.path)
    return 0


def source_audio(source: SourceFile | None) -> SourceAudio | None:
    if source is None:
        return None
    return SourceAudio(path=source.path, label=f"{source.flag} {source.path}")


def write_sidecar(
    result: GenerationResult, *, source: SourceFile | None = None, variant: str | None = None
) -> Path:
    """Write ``<audio>.json`` beside the track; without it the audio file is removed too.

    The sidecar is the result's own (resolved parameters included) plus the ``backend`` and
    ``source`` (the path and
    SHA-256 of the source audio) and ``variant`` when the task had them. A ``.json`` there that
    is not a lofi sidecar (it appeared during the generation) is kept.
    """
    sidecar = sidecar_path(result.path)
    if (sidecar.exists() or sidecar.is_symlink()) and not is_lofi_sidecar(sidecar):
        result.path.unlink(missing_ok=True)
        raise LofiError(
            errors.OUTPUT_WRITE_FAILED,
            f"{sidecar} appeared during the generation and is not a lofi sidecar; kept it",
            remedy="Choose another output file with -o.",
        )
    try:
        meta = result.sidecar()
        meta["backend"] = result.params.backend
        if source is not None:
            meta["source"] = source.record()
        if variant is not None:
            meta["variant"] = variant
        write_json_atomic(sidecar, meta)
    except OSError as exc:
        result.path.unlink(missing_ok=True)
        raise LofiError(
            errors.OUTPUT_WRITE_FAILED, f"cannot write {sidecar}: {exc.strerror or exc}"
        ) from exc
    return sidecar
