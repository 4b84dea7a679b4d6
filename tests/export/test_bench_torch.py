"""``lofi-export bench-torch`` (export/bench_torch.py) and its one caller in the runtime,
``lofi-daemon bench --checkpoint``, which runs it as a child process instead of importing torch."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lofi_daemon.cli import bench as generate
from lofi_daemon.errors import LofiError

GRAPHS = {"text_encoder", "condition_encoder", "denoiser", "dcae_decoder", "vocoder"}
FIELDS = {"onnx_sec", "torch_sec", "onnx_over_torch", "max_abs_diff"}


def _check_report(report: dict[str, Any]) -> None:
    assert set(report) == GRAPHS
    for graph, row in report.items():
        assert set(row) == FIELDS, graph
        assert row["onnx_sec"] > 0 and row["torch_sec"] > 0, graph
        assert row["max_abs_diff"] < 1e-3, graph


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, check=False, text=True, timeout=600
    )


def test_bench_torch_prints_one_json_object(tiny_checkpoint: Path, tiny_models: Path) -> None:
    result = _run(
        *("-m", "lofi_export", "bench-torch", str(tiny_checkpoint), str(tiny_models)),
        *("--frames", "6", "--repeats", "1", "--threads", "1"),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    _check_report(json.loads(lines[0]))


def test_bench_torch_names_a_bad_checkpoint(tiny_models: Path, tmp_path: Path) -> None:
    result = _run(
        *("-m", "lofi_export", "bench-torch", str(tmp_path / "nowhere"), str(tiny_models)),
        *("--duration", "1"),
    )
    assert result.returncode == 1
    assert result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("lofi-export: error: ") and "does not exist" in last


def test_daemon_bench_compares_with_torch(tiny_checkpoint: Path, tiny_models: Path) -> None:
    result = _run(
        *("-m", "lofi_daemon", "bench", "--models", str(tiny_models), "--threads", "1"),
        *("--checkpoint", str(tiny_checkpoint), "--duration", "5", "--steps", "1"),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"duration_sec", "steps", "runs", "providers", "peak_rss_mb"} <= set(report)
    _check_report(report["onnx_vs_torch"])


def test_daemon_bench_reports_the_child_error(tiny_models: Path, tmp_path: Path) -> None:
    with pytest.raises(LofiError, match=r"bench-torch failed: .*does not exist"):
        generate.compare_with_torch(
            tmp_path / "nowhere", tiny_models, frames=4, provider="cpu", threads=1
        )


@pytest.mark.parametrize("package", ["torch", "lofi_export"])
def test_daemon_bench_without_the_export_extra(
    package: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == package else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(LofiError) as caught:
        generate.compare_with_torch(tmp_path, tmp_path, frames=4, provider="auto", threads=None)
    assert caught.value.message == (
        f"--checkpoint needs the export extra (No module named {package!r}); "
        'install it with: pip install -e ".[export]"'
    )
