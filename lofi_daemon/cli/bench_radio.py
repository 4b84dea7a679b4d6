"""``lofi-daemon bench --radio N``: what one radio segment costs, and whether the station keeps up.

The station (:mod:`lofi_daemon.radio`) makes its first segment with text2music and every later one
with ``extend``: ``extend_right`` = the segment length, the source = the last ``context`` seconds of
the previous generated segment's latents, so each continuation also denoises and decodes the
context again. This bench times, on one loaded engine, N such chained continuations against N
plain text2music segments of the same length, interleaved (plain, continuation, plain, ...) after
one warm-up of each, so that a machine getting slower or faster affects both kinds alike. Each
continuation is also rendered the way the station renders it (read the engine's file, cut and
crossfade the join, write the 16-bit FLAC segment file), and that cost is reported apart.

The station plays in real time: it keeps up when a continuation, rendered, takes no longer than the
music it adds (real-time factor ≥ 1); otherwise it fills the gaps from the track library.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import numpy as np

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.pipeline.engine import Engine, GenerationResult
from lofi_daemon.pipeline.params import GenerationParams, Scheduler, seconds_to_frames
from lofi_daemon.pipeline.source import SourceAudio
from lofi_daemon.radio.config import (
    DEFAULT_AHEAD,
    DEFAULT_CONTEXT_SEC,
    DEFAULT_SEGMENT_SEC,
    MAX_SEGMENT_SEC,
    MIN_CONTEXT_SEC,
    MIN_SEGMENT_SEC,
    StationConfig,
)
from lofi_daemon.radio.joins import SAMPLE_RATE, context_samples, tail_position
from lofi_daemon.radio.plan import StationPlan
from lofi_daemon.radio.render import (
    read_wave,
    render_continuation,
    render_first,
    write_segment,
)

#: The real-time factor a station needs: each segment ready before the previous one has played.
NEEDED_RTF: Final = 1.0
#: The station's seed (its segments' seeds derive from it) and the plain segments' first seed.
STATION_SEED: Final = 1000
PLAIN_SEED: Final = 2000


@dataclass(frozen=True)
class RadioBench:
    """The checked ``--radio``, ``--segment`` and ``--context`` options."""

    segments: int
    segment_sec: float
    context_sec: float


def add_radio_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--radio",
        type=int,
        default=None,
        metavar="N",
        help="time N radio continuation segments against N plain text2music segments",
    )
    parser.add_argument(
        "--segment",
        type=float,
        default=DEFAULT_SEGMENT_SEC,
        metavar="S",
        help=f"radio: seconds of new music per segment, {MIN_SEGMENT_SEC:g} to "
        f"{MAX_SEGMENT_SEC:g} (default: {DEFAULT_SEGMENT_SEC:g})",
    )
    parser.add_argument(
        "--context",
        type=float,
        default=DEFAULT_CONTEXT_SEC,
        metavar="S",
        help=f"radio: seconds of the previous segment a continuation starts from, "
        f"{MIN_CONTEXT_SEC:g} to --segment (default: {DEFAULT_CONTEXT_SEC:g})",
    )


def check_radio_args(args: argparse.Namespace) -> RadioBench | None:
    """The radio bench settings, None without ``--radio``; LofiError for a bad value."""
    if args.radio is None:
        return None
    if args.task != "text2music":
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"--radio times the radio's own segments; it does not take --task {args.task}",
        )
    if args.radio < 1:
        raise LofiError(
            errors.INVALID_PARAMETER, f"--radio needs at least 1 segment, got {args.radio}"
        )
    segment, context = args.segment, args.context
    if not MIN_SEGMENT_SEC <= segment <= MAX_SEGMENT_SEC:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"--segment must be {MIN_SEGMENT_SEC:g} to {MAX_SEGMENT_SEC:g} seconds, got {segment:g}",
        )
    if not MIN_CONTEXT_SEC <= context <= segment:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"--context must be {MIN_CONTEXT_SEC:g} seconds to --segment ({segment:g}), "
            f"got {context:g}",
        )
    return RadioBench(args.radio, segment, context)


class _Station:
    """The station's own chain: :class:`StationPlan` hands out the jobs (text2music, then extends
    with its seeds and prompt walk), each continues from the kept latents of the previous one and
    is rendered into a segment file, as the service does."""

    def __init__(self, engine: Engine, config: StationConfig, folder: Path) -> None:
        self.engine, self.config, self.folder = engine, config, folder
        self.plan = StationPlan(config, "bench", now=time.monotonic())
        self.latents: np.ndarray | None = None
        self.tail: np.ndarray | None = None
        self.tail_at = 0.0  # where the tail lies in the previous segment's engine output

    def next(self) -> tuple[GenerationResult, float, float]:
        """The next generated segment: its result, wall seconds of generation and of render."""
        plan = self.plan
        job = plan.next_job(time.monotonic())
        assert job is not None, "the bench keeps the buffer short: a job is always due"
        source = None
        if job.context_frames:
            assert self.latents is not None
            source = np.ascontiguousarray(self.latents[..., -job.context_frames :])
        plan.job_started(job, time.monotonic())
        out = self.folder / f"segment-{job.gen_index}.wav"
        result, wall = _timed(self.engine, job.params, out, source)
        render, seconds = self._render(result, job.context_frames)
        segment = plan.job_done(
            job,
            track_id=f"bench-{job.gen_index}",
            path=out.with_suffix(".flac"),
            duration_sec=seconds,
            now=time.monotonic(),
        )
        # The playhead at the newest segment keeps the buffer ahead below its target.
        plan.playhead(segment.index, 0.0, False, time.monotonic())
        return result, wall, render

    def _render(self, result: GenerationResult, context_frames: int) -> tuple[float, float]:
        """Render the engine's file into the segment file as the station does: the seconds this
        took and the file's length."""
        started = time.monotonic()
        wave = read_wave(result.path)
        join = self.config.join
        if self.tail is None:
            rendered = render_first(wave, join)
        else:
            assert self.latents is not None
            at = tail_position(self.tail_at, self.latents.shape[-1], context_frames)
            rendered = render_continuation(self.tail, wave, at, join)
        write_segment(result.path.with_suffix(".flac"), rendered.audio)
        seconds = time.monotonic() - started
        self.latents, self.tail, self.tail_at = result.latents, rendered.tail, rendered.tail_at
        result.path.unlink()
        return seconds, rendered.audio.shape[0] / SAMPLE_RATE


def _timed(
    engine: Engine, params: GenerationParams, out: Path, source: np.ndarray | None
) -> tuple[GenerationResult, float]:
    started = time.monotonic()
    result = engine.generate(
        params, out, source=None if source is None else SourceAudio(latents=source)
    )
    return result, time.monotonic() - started


def bench_radio(
    engine: Engine, bench: RadioBench, *, prompt: str, steps: int, scheduler: Scheduler
) -> dict[str, Any]:
    """Time ``bench.segments`` continuations and plain segments, interleaved; the JSON report."""
    config = StationConfig.from_params(
        {
            "prompt": prompt,
            "segment_sec": bench.segment_sec,
            "context_sec": bench.context_sec,
            "infer_steps": steps,
            "scheduler": scheduler,
        },
        seed=STATION_SEED,
    )
    plain: list[dict[str, float]] = []
    chain: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        station = _Station(engine, config, folder)
        first, first_wall, _ = station.next()  # the first segment; the plain kind's warm-up
        station.next()  # the continuation kind's warm-up
        for run in range(bench.segments):
            params = replace(first.params, seed=PLAIN_SEED + run)
            result, wall = _timed(engine, params, folder / f"plain-{run}.wav", None)
            result.path.unlink()
            plain.append(_row(result, wall, result.duration_sec))
            result, wall, render = station.next()
            added = result.duration_sec - context_samples(config.context_frames) / SAMPLE_RATE
            chain.append({**_row(result, wall, added), "render_sec": round(render, 4)})
    report = _summary(bench, steps, scheduler, plain, chain, first_sec=first_wall)
    report["first_segment_audio_sec"] = round(first.duration_sec, 4)
    report["runs"] = {"plain": plain, "continuation": chain}
    sys.stderr.write(describe(report) + "\n")
    return report


def _row(result: GenerationResult, wall: float, audio_sec: float) -> dict[str, float]:
    timings = result.timings
    return {
        "wall_sec": round(wall, 4),
        "encode_sec": round(timings["encode"], 4),
        "diffusion_sec": round(timings["diffusion"], 4),
        "decode_sec": round(timings["decode"], 4),
        "frames": int(result.latents.shape[-1]),
        "audio_sec": round(audio_sec, 4),
    }


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4)}


def _summary(
    bench: RadioBench,
    steps: int,
    scheduler: str,
    plain: list[dict[str, float]],
    chain: list[dict[str, float]],
    *,
    first_sec: float,
) -> dict[str, Any]:
    """The medians and minimums, the ratio, the real-time factors and the station's verdict.

    ``first_sec`` is the station's first segment (text2music, on a cold engine: the models load).
    """
    plain_sec = _stats([row["wall_sec"] for row in plain])
    cont_sec = _stats([row["wall_sec"] for row in chain])
    render_sec = _stats([row["render_sec"] for row in chain])
    added = statistics.median(row["audio_sec"] for row in chain)
    per_segment = cont_sec["median"] + render_sec["median"]
    station_rtf = added / per_segment
    return {
        "task": "radio",
        "segments": bench.segments,
        "segment_sec": bench.segment_sec,
        "context_sec": bench.context_sec,
        "context_frames": seconds_to_frames(bench.context_sec),
        "steps": steps,
        "scheduler": scheduler,
        "plain_sec": plain_sec,
        "continuation_sec": cont_sec,
        "render_sec": render_sec,
        "continuation_vs_plain": round(cont_sec["median"] / plain_sec["median"], 3),
        "plain_rtf": round(
            statistics.median(row["audio_sec"] for row in plain) / plain_sec["median"], 3
        ),
        "continuation_rtf": round(added / cont_sec["median"], 3),
        "first_segment_sec": round(first_sec, 4),
        "station": {
            "rtf": round(station_rtf, 3),
            "needed_rtf": NEEDED_RTF,
            "margin": round(station_rtf - NEEDED_RTF, 3),
            "sustainable": station_rtf >= NEEDED_RTF,
            "ahead": DEFAULT_AHEAD,
            "ahead_sec": DEFAULT_AHEAD * bench.segment_sec,
            "generated_share": round(min(1.0, station_rtf), 3),
        },
    }


def describe(report: dict[str, Any]) -> str:
    """The report for reading (stderr): times, ratio, real-time factors, the verdict."""
    station = report["station"]
    segment = report["segment_sec"]

    def line(name: str, stats: dict[str, float]) -> str:
        return f"  {name:<22}{stats['median']:>10.3f} s{stats['min']:>10.3f} s"

    lines = [
        (
            f"radio bench: {report['segments']} segment(s) of {segment:g} s each kind, context "
            f"{report['context_sec']:g} s ({report['context_frames']} frames), "
            f"{report['steps']} steps, {report['scheduler']}"
        ),
        f"  {'':<22}{'median':>12}{'min':>12}",
        line("plain text2music", report["plain_sec"]),
        line("continuation (extend)", report["continuation_sec"]),
        line("render + FLAC write", report["render_sec"]),
        f"  continuation / plain: {report['continuation_vs_plain']:.2f}x",
        f"  first segment (cold engine, models loading): {report['first_segment_sec']:.3f} s",
        (
            f"  real-time factor: plain {report['plain_rtf']:.2f}, continuation "
            f"{report['continuation_rtf']:.2f}, continuation + render {station['rtf']:.2f} "
            "(seconds of new music per second of work)"
        ),
        (
            f"  the station needs >= {station['needed_rtf']:.1f} to keep up; it buffers "
            f"{station['ahead']} segments ({station['ahead_sec']:g} s) ahead of the playhead"
        ),
    ]
    if station["sustainable"]:
        lines.append(
            f"  margin {station['margin']:+.2f}: sustainable; the station works "
            f"{100 / station['rtf']:.0f}% of the time it plays"
        )
    else:
        lines.append(
            f"  margin {station['margin']:+.2f}: NOT sustainable here; about "
            f"{100 * station['generated_share']:.0f}% of the stream would be new music, the rest "
            "filled from the track library"
        )
    return "\n".join(lines)
