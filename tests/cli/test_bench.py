"""``lofi-daemon bench --task extend`` on the tiny models: one JSON report with the encode cost of
every source length and the per-step cost of every (source, extension) pair."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lofi_daemon import errors
from lofi_daemon.__main__ import build_parser
from lofi_daemon.cli import bench_backends as bench_backends_module
from lofi_daemon.cli.bench import ENCODE_COLUMNS, EXTEND_COLUMNS
from lofi_daemon.cli.bench_backends import check_bench_args
from lofi_daemon.errors import LofiError


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lofi_daemon", "bench", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_extend_bench_reports_encode_and_step_costs(tiny_models: Path) -> None:
    grid = ["--sources", "5.5,6.5", "--extensions", "1", "--steps", "2", "--threads", "1"]
    result = bench("--task", "extend", "--models", str(tiny_models), *grid)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["task"], report["steps"]) == ("extend", 2)
    assert report["providers"] and report["peak_rss_mb"] > 0
    sources = report["sources"]
    assert [row["source_sec"] for row in sources] == [5.5, 6.5]
    for row in sources:
        assert set(row) == set(ENCODE_COLUMNS)
        assert row["frames"] == int(row["source_sec"] * 44100 / 4096) + 1  # padded to 4096
        assert isinstance(row["encode_sec"], float) and row["encode_sec"] >= 0
    runs = report["runs"]
    assert [(r["source_sec"], r["extend_sec"]) for r in runs] == [(5.5, 1.0), (6.5, 1.0)]
    frames = {row["source_sec"]: row["frames"] for row in sources}
    for row in runs:
        assert set(row) == set(EXTEND_COLUMNS)
        assert row["frames"] == frames[row["source_sec"]] + int(row["extend_sec"] * 44100 / 4096)
        for name in ("diffusion_sec", "step_sec", "decode_sec", "total_sec"):
            assert isinstance(row[name], float) and row[name] > 0, name
    assert "step_sec" in result.stderr  # the table for reading


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--task", "edit"], "bench times --task text2music or extend, not 'edit'"),
        (["--task", "extend", "--sources", "5,x"], "--sources must be positive numbers"),
        (["--task", "extend", "--extensions", "0"], "--extensions must be positive numbers"),
    ],
)
def test_bench_refuses_bad_options(tmp_path: Path, args: list[str], fragment: str) -> None:
    result = bench(*args, "--models", str(tmp_path))
    assert result.returncode == 1 and result.stdout == ""
    assert fragment in result.stderr


# -- --backend -----------------------------------------------------------------------------


def bench_args(*args: str) -> argparse.Namespace:
    return build_parser().parse_args(["bench", *args])


def test_backend_options_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOFI_MODELS_DIR_ACE_STEP_1_5", raising=False)
    args = bench_args(
        "--backend", "ace-step-1.5", "--backend", f"ace-step={tmp_path / 'v1'}", "--models", "M"
    )
    assert args.backend == ["ace-step-1.5", f"ace-step={tmp_path / 'v1'}"]
    assert check_bench_args(args) == [
        ("ace-step-1.5", Path("ace-step-1.5")),  # beside --models M
        ("ace-step", tmp_path / "v1"),
    ]
    assert bench_args().backend is None


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["--backend", "musicgen"], errors.INVALID_BACKEND, "unknown backend 'musicgen'"),
        (
            ["--backend", "ace-step", "--backend", "ace-step=/x"],
            errors.INVALID_PARAMETER,
            "--backend ace-step is given twice",
        ),
        (["--backend", "ace-step", "--task", "extend"], errors.INVALID_PARAMETER, "text2music"),
        (["--backend", "ace-step", "--runs", "0"], errors.INVALID_PARAMETER, "--runs"),
        (
            ["--backend", "ace-step-1.5", "--backend", "ace-step", "--duration", "300"],
            errors.INVALID_DURATION,
            "of the backend ace-step; every backend runs the same duration",
        ),
        (["--backend", "ace-step", "--radio", "2"], errors.INVALID_PARAMETER, "--radio"),
    ],
)
def test_backend_options_are_checked(args: list[str], code: int, fragment: str) -> None:
    with pytest.raises(LofiError) as caught:
        check_bench_args(bench_args(*args))
    assert caught.value.code == code and fragment in caught.value.message


def fake_result(backend: str, total: float, rss: float) -> dict[str, Any]:
    mean = {"encode": 0.1, "diffusion": total - 0.3, "decode": 0.2, "total": total}
    return {
        "backend": backend,
        "steps": 8,
        "mean": mean,
        "sec_per_audio_sec": total / 10,
        "peak_rss_mb": rss,
    }


def test_backends_are_timed_in_order_and_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    jobs: list[dict[str, Any]] = []

    def child(job: dict[str, Any]) -> dict[str, Any]:
        jobs.append(job)
        return fake_result(job["backend"], 2.0 if job["backend"] == "ace-step" else 0.5, 100.0)

    monkeypatch.setattr(bench_backends_module, "_run_child", child)
    args = bench_args("--backend", "ace-step", "--backend", "ace-step-1.5=/m", "--duration", "10")
    report = bench_backends_module.bench_backends(args)
    assert [job["backend"] for job in jobs] == ["ace-step", "ace-step-1.5"]
    assert jobs[1]["models_dir"] == "/m" and jobs[0]["duration"] == jobs[1]["duration"] == 10
    assert report["ratios"] == {
        "ace-step-1.5/ace-step": {
            "encode": 1.0,
            "diffusion": 0.118,
            "decode": 1.0,
            "total": 0.25,
            "peak_rss": 1.0,
        }
    }


def test_a_backend_child_reports_its_error(tmp_path: Path) -> None:
    job = {
        "backend": "ace-step",
        "models_dir": str(tmp_path / "none"),
        "duration": 5.0,
        "steps": 2,
        "runs": 1,
        "provider": "cpu",
        "threads": 1,
        "keep_loaded": False,
    }
    with pytest.raises(LofiError) as caught:
        bench_backends_module._run_child(job)
    assert caught.value.code == errors.MODEL_NOT_FOUND
    assert caught.value.message.startswith("ace-step: ")


def test_the_backend_bench_times_both_backends_in_one_run(
    tiny_models: Path, turbo_models: Path
) -> None:
    result = bench(
        "--backend", f"ace-step-1.5={turbo_models}",
        "--backend", f"ace-step={tiny_models}",
        "--duration", "5", "--steps", "2", "--threads", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    turbo, v1 = report["backends"]
    assert (turbo["backend"], turbo["steps"], v1["backend"], v1["steps"]) == (
        "ace-step-1.5",
        8,
        "ace-step",
        2,
    )
    for row in (turbo, v1):
        for phase in ("encode", "diffusion", "decode", "total"):
            assert row["mean"][phase] > 0 and row["runs"][0][phase] > 0
        assert row["peak_rss_mb"] > 0 and row["sec_per_audio_sec"] > 0 and row["providers"]
    assert turbo["audio_sec"] == 5.0 and report["duration_sec"] == 5.0
    ratio = report["ratios"]["ace-step/ace-step-1.5"]
    assert ratio["total"] == pytest.approx(v1["mean"]["total"] / turbo["mean"]["total"], rel=0.01)
    assert "sec_per_audio_sec" in result.stderr  # the table for reading
