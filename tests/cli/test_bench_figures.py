"""The figures every bench report shares: session-creation seconds per graph, RTF per phase,
peak device memory and node placement."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lofi_daemon.cli import bench_figures
from lofi_daemon.cli.bench_figures import (
    loads_in_run,
    placement_wanted,
    print_figures,
    rtf_per_phase,
)
from lofi_daemon.cli.device_memory import DeviceMemoryMonitor
from lofi_daemon.pipeline.placement import PlacedNode, Placement


def test_rtf_is_audio_seconds_over_phase_seconds() -> None:
    timings = {"encode": 0.5, "diffusion": 2.0, "decode": 0.0, "total": 3.0, "write": 0.1}
    assert rtf_per_phase(timings, 60.0) == {
        "encode": 120.0,
        "diffusion": 30.0,
        "decode": None,  # took no time
        "total": 20.0,
    }


def test_loads_in_run_counts_new_and_changed_entries() -> None:
    before = {"denoiser": 9.0, "vocoder": 0.5}
    after = {"denoiser": 9.0, "vocoder": 0.25, "text_encoder": 1.0}
    assert loads_in_run(before, after) == 1.25  # the resident denoiser was not created again


def test_placement_is_checked_by_default_only_off_cpu() -> None:
    args = argparse.Namespace(check_placement=None)
    assert not placement_wanted(args, ["CPUExecutionProvider"])
    assert placement_wanted(args, ["CUDAExecutionProvider"])
    assert placement_wanted(argparse.Namespace(check_placement=True), ["CPUExecutionProvider"])
    off = argparse.Namespace(check_placement=False)
    assert not placement_wanted(off, ["CUDAExecutionProvider"])


class FakeEngine:
    closed = False

    def close(self) -> None:
        self.closed = True

    def session_load_times(self) -> dict[str, float]:
        return {"vocoder": 0.12345, "denoiser": 9.87654}

    def providers_in_use(self) -> list[str]:
        return ["CUDAExecutionProvider"]

    @property
    def manifest(self) -> Any:
        class Manifest:
            graphs = ("denoiser", "vocoder")

            def graph_path(self, graph: str) -> Path:
                return Path(f"/m/{graph}.onnx")

        return Manifest()


def test_figures_name_the_heavy_nodes_left_on_cpu(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capsys: Any
) -> None:
    cuda, cpu = "CUDAExecutionProvider", "CPUExecutionProvider"
    seen: list[tuple[Path, str]] = []

    def fake_placement(path: Path, provider: str, threads: int | None) -> Placement:
        seen.append((path, provider))
        nodes = [PlacedNode("mm", "MatMul", cuda), PlacedNode("shape", "Shape", cpu)]
        if path.name == "vocoder.onnx":
            nodes.append(PlacedNode("up0", "ConvTranspose", cpu))
        return Placement(tuple(nodes), "assignment", (cuda, cpu))

    monkeypatch.setattr(bench_figures.node_placement, "session_placement", fake_placement)
    report: dict[str, Any] = {
        "rtf": {"encode": 100.0, "diffusion": 80.0, "decode": None, "total": 61.5}
    }
    monitor = DeviceMemoryMonitor(lambda: [2048.0], source="fake")
    monitor.start()
    monitor.stop()
    args = argparse.Namespace(check_placement=None, provider="cuda", threads=None)
    engine = FakeEngine()
    with caplog.at_level(logging.WARNING):
        bench_figures.add_figures(report, engine, monitor, args)
    assert engine.closed  # the resident sessions went before the placement sessions came
    assert seen == [(Path("/m/denoiser.onnx"), "cuda"), (Path("/m/vocoder.onnx"), "cuda")]
    assert report["session_load_sec"] == {"denoiser": 9.877, "vocoder": 0.123}
    assert report["device_memory"]["peak_mib"] == 2048.0
    assert report["placement"]["denoiser"]["heavy_on_cpu"] == []
    assert report["placement"]["vocoder"]["heavy_on_cpu"] == ["up0 (ConvTranspose)"]
    assert report["placement"]["vocoder"]["provider_counts"] == {cpu: 2, cuda: 1}
    assert any(
        "vocoder: 1 heavy node(s)" in m and "up0 (ConvTranspose)" in m for m in caplog.messages
    )
    print_figures(report)
    table = capsys.readouterr().err
    assert "denoiser             9.877" in table and "61.50x" in table
    assert "peak device memory: 2048 MiB" in table and "1 heavy on CPU" in table


def test_bench_reports_load_times_rtf_memory_and_placement(tiny_models: Path) -> None:
    command = [sys.executable, "-m", "lofi_daemon", "bench", "--models", str(tiny_models)]
    command += ["--provider", "cpu", "--duration", "5", "--steps", "2", "--runs", "2"]
    command += ["--keep-loaded", "--check-placement", "--threads", "1"]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    graphs = {"text_encoder", "condition_encoder", "denoiser", "dcae_decoder", "vocoder"}
    assert set(report["session_load_sec"]) == graphs
    assert all(sec > 0 for sec in report["session_load_sec"].values())
    first, second = report["runs"]
    assert first["session_load_sec"] >= report["session_load_sec"]["denoiser"]
    assert second["session_load_sec"] < first["session_load_sec"]  # the denoiser stayed loaded
    for row in (first, second, {"rtf": report["rtf"]}):
        assert set(row["rtf"]) == {"encode", "diffusion", "decode", "total"}
        assert all(value > 0 for value in row["rtf"].values())
    assert report["rtf"]["total"] < report["rtf"]["diffusion"]
    assert report["device_memory"] == {
        "peak_mib": None,
        "reason": "the CPU provider uses no device memory",
    }
    assert set(report["placement"]) >= graphs
    for placed in report["placement"].values():
        assert set(placed["provider_counts"]) == {"CPUExecutionProvider"}
        assert placed["heavy_on_cpu"] == []
    assert "session_load_sec" in result.stderr and "rtf_total" in result.stderr


def test_bench_refuses_zero_runs(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "lofi_daemon", "bench", "--models", str(tmp_path)]
    result = subprocess.run(
        [*command, "--runs", "0"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 1 and result.stdout == ""
    assert "--runs must be at least 1, got 0" in result.stderr


def test_the_backend_comparison_carries_the_figures(tiny_models: Path) -> None:
    from lofi_daemon.cli.bench_backends import time_backend

    job = {
        "backend": "ace-step",
        "models_dir": str(tiny_models),
        "duration": 5.0,
        "steps": 2,
        "runs": 1,
        "provider": "cpu",
        "threads": 1,
        "keep_loaded": False,
        "check_placement": True,
    }
    result = time_backend(job)
    assert result["providers"] == ["CPUExecutionProvider"]
    assert set(result["rtf"]) == {"encode", "diffusion", "decode", "total"}
    assert all(value > 0 for value in result["rtf"].values())
    assert result["session_load_sec"]["denoiser"] > 0
    assert result["device_memory"]["peak_mib"] is None
    assert result["placement"]["denoiser"]["heavy_on_cpu"] == []
