"""``lofi-daemon bench``: per-phase times, steps/s, real-time factor and peak memory.

``--task text2music`` (the default) times whole generations. ``--task extend`` times the extend
task over a grid of source lengths and extension lengths: the cost of encoding each source (audio
→ DCAE latents, what a cached track's saved latents spare) and the cost of one denoising step,
which grows with the whole extended length (source + extension). ``--radio N`` times the radio's
segments (:mod:`lofi_daemon.cli.bench_radio`). ``--backend NAME`` (repeatable) times backends side
by side (:mod:`lofi_daemon.cli.bench_backends`). The report is one JSON object on stdout (a table or
a summary also goes to stderr, for reading). Every report also gives the session-creation seconds
per graph, the peak device memory and, off CPU, the node placement
(:mod:`lofi_daemon.cli.bench_figures`); text2music runs give the real-time factor per phase.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

import numpy as np

from lofi_daemon import errors
from lofi_daemon.cli.bench_backends import add_backend_bench_arguments, bench_backends
from lofi_daemon.cli.bench_figures import (
    PHASES,
    add_figure_arguments,
    add_figures,
    loads_in_run,
    memory_monitor,
    print_figures,
    rtf_per_phase,
)
from lofi_daemon.cli.bench_radio import add_radio_arguments, bench_radio, check_radio_args
from lofi_daemon.cli.generate import add_engine_arguments
from lofi_daemon.cli.generate_args import add_keep_loaded_arguments
from lofi_daemon.errors import LofiError
from lofi_daemon.paths import default_models_dir
from lofi_daemon.pipeline.decode import DecodeSettings
from lofi_daemon.pipeline.engine import Engine, GenerationResult
from lofi_daemon.pipeline.params import (
    SCHEDULERS,
    GenerationParams,
    Scheduler,
    seconds_to_frames,
)
from lofi_daemon.pipeline.source import SourceAudio

LOG = logging.getLogger(__name__)

BENCH_PROMPT: Final = "lofi hip hop, mellow rhodes, vinyl crackle, 80 bpm"
BENCH_TASKS: Final = ("text2music", "extend")
DEFAULT_SOURCES: Final = "10,30,60"
DEFAULT_EXTENSIONS: Final = "10,30"
SOURCE_RATE: Final = 44100  # the model's rate: the source needs no resampling
#: The columns of the extend report: one row per source, one per (source, extension).
ENCODE_COLUMNS: Final = ("source_sec", "frames", "encode_sec")
EXTEND_COLUMNS: Final = (
    "source_sec",
    "extend_sec",
    "frames",
    "diffusion_sec",
    "step_sec",
    "decode_sec",
    "total_sec",
)


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="measure per-phase times, steps/s, real-time factor and peak memory"
    )
    p.add_argument(
        "--task",
        default="text2music",
        help="text2music: time whole generations; extend: the source encode and the per-step "
        "cost over --sources x --extensions (default: text2music)",
    )
    p.add_argument("--duration", type=float, default=30.0, help="text2music: length in seconds")
    p.add_argument(
        "--steps", type=int, default=27, help="denoising steps (ace-step-1.5 always runs 8)"
    )
    p.add_argument(
        "--scheduler", default="euler", choices=SCHEDULERS, help="sampler (default: euler)"
    )
    p.add_argument("--runs", type=int, default=1, help="text2music: runs to time")
    p.add_argument(
        "--sources",
        default=DEFAULT_SOURCES,
        metavar="S,S,...",
        help=f"extend: source lengths in seconds (default: {DEFAULT_SOURCES})",
    )
    p.add_argument(
        "--extensions",
        default=DEFAULT_EXTENSIONS,
        metavar="S,S,...",
        help=f"extend: seconds added after the source (default: {DEFAULT_EXTENSIONS})",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="checkpoint folder, to time the project's torch modules too (needs the export extra)",
    )
    add_keep_loaded_arguments(p, default="false", idle=False)
    add_figure_arguments(p)
    add_radio_arguments(p)
    add_backend_bench_arguments(p)
    add_engine_arguments(p)


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 1024 / 1024


def _seconds_list(text: str, flag: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(not np.isfinite(v) or v <= 0 for v in values):
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"{flag} must be positive numbers of seconds separated by commas, got {text!r}",
        )
    return values


def run_bench(args: argparse.Namespace) -> int:
    if args.task not in BENCH_TASKS:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"bench times --task {' or '.join(BENCH_TASKS)}, not {args.task!r}",
        )
    if args.backend:
        print(json.dumps(bench_backends(args), indent=2))
        return 0
    radio = check_radio_args(args)
    if args.runs < 1:
        raise LofiError(errors.INVALID_PARAMETER, f"--runs must be at least 1, got {args.runs}")
    extend = args.task == "extend"
    if extend:
        sources = _seconds_list(args.sources, "--sources")
        extensions = _seconds_list(args.extensions, "--extensions")
    monitor = memory_monitor(args.provider)
    engine = Engine(
        args.models or default_models_dir(),
        provider=args.provider,
        threads=args.threads,
        keep_loaded=args.keep_loaded,
        decode=DecodeSettings(),
    )
    monitor.start()
    if radio is not None:
        report = bench_radio(
            engine, radio, prompt=BENCH_PROMPT, steps=args.steps, scheduler=args.scheduler
        )
    elif extend:
        report = bench_extend(
            engine, sources, extensions, steps=args.steps, scheduler=args.scheduler
        )
    else:
        report = bench_text2music(
            engine,
            duration=args.duration,
            steps=args.steps,
            runs=args.runs,
            scheduler=args.scheduler,
        )
    monitor.stop()
    report["providers"] = engine.providers_in_use()
    report["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    add_figures(report, engine, monitor, args)
    print_figures(report)
    if args.checkpoint is not None:
        report["onnx_vs_torch"] = compare_with_torch(
            args.checkpoint,
            engine.models_dir,
            frames=engine.manifest.constants.latent_frames(
                args.duration if radio is None else radio.segment_sec
            ),
            provider=args.provider,
            threads=args.threads,
        )
    print(json.dumps(report, indent=2))
    return 0


def bench_text2music(
    engine: Engine, *, duration: float, steps: int, runs: int, scheduler: Scheduler = "euler"
) -> dict[str, Any]:
    params = GenerationParams(
        prompt=BENCH_PROMPT, duration_sec=duration, seed=0, infer_steps=steps, scheduler=scheduler
    )
    rows: list[dict[str, Any]] = []
    audio_sec = duration
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(runs):
            loads_before = engine.session_load_times()
            result = engine.generate(params, Path(tmp) / f"bench-{run}.wav")
            diffusion = result.timings["diffusion"]
            audio_sec = result.duration_sec
            load_sec = loads_in_run(loads_before, engine.session_load_times())
            rows.append(
                {
                    **result.timings,
                    "denoiser_steps_per_sec": params.infer_steps / diffusion if diffusion else None,
                    "real_time_factor": result.duration_sec / result.timings["total"],
                    "rtf": rtf_per_phase(result.timings, result.duration_sec),
                    "session_load_sec": round(load_sec, 4),
                    "rtf_total_without_loads": round(
                        audio_sec / max(result.timings["total"] - load_sec, 1e-9), 2
                    ),
                }
            )
    mean = {phase: sum(float(row[phase]) for row in rows) / len(rows) for phase in PHASES}
    return {
        "task": "text2music",
        "duration_sec": duration,
        "steps": steps,
        "scheduler": scheduler,
        "runs": rows,
        "mean_sec": {phase: round(sec, 4) for phase, sec in mean.items()},
        "rtf": rtf_per_phase(mean, audio_sec),
    }


def bench_extend(
    engine: Engine,
    sources: list[float],
    extensions: list[float],
    *,
    steps: int,
    scheduler: Scheduler = "euler",
) -> dict[str, Any]:
    """Extend every source length by every extension length (on the right), one run each.

    The sources are audio files of noise (the cost does not depend on the content). Each source
    is encoded once, in a first run from its audio file; every row then starts from the source's
    latents (the kept frames of that run's output, as the daemon starts from a cached track), so
    the rows hold no encode. A source's ``encode_sec`` is the difference between the encode phase
    of its run from audio and of its first run from latents (both also encode the prompt).
    """
    encodes: list[dict[str, float]] = []
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "extended.wav"
        for source_sec in sources:
            path = Path(tmp) / f"source-{source_sec:g}.wav"
            _write_noise(path, source_sec)
            first = engine.generate(
                _extend_params(extensions[0], steps, scheduler), out, source=SourceAudio(path=path)
            )
            frames = first.latents.shape[-1] - seconds_to_frames(extensions[0])
            latents = np.ascontiguousarray(first.latents[..., :frames])
            for index, extend_sec in enumerate(extensions):
                result = engine.generate(
                    _extend_params(extend_sec, steps, scheduler),
                    out,
                    source=SourceAudio(latents=latents),
                )
                rows.append(_extend_row(result, source_sec, extend_sec, steps))
                if index == 0:
                    encode = first.timings["encode"] - result.timings["encode"]
                    encodes.append(
                        {"source_sec": source_sec, "frames": frames, "encode_sec": max(encode, 0.0)}
                    )
    _print_table(encodes, ENCODE_COLUMNS)
    _print_table(rows, EXTEND_COLUMNS)
    return {
        "task": "extend",
        "steps": steps,
        "scheduler": scheduler,
        "sources": encodes,
        "runs": rows,
    }


def _extend_params(extend_sec: float, steps: int, scheduler: Scheduler) -> GenerationParams:
    return GenerationParams(
        prompt=BENCH_PROMPT,
        seed=0,
        infer_steps=steps,
        scheduler=scheduler,
        task="extend",
        retake_seed=1,
        extend_right=extend_sec,
    )


def _extend_row(
    result: GenerationResult, source_sec: float, extend_sec: float, steps: int
) -> dict[str, float]:
    timings = result.timings
    diffusion = timings["diffusion"]
    return {
        "source_sec": source_sec,
        "extend_sec": extend_sec,
        "frames": int(result.latents.shape[-1]),
        "diffusion_sec": diffusion,
        "step_sec": round(diffusion / steps, 4),
        "decode_sec": timings["decode"],
        "total_sec": timings["total"],
    }


def _write_noise(path: Path, seconds: float) -> None:
    import soundfile as sf

    rng = np.random.Generator(np.random.PCG64(0))
    wave = 0.1 * rng.standard_normal((round(seconds * SOURCE_RATE), 2), dtype=np.float32)
    sf.write(path, wave, SOURCE_RATE, subtype="PCM_16")


def _print_table(rows: list[dict[str, float]], columns: tuple[str, ...]) -> None:
    """Rows as aligned columns on stderr (stdout carries the JSON report)."""
    lines = ["  ".join(f"{name:>13}" for name in columns)]
    for row in rows:
        lines.append("  ".join(f"{row[name]:>13.4g}" for name in columns))
    sys.stderr.write("\n".join(lines) + "\n")


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
