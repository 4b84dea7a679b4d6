"""The figures of ``bench/gpu_check.sh`` as one JSON object (run by the script; see its header).

``environment --out FILE``: the machine (GPU name, driver and memory from nvidia-smi, CPU count),
the onnxruntime version and providers, the torch version and whether CUDA is visible to it.

``summary --work DIR --out FILE ...``: reads what the script left in DIR (``steps.jsonl``,
``environment.json``, ``bench-fp32.json``, ``bench-fp16.json``, ``torch.json``, ``logs/``) and
writes the figures:

* ``onnxruntime.<precision>``: the warm run (the second; the first is ``cold``) of
  ``lofi-daemon bench --runs 2 --keep-loaded``: seconds and RTF (audio seconds / seconds) per
  phase, the seconds of session creations inside that run (the text and condition encoders are
  created per run) and the total RTF without them, session-creation seconds per graph, peak
  device memory, node placement (heavy nodes left on CPU);
* ``torch``: ``bench/torch_pipeline.py`` (bf16, warm);
* ``goals``: RTF ≥ 60 for fp16 (total, warm) and ONNX Runtime faster than torch (warm totals),
  each ``met`` true/false, or null when not measured;
* ``steps``: every step's exit status and seconds, with the end of the log of a failed one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

SCHEMA = "lofi-gpu-check/1"
RTF_GOAL = 60.0
PRECISIONS = ("fp32", "fp16")


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def environment() -> dict[str, Any]:
    env: dict[str, Any] = {"cpu_count": os.cpu_count(), "python": sys.version.split()[0]}
    smi = shutil.which("nvidia-smi")
    if smi:
        query = "--query-gpu=name,driver_version,memory.total"
        done = subprocess.run(
            [smi, query, "--format=csv,noheader"], capture_output=True, text=True, check=False
        )
        env["gpus"] = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    else:
        env["gpus"] = []
    try:
        import onnxruntime as ort

        env["onnxruntime"] = ort.__version__
        env["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError as exc:
        env["onnxruntime"] = f"missing: {exc}"
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_cuda"] = torch.cuda.is_available()
    except ImportError as exc:
        env["torch"] = f"missing: {exc}"
    return env


def _phase_figures(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "sec": {phase: run.get(phase) for phase in ("encode", "diffusion", "decode", "total")},
        "rtf": run.get("rtf"),
        "session_load_sec_in_run": run.get("session_load_sec"),
        "rtf_total_without_loads": run.get("rtf_total_without_loads"),
    }


def ort_figures(report: dict[str, Any]) -> dict[str, Any]:
    runs = report.get("runs") or []
    placement = report.get("placement") or {}
    return {
        "warm": _phase_figures(runs[-1]) if runs else None,
        "cold": _phase_figures(runs[0]) if runs else None,
        "audio_duration_sec": report.get("duration_sec"),
        "steps": report.get("steps"),
        "providers": report.get("providers"),
        "session_load_sec": report.get("session_load_sec"),
        "device_memory": report.get("device_memory"),
        "peak_rss_mb": report.get("peak_rss_mb"),
        "placement": {
            graph: {"provider_counts": p["provider_counts"], "heavy_on_cpu": p["heavy_on_cpu"]}
            for graph, p in placement.items()
        },
        "heavy_on_cpu_count": sum(len(p["heavy_on_cpu"]) for p in placement.values()),
    }


def _total(figures: dict[str, Any] | None) -> float | None:
    if not figures or not figures.get("warm"):
        return None
    total = figures["warm"]["sec"]["total"]
    return float(total) if total else None


def goals(ort: dict[str, dict[str, Any]], torch_report: dict[str, Any] | None) -> dict[str, Any]:
    """The two goals on the warm totals. The ONNX Runtime run still creates the two encoder
    sessions inside its encode phase (only the denoiser and decoders stay loaded) while the torch
    figures hold no loading at all: ``measured_without_loads`` leaves those creations out."""
    fp16 = ort.get("fp16")
    warm16 = fp16["warm"] if fp16 and fp16.get("warm") else None
    rtf16 = warm16["rtf"]["total"] if warm16 else None
    torch_total = (torch_report or {}).get("sec", {}).get("total")
    ort_total = _total(fp16) or _total(ort.get("fp32"))
    return {
        "rtf_fp16_at_least_60x": {
            "target": RTF_GOAL,
            "measured": rtf16,
            "met": None if rtf16 is None else rtf16 >= RTF_GOAL,
            "measured_without_loads": warm16.get("rtf_total_without_loads") if warm16 else None,
        },
        "ort_faster_than_torch": {
            "ort_total_sec": ort_total,
            "torch_total_sec": torch_total,
            "speedup": round(torch_total / ort_total, 3) if ort_total and torch_total else None,
            "met": None if not (ort_total and torch_total) else ort_total < torch_total,
        },
    }


def summary(args: argparse.Namespace) -> dict[str, Any]:
    work: Path = args.work
    steps = []
    for line in (work / "steps.jsonl").read_text(encoding="utf-8").splitlines():
        step = json.loads(line)
        if step["rc"] != 0:
            log = work / "logs" / f"{step['step']}.log"
            step["log_tail"] = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        steps.append(step)
    ort: dict[str, dict[str, Any]] = {}
    for precision in PRECISIONS:
        report = _read(work / f"bench-{precision}.json")
        if isinstance(report, dict):
            ort[precision] = ort_figures(report)
    torch_report = _read(work / "torch.json") if args.torch else None
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "ok": all(s["rc"] == 0 for s in steps)
        and "fp32" in ort
        and ("fp16" in ort or not args.has_fp16)
        and (torch_report is not None or not args.torch),
        "settings": {
            "provider": args.provider,
            "preset": args.preset,
            "duration_sec": args.duration,
            "steps": args.steps,
            "fp16_exported": bool(args.has_fp16),
        },
        "wall_sec": args.wall_sec,
        "environment": _read(work / "environment.json"),
        "steps": steps,
        "onnxruntime": ort,
        "torch": torch_report,
        # fp16 vs fp32 graph by graph on the benchmark's provider (lofi-export compare-precision)
        "precision": _read(work / "precision.json"),
        "not_measured": [
            *(
                f"onnxruntime {p}"
                for p in PRECISIONS
                if p not in ort and (p == "fp32" or args.has_fp16)
            ),
            *(["torch"] if args.torch and torch_report is None else []),
        ],
        "goals": goals(ort, torch_report),
    }
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="bench/gpu_check.sh's figures")
    sub = parser.add_subparsers(dest="command", required=True)
    env = sub.add_parser("environment")
    env.add_argument("--out", type=Path, required=True)
    summ = sub.add_parser("summary")
    summ.add_argument("--work", type=Path, required=True)
    summ.add_argument("--out", type=Path, required=True)
    summ.add_argument("--provider", required=True)
    summ.add_argument("--preset", required=True)
    summ.add_argument("--duration", type=float, required=True)
    summ.add_argument("--steps", type=int, required=True)
    summ.add_argument("--has-fp16", type=int, default=0)
    summ.add_argument("--torch", type=int, default=1, help="0 when the torch step was skipped")
    summ.add_argument("--wall-sec", type=int, default=None)
    args = parser.parse_args(argv)
    if args.command == "environment":
        report = environment()
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        return 0
    report = summary(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    tmp.replace(args.out)  # never a half-written JSON
    sys.stderr.write(f"gpu_check: figures in {args.out}\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
