"""``lofi-daemon generate`` and ``lofi-daemon bench``: the engine from a terminal."""

from __future__ import annotations

import argparse
import json
import logging
import resource
import secrets
import sys
from pathlib import Path

import numpy as np

from lofi_daemon import errors
from lofi_daemon.cli.output import check_output_path, is_lofi_sidecar, output_format, sidecar_path
from lofi_daemon.errors import LofiError
from lofi_daemon.fsutil import write_json_atomic
from lofi_daemon.paths import default_models_dir
from lofi_daemon.pipeline.decode import DecodeSettings
from lofi_daemon.pipeline.engine import Engine, GenerationResult
from lofi_daemon.pipeline.params import CFG_TYPES, FORMATS, SCHEDULERS, GenerationParams
from lofi_daemon.pipeline.progress import Progress
from lofi_daemon.pipeline.providers import PROVIDER_CHOICES

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
        help="model directory (default: $LOFI_MODELS_DIR or the user cache)",
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
        help="generate one track from a text prompt",
        description="Generate one track from a text prompt. The audio file goes to -o FILE, else "
        "to lofi-SEED.FORMAT in the current folder; its metadata goes beside it, in the same "
        "name with .json.",
        formatter_class=DefaultsHelp,
    )
    p.add_argument("prompt", help="what to play, e.g. 'lofi hip hop, mellow rhodes, 80 bpm'")
    p.add_argument("--duration", type=float, default=30.0, help="length in seconds, 5-240")
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
        help="start from this .npy of shape [1, 8, 16, T] instead of seeded noise",
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


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="measure per-phase times, steps/s, real-time factor and peak memory"
    )
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--steps", type=int, default=27)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="checkpoint folder, to time the project's torch modules too (needs the export extra)",
    )
    p.add_argument("--keep-loaded", action="store_true")
    add_engine_arguments(p)


def _params(args: argparse.Namespace, seed: int) -> GenerationParams:
    return GenerationParams.from_dict(
        {
            "prompt": args.prompt,
            "duration_sec": args.duration,
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
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    params = _params(args, seed)
    noise = None
    if args.initial_noise is not None:
        try:
            noise = np.load(args.initial_noise, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise LofiError(
                errors.INVALID_PARAMETER, f"cannot read initial noise {args.initial_noise}: {exc}"
            ) from exc
    output = args.output or Path(f"lofi-{seed}.{params.format}")
    models_dir = args.models or default_models_dir()
    check_output_path(output, models_dir)  # before any model time is spent
    engine = Engine(models_dir, provider=args.provider, threads=args.threads)
    result = engine.generate(
        params, output, progress=ProgressBar(not args.no_progress), initial_noise=noise
    )
    write_sidecar(result)
    LOG.info(
        "wrote %s (%.2f s, seed %d, %s)",
        result.path,
        result.duration_sec,
        result.seed,
        ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items()),
    )
    print(result.path)
    return 0


def write_sidecar(result: GenerationResult) -> Path:
    """Write ``<audio>.json`` beside the track; without it the audio file is removed too.

    A ``.json`` there that is not a lofi sidecar (it appeared during the generation) is kept.
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
        write_json_atomic(sidecar, result.sidecar())
    except OSError as exc:
        result.path.unlink(missing_ok=True)
        raise LofiError(
            errors.OUTPUT_WRITE_FAILED, f"cannot write {sidecar}: {exc.strerror or exc}"
        ) from exc
    return sidecar


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 1024 / 1024


def run_bench(args: argparse.Namespace) -> int:
    import tempfile

    engine = Engine(
        args.models or default_models_dir(),
        provider=args.provider,
        threads=args.threads,
        keep_loaded=args.keep_loaded,
        decode=DecodeSettings(),
    )
    params = GenerationParams(
        prompt="lofi hip hop, mellow rhodes, vinyl crackle, 80 bpm",
        duration_sec=args.duration,
        seed=0,
        infer_steps=args.steps,
    )
    evaluations: list[int] = []
    runs: list[dict[str, float | None]] = []
    report: dict[str, object] = {"duration_sec": args.duration, "steps": args.steps, "runs": runs}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            result = engine.generate(
                params,
                Path(tmp) / f"bench-{run}.wav",
                progress=lambda p: evaluations.append(p.step),
            )
            diffusion = result.timings["diffusion"]
            runs.append(
                {
                    **result.timings,
                    "denoiser_steps_per_sec": params.infer_steps / diffusion if diffusion else None,
                    "real_time_factor": result.duration_sec / result.timings["total"],
                }
            )
    report["providers"] = engine.providers_in_use()
    report["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    if args.checkpoint is not None:
        report["onnx_vs_torch"] = compare_with_torch(
            args.checkpoint,
            engine.models_dir,
            frames=engine.manifest.constants.latent_frames(args.duration),
            provider=args.provider,
            threads=args.threads,
        )
    print(json.dumps(report, indent=2))
    return 0


def compare_with_torch(
    checkpoint: Path, models_dir: Path, *, frames: int, provider: str, threads: int | None
) -> dict[str, object]:
    """``lofi-export bench-torch`` in a child process: the runtime never imports the exporter.

    The child's log lines pass through to stderr; its one JSON object on stdout is the result.
    """
    import importlib.util
    import subprocess

    hint = 'install it with: pip install -e ".[export]"'
    for package in ("torch", "lofi_export"):
        if importlib.util.find_spec(package) is None:
            raise LofiError(
                errors.INVALID_PARAMETER,
                f"--checkpoint needs the export extra (No module named {package!r}); {hint}",
            )
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    command = [sys.executable, "-m", "lofi_export", "--log-level", level, "bench-torch"]
    command += [str(checkpoint), str(models_dir), "--frames", str(frames), "--provider", provider]
    if threads:
        command += ["--threads", str(threads)]
    prefix, error = "lofi-export: error: ", ""
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        for line in child.stderr:  # the JSON on stdout is small: reading it last cannot block
            sys.stderr.write(line)
            if line.startswith(prefix):
                error = line.removeprefix(prefix).strip()
        output = child.stdout.read()
    if child.returncode == 2:  # lofi-export: the export extra is incomplete
        raise LofiError(errors.INVALID_PARAMETER, f"--checkpoint needs the export extra; {hint}")
    if child.returncode != 0:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"--checkpoint: lofi-export bench-torch failed: {error or f'exit {child.returncode}'}",
        )
    return dict(json.loads(output))
