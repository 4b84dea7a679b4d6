"""``lofi-daemon bench --radio N``: continuation segments against plain segments of the same length
on one engine, their real-time factors and what the station needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lofi_daemon.__main__ import main
from lofi_daemon.cli.bench_radio import RadioBench, _summary, describe
from lofi_daemon.radio.joins import SAMPLE_RATE, context_samples

FRAME_SEC = 4096 / 44100
TIMES = ("wall_sec", "encode_sec", "diffusion_sec", "decode_sec")


def test_radio_bench_reports_both_kinds_and_the_station_verdict(tiny_models: Path) -> None:
    args = ["--radio", "1", "--segment", "5", "--context", "5", "--steps", "4", "--threads", "1"]
    result = subprocess.run(
        [sys.executable, "-m", "lofi_daemon", "bench", "--models", str(tiny_models), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["task"], report["segments"], report["steps"]) == ("radio", 1, 4)
    assert (report["segment_sec"], report["context_sec"], report["context_frames"]) == (5, 5, 53)
    assert report["scheduler"] == "euler" and report["providers"] and report["peak_rss_mb"] > 0
    [plain] = report["runs"]["plain"]
    [chain] = report["runs"]["continuation"]
    assert plain["frames"] == 53  # int(5 * 44100 / 4096)
    assert chain["frames"] == 53 + 53  # the 5 s context + the 5 s segment
    assert plain["audio_sec"] == pytest.approx(53 * FRAME_SEC, abs=1e-3)
    added = (round((53 + 53) * FRAME_SEC * SAMPLE_RATE) - context_samples(53)) / SAMPLE_RATE
    assert chain["audio_sec"] == pytest.approx(added, abs=1e-3)
    for row in (plain, chain):
        for name in TIMES:
            assert isinstance(row[name], float) and row[name] > 0, name
    assert chain["render_sec"] > 0
    # one run of each kind: the median and the minimum are that run
    assert report["plain_sec"] == {"median": plain["wall_sec"], "min": plain["wall_sec"]}
    assert report["continuation_sec"]["median"] == chain["wall_sec"]
    assert report["render_sec"]["min"] == chain["render_sec"]
    ratio = chain["wall_sec"] / plain["wall_sec"]
    assert report["continuation_vs_plain"] == pytest.approx(ratio, abs=1e-3)
    assert report["continuation_rtf"] == pytest.approx(added / chain["wall_sec"], rel=1e-3)
    station = report["station"]
    rtf = added / (chain["wall_sec"] + chain["render_sec"])
    assert station["rtf"] == pytest.approx(rtf, rel=1e-3)
    assert station["needed_rtf"] == 1.0
    assert station["margin"] == pytest.approx(rtf - 1.0, abs=2e-3)
    assert station["sustainable"] is (rtf >= 1.0)
    assert (station["ahead"], station["ahead_sec"]) == (2, 10)
    assert report["first_segment_sec"] > 0
    assert report["first_segment_audio_sec"] == pytest.approx(53 * FRAME_SEC, abs=1e-3)
    for text in ("continuation / plain", "render + FLAC write", "the station needs >= 1.0"):
        assert text in result.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--radio", "0"], "--radio needs at least 1 segment, got 0"),
        (["--radio", "1", "--segment", "4.9"], "--segment must be 5 to 120 seconds, got 4.9"),
        (["--radio", "1", "--segment", "121"], "--segment must be 5 to 120 seconds, got 121"),
        (["--radio", "1", "--segment", "nan"], "--segment must be 5 to 120 seconds, got nan"),
        (["--radio", "1", "--context", "4"], "--context must be 5 seconds to --segment (30)"),
        (
            ["--radio", "1", "--segment", "10", "--context", "11"],
            "--context must be 5 seconds to --segment (10), got 11",
        ),
        (["--radio", "2", "--task", "extend"], "it does not take --task extend"),
    ],
)
def test_radio_bench_refuses_bad_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], fragment: str
) -> None:
    # The options are checked before any model is opened (the folder holds none).
    assert main(["bench", *args, "--models", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and fragment in captured.err


def rows(wall: float, audio: float, render: float | None = None) -> dict[str, float]:
    row = {"wall_sec": wall, "audio_sec": audio}
    return row if render is None else {**row, "render_sec": render}


def test_a_slow_machine_is_told_the_station_cannot_keep_up() -> None:
    bench = RadioBench(segments=3, segment_sec=30.0, context_sec=10.0)
    plain = [rows(40.0, 30.0), rows(38.0, 30.0), rows(44.0, 30.0)]
    chain = [rows(50.0, 30.0, 1.0), rows(58.0, 30.0, 2.0), rows(49.0, 30.0, 1.0)]
    report = _summary(bench, 27, "euler", plain, chain, first_sec=60.0)
    assert report["plain_sec"] == {"median": 40.0, "min": 38.0}
    assert report["continuation_sec"] == {"median": 50.0, "min": 49.0}
    assert report["continuation_vs_plain"] == 1.25
    assert report["continuation_rtf"] == 0.6
    station = report["station"]
    assert station["rtf"] == pytest.approx(30 / 51, abs=1e-3)
    assert station["sustainable"] is False and station["margin"] < 0
    assert station["generated_share"] == pytest.approx(30 / 51, abs=1e-3)
    text = describe(report)
    assert "first segment (cold engine, models loading): 60.000 s" in text
    assert "NOT sustainable here; about 59% of the stream would be new music" in text
    assert "filled from the track library" in text


def test_a_fast_machine_is_told_its_margin() -> None:
    bench = RadioBench(segments=1, segment_sec=30.0, context_sec=30.0)
    report = _summary(
        bench, 27, "euler", [rows(10.0, 30.0)], [rows(14.0, 30.0, 1.0)], first_sec=12.0
    )
    station = report["station"]
    assert (station["rtf"], station["margin"], station["sustainable"]) == (2.0, 1.0, True)
    assert station["generated_share"] == 1.0
    assert "margin +1.00: sustainable; the station works 50% of the time it plays" in describe(
        report
    )
