"""``lofi-daemon bench --task extend`` on the tiny models: one JSON report with the encode cost of
every source length and the per-step cost of every (source, extension) pair."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lofi_daemon.cli.bench import ENCODE_COLUMNS, EXTEND_COLUMNS


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
