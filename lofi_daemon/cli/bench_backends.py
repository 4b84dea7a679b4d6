"""``lofi-daemon bench --backend NAME [--backend NAME ...]``: the backends side by side.

Each backend generates the same text2music track length (``--duration``), ``--runs`` times, in a
child process of its own (``python -m lofi_daemon.cli.bench_backends``), so that each peak RSS
(``getrusage(RUSAGE_SELF)`` in the child) is that backend's alone. v1 runs ``--steps`` steps
(default 27); ACE-Step 1.5 turbo always runs its 8. The report gives per backend the encode,
diffusion, decode and total seconds of each run and their means, seconds per audio second, the
peak RSS and the providers, and the ratio of every backend to the first one named; also the
session-creation seconds per graph, the real-time factor per phase, the peak device memory and, off
CPU, the node placement (:mod:`lofi_daemon.cli.bench_figures`).

``--backend NAME`` uses the backend's own model folder, beside ``--models`` (the v1 folder, as for
``serve``); ``--backend NAME=DIR`` names the model folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

from lofi_daemon import errors
from lofi_daemon.cli.bench_figures import add_figures, memory_monitor, print_figures, rtf_per_phase
from lofi_daemon.errors import LofiError
from lofi_daemon.model import backends
from lofi_daemon.paths import default_models_dir

LOG = logging.getLogger(__name__)

BENCH_PROMPT: Final = "lofi hip hop, mellow rhodes, vinyl crackle, 80 bpm"
PHASES: Final = ("encode", "diffusion", "decode", "total")
TABLE_COLUMNS: Final = (
    "backend",
    "steps",
    "encode_sec",
    "diffusion_sec",
    "decode_sec",
    "total_sec",
    "sec_per_audio_sec",
    "peak_rss_mb",
)


def add_backend_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        action="append",
        default=None,
        metavar="NAME[=DIR]",
        help=f"time this backend ({' | '.join(backends.NAMES)}); repeat it to compare backends "
        "on the same duration, each in its own process (DIR: its model folder; default: its "
        "folder beside --models)",
    )


def parse_backends(values: list[str], models: Path | None) -> list[tuple[str, Path]]:
    """``--backend`` values as (name, model folder), in the order given.

    Raises:
        LofiError: INVALID_BACKEND for an unknown name; INVALID_PARAMETER for a name given twice.
    """
    v1_dir = models or default_models_dir()
    chosen: list[tuple[str, Path]] = []
    for value in values:
        name, _, folder = value.partition("=")
        if name not in backends.BACKENDS:
            raise LofiError(
                errors.INVALID_BACKEND,
                f"unknown backend {name[:60]!r}; use one of {', '.join(backends.NAMES)}",
            )
        if any(name == seen for seen, _ in chosen):
            raise LofiError(errors.INVALID_PARAMETER, f"--backend {name} is given twice")
        path = Path(folder).expanduser() if folder else backends.backend_models_dir(name, v1_dir)
        chosen.append((name, path))
    return chosen


def check_bench_args(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """The backends to time, once the other options are known to fit a backend comparison."""
    chosen = parse_backends(args.backend, args.models)
    if args.task != "text2music":
        raise LofiError(errors.INVALID_PARAMETER, "--backend times text2music only")
    if getattr(args, "radio", None) is not None or args.checkpoint is not None:
        raise LofiError(
            errors.INVALID_PARAMETER, "--backend cannot be combined with --radio or --checkpoint"
        )
    if args.runs < 1:
        raise LofiError(errors.INVALID_PARAMETER, f"--runs must be at least 1, got {args.runs}")
    for name, _ in chosen:
        info = backends.BACKENDS[name]
        if not info.min_duration_sec <= args.duration <= info.max_duration_sec:
            raise LofiError(
                errors.INVALID_DURATION,
                f"--duration {args.duration:g} is outside {info.min_duration_sec:g}-"
                f"{info.max_duration_sec:g} s of the backend {name}; every backend runs the "
                "same duration",
            )
    return chosen


def bench_backends(args: argparse.Namespace) -> dict[str, Any]:
    """Time every ``--backend`` in its own child process; the report (see the module doc)."""
    chosen = check_bench_args(args)
    results = []
    for name, folder in chosen:
        job = {
            "backend": name,
            "models_dir": str(folder),
            "duration": args.duration,
            "steps": args.steps,
            "runs": args.runs,
            "provider": args.provider,
            "threads": args.threads,
            "keep_loaded": args.keep_loaded,
            "check_placement": getattr(args, "check_placement", None),
        }
        LOG.info("timing %s (%s)", name, folder)
        results.append(_run_child(job))
    report = {
        "task": "text2music",
        "duration_sec": args.duration,
        "backends": results,
        "ratios": ratios(results),
    }
    _print_table(results)
    for result in results:
        sys.stderr.write(f"{result['backend']}:\n")
        print_figures(result)
    return report


def ratios(results: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Every backend's mean seconds (per phase) and peak RSS over the first backend's."""
    if len(results) < 2:
        return {}
    base = results[0]
    out: dict[str, dict[str, float | None]] = {}
    for other in results[1:]:
        key = f"{other['backend']}/{base['backend']}"
        row: dict[str, float | None] = {}
        for phase in PHASES:
            below = base["mean"][phase]
            row[phase] = round(other["mean"][phase] / below, 3) if below else None
        rss = base["peak_rss_mb"]
        row["peak_rss"] = round(other["peak_rss_mb"] / rss, 3) if rss else None
        out[key] = row
    return out


def _run_child(job: dict[str, Any]) -> dict[str, Any]:
    """Run one backend's runs in a child process; its log lines pass through to stderr."""
    command = [sys.executable, "-m", "lofi_daemon.cli.bench_backends", json.dumps(job)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise LofiError(
            errors.INTERNAL_ERROR,
            f"the {job['backend']} bench process ended with status {done.returncode} and no report",
        ) from None
    if "error" in answer:
        error = answer["error"]
        raise LofiError(
            error["code"], f"{job['backend']}: {error['message']}", remedy=error["remedy"]
        )
    result: dict[str, Any] = answer["result"]
    return result


def time_backend(job: dict[str, Any]) -> dict[str, Any]:
    """One backend's runs in this process (the child's work): timings and peak RSS."""
    from lofi_daemon.pipeline.params import GenerationParams

    name, folder = job["backend"], Path(job["models_dir"])
    engine = _engine(name, folder, job)
    monitor = memory_monitor(job["provider"])
    fields: dict[str, Any] = {"prompt": BENCH_PROMPT, "duration_sec": job["duration"], "seed": 0}
    if name == backends.V1.name:
        fields["infer_steps"] = job["steps"]
    params = GenerationParams.from_dict({**fields, "backend": name})
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp, monitor:
        for run in range(job["runs"]):
            result = engine.generate(params, Path(tmp) / f"bench-{run}.wav")
            timings = {phase: float(result.timings[phase]) for phase in PHASES}
            runs.append(
                {
                    **{k: round(v, 4) for k, v in timings.items()},
                    "sec_per_audio_sec": round(timings["total"] / result.duration_sec, 4),
                }
            )
            audio_sec = result.duration_sec
    mean = {phase: round(sum(r[phase] for r in runs) / len(runs), 4) for phase in PHASES}
    providers = engine.providers_in_use()  # before add_figures closes the engine
    figures: dict[str, Any] = {"rtf": rtf_per_phase(mean, audio_sec)}
    settings = argparse.Namespace(
        provider=job["provider"], threads=job["threads"], check_placement=job.get("check_placement")
    )
    add_figures(figures, engine, monitor, settings)
    return {
        "backend": name,
        "models_dir": str(folder),
        "model_version": engine.model_version,
        "steps": params.diffusion_steps,
        "audio_sec": audio_sec,
        "runs": runs,
        "mean": mean,
        "sec_per_audio_sec": round(mean["total"] / audio_sec, 4),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "providers": providers,
        **figures,
    }


def _engine(name: str, folder: Path, job: dict[str, Any]) -> Any:
    settings = {
        "provider": job["provider"],
        "threads": job["threads"],
        "keep_loaded": job["keep_loaded"],
    }
    if name == backends.TURBO.name:
        from lofi_daemon.turbo.engine import TurboEngine

        return TurboEngine(folder, **settings)
    from lofi_daemon.pipeline.engine import Engine

    return Engine(folder, **settings)


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (``ru_maxrss``: KiB on Linux, bytes on
    macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 1024 / 1024


def _print_table(results: list[dict[str, Any]]) -> None:
    """The means as aligned columns on stderr (stdout carries the JSON report)."""
    lines = ["  ".join(f"{name:>17}" for name in TABLE_COLUMNS)]
    for r in results:
        cells = [
            r["backend"],
            r["steps"],
            *(r["mean"][phase] for phase in PHASES),
            r["sec_per_audio_sec"],
            r["peak_rss_mb"],
        ]
        lines.append("  ".join(f"{c:>17}" if isinstance(c, str) else f"{c:>17.4g}" for c in cells))
    sys.stderr.write("\n".join(lines) + "\n")


def _child_main(argv: list[str]) -> int:
    """The child: one JSON job in argv, one JSON line out (``result`` or ``error``)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    try:
        answer: dict[str, Any] = {"result": time_backend(json.loads(argv[0]))}
        status = 0
    except LofiError as exc:
        answer = {"error": {"code": exc.code, "message": exc.message, "remedy": exc.remedy}}
        status = 1
    sys.stdout.write(json.dumps(answer) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
