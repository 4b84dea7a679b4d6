"""``bench/gpu_check.sh`` end to end on CPU with small shapes: every step runs and the one JSON
of figures has every figure, with sane values.

The checkpoint and its fp32 model set come from the shared fixtures (building them is the same
``lofi-export`` path the fixtures already exercise); the script makes the fp16 set itself, times
both with ``lofi-daemon bench`` and the torch pipeline in bf16, and writes the summary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PHASES = {"encode", "diffusion", "decode", "total"}


@pytest.mark.slow
def test_gpu_check_runs_whole_on_cpu(
    tiny_checkpoint: Path, tiny_models: Path, tmp_path: Path
) -> None:
    out = tmp_path / "figures" / "gpu_check.json"
    command = [str(ROOT / "bench" / "gpu_check.sh"), "--provider", "cpu", "--preset", "tiny"]
    command += ["--duration", "5", "--steps", "3", "--threads", "1", "--work", str(tmp_path / "w")]
    command += ["--checkpoint", str(tiny_checkpoint), "--models", str(tiny_models)]
    command += ["--out", str(out)]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert result.returncode == 0, result.stderr + (out.read_text() if out.exists() else "")
    figures = json.loads(out.read_text())
    assert figures["schema"] == "lofi-gpu-check/1" and figures["ok"] is True
    assert figures["settings"] == {
        "provider": "cpu",
        "preset": "tiny",
        "duration_sec": 5.0,
        "steps": 3,
        "fp16_exported": True,
    }
    assert [s["step"] for s in figures["steps"]] == [
        "environment",
        "export_fp16",
        "bench_fp32",
        "bench_fp16",
        "precision",
        "torch",
    ]
    assert all(s["rc"] == 0 and s["sec"] >= 0 for s in figures["steps"])
    assert figures["environment"]["onnxruntime"] and figures["environment"]["cpu_count"] >= 1
    for precision in ("fp32", "fp16"):
        ort = figures["onnxruntime"][precision]
        assert ort["steps"] == 3 and ort["providers"] == ["CPUExecutionProvider"]
        for run in ("warm", "cold"):
            assert set(ort[run]["sec"]) == set(ort[run]["rtf"]) == PHASES
            assert all(v > 0 for v in ort[run]["sec"].values())
            assert all(v > 0 for v in ort[run]["rtf"].values())
            assert ort[run]["rtf_total_without_loads"] >= ort[run]["rtf"]["total"]
        # the denoiser stays loaded: the warm run creates fewer sessions
        assert ort["warm"]["session_load_sec_in_run"] < ort["cold"]["session_load_sec_in_run"]
        assert set(ort["session_load_sec"]) >= {"text_encoder", "denoiser", "vocoder"}
        assert ort["device_memory"]["peak_mib"] is None and ort["device_memory"]["reason"]
        assert ort["heavy_on_cpu_count"] == 0 and "denoiser" in ort["placement"]
    precision = figures["precision"]
    assert precision["provider"] == "cpu" and precision["fp16"]["precision"] == "fp16"
    assert precision["graphs"]["denoiser"]["snr_db"] > 30
    torch = figures["torch"]
    assert torch["dtype"] == "bfloat16" and torch["device"] == "cpu" and torch["steps"] == 3
    assert 4.5 < torch["audio_sec"] <= 5.0
    assert set(torch["sec"]) == set(torch["rtf"]) == PHASES
    assert all(v > 0 for v in torch["rtf"].values())
    goals = figures["goals"]
    rtf = goals["rtf_fp16_at_least_60x"]
    assert (
        rtf["target"] == 60.0
        and rtf["measured"] == figures["onnxruntime"]["fp16"]["warm"]["rtf"]["total"]
    )
    assert rtf["met"] is (rtf["measured"] >= 60.0)
    faster = goals["ort_faster_than_torch"]
    assert faster["torch_total_sec"] == torch["sec"]["total"] and faster["speedup"] > 0
    assert faster["met"] is (faster["ort_total_sec"] < faster["torch_total_sec"])
