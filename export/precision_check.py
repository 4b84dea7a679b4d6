"""``lofi-export compare-precision FP32_DIR FP16_DIR``: how far an fp16 set is from its fp32 set.

Each graph of both model directories runs on the same random inputs (shapes from the manifest;
every free dimension set to ``frames``) and the outputs are compared: signal-to-noise ratio in dB
(fp32 output as the signal, the difference as the noise) and the largest absolute difference.
With ``--duration`` both directories also generate one track with the same seed through
``lofi-daemon generate`` and the two waveforms are compared the same way.

On random weights this is a sanity check of the conversion (no overflow, no broken island), not a
claim about the sound of real weights.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from lofi_daemon.pipeline.providers import create_session, requested_providers

from .errors import ExportError

V1_TIMESTEP = 500.0  # v1 denoiser timesteps run 0..1000; 1.5 uses t in [0, 1]


def _manifest(models: Path) -> dict[str, Any]:
    path = models / "manifest.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path}: not a model directory ({exc})") from exc
    return data


def _feeds(spec: list[dict[str, Any]], frames: int, turbo: bool, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    feeds: dict[str, Any] = {}
    for item in spec:
        name, dtype = item["name"], item["dtype"]
        shape = [
            d if isinstance(d, int) else (1 if d == "batch" else frames) for d in item["shape"]
        ]
        if dtype == "int64":
            feeds[name] = np.ones(shape, np.int64) if "mask" in name else rng.integers(3, 90, shape)
        elif name == "timestep":
            feeds[name] = np.full(shape, 0.5 if turbo else V1_TIMESTEP, np.float32)
        elif "scale" in name or "mask" in name:
            feeds[name] = np.ones(shape, np.float32)
        else:
            feeds[name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    """``10·log10(Σref² / Σ(ref−other)²)``; inf when equal."""
    ref = np.asarray(reference, np.float64)
    noise = float(np.sum((ref - np.asarray(other, np.float64)) ** 2))
    signal = float(np.sum(ref**2))
    return float("inf") if noise == 0 else 10 * float(np.log10(signal / noise))


def compare_graphs(
    fp32_dir: Path, fp16_dir: Path, frames: int = 16, provider: str = "cpu"
) -> dict[str, Any]:
    """Per graph: ``snr_db``, ``max_abs`` and the fp32 output's RMS, both sets run on
    ``provider`` (as ``lofi-daemon --provider`` names it)."""
    a, b = _manifest(fp32_dir), _manifest(fp16_dir)
    turbo = a.get("backend") == "ace-step-1.5"
    report: dict[str, Any] = {}
    for name, entry in a["graphs"].items():
        if name not in b["graphs"]:
            raise ExportError(f"{fp16_dir}: has no graph {name!r}")
        feeds = _feeds(entry["inputs"], frames, turbo, seed=len(report))
        outs = []
        for models, manifest in ((fp32_dir, a), (fp16_dir, b)):
            session = create_session(
                models / manifest["graphs"][name]["file"],
                requested_providers(provider),
                None,
                strict=provider != "auto",
            )
            outs.append(session.run(None, feeds)[0])
            del session
        report[name] = {
            "snr_db": round(snr_db(outs[0], outs[1]), 2),
            "max_abs": float(np.max(np.abs(outs[0] - outs[1]))),
            "output_rms": float(np.sqrt(np.mean(np.square(outs[0], dtype=np.float64)))),
        }
    return report


def compare_audio(fp32_dir: Path, fp16_dir: Path, duration: float, seed: int = 3) -> float:
    """Audio SNR (dB) of one generation per directory with the same seed and prompt."""
    turbo = _manifest(fp32_dir).get("backend") == "ace-step-1.5"
    with tempfile.TemporaryDirectory() as tmp:
        waves = []
        for index, models in enumerate((fp32_dir, fp16_dir)):
            out = Path(tmp) / f"{index}.wav"
            command = [
                sys.executable,
                "-m",
                "lofi_daemon",
                "generate",
                "lofi hip hop, mellow rhodes",
                "--models",
                str(models),
                "--duration",
                str(duration),
                "--seed",
                str(seed),
                "--no-progress",
                "--float",
                "-o",
                str(out),
            ]
            if turbo:
                command += ["--backend", "ace-step-1.5"]
            else:
                command += ["--steps", "8"]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise ExportError(f"generate with {models} failed: {done.stderr.strip()[-400:]}")
            waves.append(soundfile.read(str(out), dtype="float32")[0])
        n = min(len(w) for w in waves)
        return snr_db(waves[0][:n], waves[1][:n])


def precision_report(
    fp32_dir: Path,
    fp16_dir: Path,
    frames: int = 16,
    duration: float | None = None,
    provider: str = "cpu",
) -> dict[str, Any]:
    a, b = _manifest(fp32_dir), _manifest(fp16_dir)
    report: dict[str, Any] = {
        "fp32": {"dir": str(fp32_dir), "precision": a.get("precision")},
        "fp16": {"dir": str(fp16_dir), "precision": b.get("precision")},
        "bytes": {
            "fp32": sum(int(f["size"]) for f in a["files"].values()),
            "fp16": sum(int(f["size"]) for f in b["files"].values()),
        },
        "provider": provider,
        "graphs": compare_graphs(fp32_dir, fp16_dir, frames, provider),
    }
    if duration is not None:
        report["audio_snr_db"] = round(compare_audio(fp32_dir, fp16_dir, duration), 2)
    return report
