"""The bench figures every report shares: session-creation times, real-time factors per phase,
peak device memory and node placement (:mod:`lofi_daemon.cli.bench` and
:mod:`lofi_daemon.cli.bench_backends` add them to their reports).

* ``session_load_sec``: graph → wall seconds of its most recent ``InferenceSession`` creation
  (the engines' ``session_load_times()``).
* ``rtf``: audio seconds / phase seconds for ``encode``, ``diffusion``, ``decode`` and ``total``
  (60 s of audio made in 1 s is 60×; a phase that took no time has ``null``).
* ``device_memory``: :class:`lofi_daemon.cli.device_memory.DeviceMemoryMonitor`'s report.
* ``placement``: graph → ``provider_counts`` and ``heavy_on_cpu`` (names of heavy nodes that a
  non-CPU session left on CPU), from :mod:`lofi_daemon.pipeline.placement`; each graph with such
  nodes is also named in a warning.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from lofi_daemon.cli.device_memory import DeviceMemoryMonitor
from lofi_daemon.pipeline import placement as node_placement
from lofi_daemon.pipeline import providers as provider_choice

PHASES: Final = ("encode", "diffusion", "decode", "total")


def add_figure_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--check-placement",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="after the runs, create each graph's session once more and report which provider "
        "runs its nodes, warning about heavy nodes left on CPU (default: on when the runs used "
        "a provider other than CPU)",
    )


def placement_wanted(args: argparse.Namespace, providers_in_use: list[str]) -> bool:
    """``--check-placement`` as given, else on when the runs used a provider other than CPU."""
    chosen: bool | None = getattr(args, "check_placement", None)
    if chosen is not None:
        return chosen
    return any(provider != provider_choice.CPU for provider in providers_in_use)


def rtf_per_phase(timings: Mapping[str, float], audio_sec: float) -> dict[str, float | None]:
    """Audio seconds over each phase's seconds (``null`` for a phase that took no time)."""
    return {
        phase: round(audio_sec / timings[phase], 2) if timings.get(phase) else None
        for phase in PHASES
    }


def load_times(engine: Any) -> dict[str, float]:
    """The engine's session-creation seconds per graph, rounded."""
    times: dict[str, float] = engine.session_load_times()
    return {graph: round(sec, 3) for graph, sec in sorted(times.items())}


def loads_in_run(before: Mapping[str, float], after: Mapping[str, float]) -> float:
    """Seconds of the session creations between two ``session_load_times()`` snapshots: a graph
    whose entry is new or changed was created again (a resident session keeps its entry)."""
    return sum(sec for graph, sec in after.items() if before.get(graph) != sec)


def memory_monitor(provider: str) -> DeviceMemoryMonitor:
    """A monitor that samples the GPUs unless only CPU was asked for (then it reports null)."""
    if provider_choice.requested_providers(provider)[0] == provider_choice.CPU:
        return DeviceMemoryMonitor(find=False, reason="the CPU provider uses no device memory")
    return DeviceMemoryMonitor()


def check_placement(
    graphs: Mapping[str, Path], provider: str, threads: int | None
) -> dict[str, dict[str, Any]]:
    """Every graph's placement report (one extra session each, created and dropped in turn)."""
    report: dict[str, dict[str, Any]] = {}
    for graph, path in graphs.items():
        placed = node_placement.session_placement(path, provider, threads)
        node_placement.warn_heavy_on_cpu(graph, placed)
        report[graph] = placed.report()
    return report


def engine_graphs(engine: Any) -> dict[str, Path]:
    """Graph name → file of an engine's installed model set (v1 or turbo manifests alike)."""
    manifest = engine.manifest
    return {graph: manifest.graph_path(graph) for graph in manifest.graphs}


def add_figures(
    report: dict[str, Any],
    engine: Any,
    monitor: DeviceMemoryMonitor,
    args: argparse.Namespace,
) -> None:
    """Put the shared figures into ``report`` (placement last: it closes the engine, then creates
    the sessions again; read ``engine.providers_in_use()`` before)."""
    report["session_load_sec"] = load_times(engine)
    report["device_memory"] = monitor.report()
    if placement_wanted(args, engine.providers_in_use()):
        graphs = engine_graphs(engine)
        engine.close()  # drop the resident sessions first: never two copies of a graph in memory
        report["placement"] = check_placement(graphs, args.provider, args.threads)


def print_figures(report: Mapping[str, Any]) -> None:
    """Load times, RTFs (of the mean run) and peak device memory on stderr, for reading."""
    lines = [f"{'graph':>20}  {'session_load_sec':>16}"]
    for graph, sec in report.get("session_load_sec", {}).items():
        lines.append(f"{graph:>20}  {sec:>16.3f}")
    rtf = report.get("rtf")
    if rtf:
        lines.append("  ".join(f"{'rtf_' + phase:>14}" for phase in PHASES))
        lines.append(
            "  ".join(f"{'-' if rtf[p] is None else f'{rtf[p]:.2f}x':>14}" for p in PHASES)
        )
    memory = report.get("device_memory")
    if memory is not None:
        peak = memory.get("peak_mib")
        lines.append(
            f"peak device memory: {peak:.0f} MiB ({memory['peak_above_baseline_mib']:.0f} above "
            f"the {memory['baseline_mib']:.0f} MiB before)"
            if peak is not None
            else f"peak device memory: not measured ({memory.get('reason', '')})"
        )
    for graph, placed in report.get("placement", {}).items():
        heavy = placed["heavy_on_cpu"]
        counts = ", ".join(f"{p}: {n}" for p, n in placed["provider_counts"].items())
        lines.append(
            f"placement {graph}: {counts}" + (f"; {len(heavy)} heavy on CPU" if heavy else "")
        )
    sys.stderr.write("\n".join(lines) + "\n")
