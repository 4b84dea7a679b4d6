"""``bench/gpu_summary.py summary`` when steps failed: the JSON still comes, and says what."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_summary() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_summary", ROOT / "bench" / "gpu_summary.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_failed_step_gives_its_log_and_unmet_goals_stay_null(tmp_path: Path) -> None:
    gpu_summary = load_summary()
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "bench_fp16.log").write_text("lofi-daemon: error: CUDA out of memory\n")
    steps = [{"step": "bench_fp32", "rc": 0, "sec": 3.0}, {"step": "bench_fp16", "rc": 1, "sec": 1}]
    (tmp_path / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    run = {"encode": 0.5, "diffusion": 1.0, "decode": 0.5, "total": 2.0, "rtf": {"total": 30.0}}
    bench = {"runs": [run, run], "duration_sec": 60.0, "steps": 27, "placement": {}}
    (tmp_path / "bench-fp32.json").write_text(json.dumps(bench))
    (tmp_path / "torch.json").write_text(json.dumps({"sec": {"total": 4.0}}))
    out = tmp_path / "figures.json"
    argv = ["summary", "--work", str(tmp_path), "--out", str(out), "--provider", "cuda"]
    argv += ["--preset", "full", "--duration", "60", "--steps", "27", "--has-fp16", "1"]
    assert gpu_summary.main(argv) == 1
    figures = json.loads(out.read_text())
    assert figures["ok"] is False
    assert figures["steps"][1]["log_tail"] == "lofi-daemon: error: CUDA out of memory\n"
    assert "log_tail" not in figures["steps"][0]
    assert figures["not_measured"] == ["onnxruntime fp16"]
    assert figures["goals"]["rtf_fp16_at_least_60x"] == {
        "target": 60.0,
        "measured": None,
        "met": None,
        "measured_without_loads": None,
    }
    faster = figures["goals"]["ort_faster_than_torch"]  # fp32 stands in for the missing fp16
    assert faster == {"ort_total_sec": 2.0, "torch_total_sec": 4.0, "speedup": 2.0, "met": True}
