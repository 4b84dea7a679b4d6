"""ONNX Runtime vs the project's torch modules, graph by graph, on identical inputs.

Run by ``lofi-export bench-torch`` (which ``lofi-daemon bench --checkpoint DIR`` starts as a child
process, so that the runtime never imports torch). A benchmark, not a test: it reports times and
the largest absolute difference of the outputs.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from lofi_daemon.model.manifest import Manifest, load_manifest
from lofi_daemon.pipeline.providers import create_session, requested_providers

from .reference import load_reference_models

T = TypeVar("T")


def _inputs(
    manifest: Manifest, frames: int, text_len: int = 24
) -> dict[str, dict[str, np.ndarray]]:
    c = manifest.constants
    rng = np.random.default_rng(0)
    layers, blocks, dit_layers = c.text_encoder_layers, c.conformer_blocks, c.denoiser_layers
    cond_len = 1 + text_len + 1
    inner = manifest.graphs["denoiser"].inputs[2]["shape"][2]
    mel_frames = frames * c.mel_frames_per_latent_frame
    return {
        "text_encoder": {
            "input_ids": rng.integers(3, 90, (2, text_len)).astype(np.int64),
            "attention_mask": np.ones((2, text_len), np.int64),
            "q_scale": np.ones((2, layers), np.float32),
        },
        "condition_encoder": {
            "text_hidden": rng.standard_normal((2, text_len, c.text_hidden_size)).astype(
                np.float32
            ),
            "text_mask": np.ones((2, text_len), np.int64),
            "speaker": np.zeros((2, c.speaker_embedding_dim), np.float32),
            "lyric_ids": np.zeros((2, 1), np.int64),
            "lyric_mask": np.zeros((2, 1), np.int64),
            "lyric_q_scale": np.ones((2, blocks), np.float32),
        },
        "denoiser": {
            "latents": rng.standard_normal((2, 8, 16, frames)).astype(np.float32),
            "timestep": np.full((2,), 500.0, np.float32),
            "cond": rng.standard_normal((2, cond_len, int(inner))).astype(np.float32),
            "cond_mask": np.ones((2, cond_len), np.float32),
            "q_scale": np.ones((2, dit_layers), np.float32),
        },
        "dcae_decoder": {"latents": rng.standard_normal((1, 8, 16, frames)).astype(np.float32)},
        "vocoder": {"mel": rng.standard_normal((2, 128, mel_frames)).astype(np.float32) - 4.0},
    }


def _best_time(fn: Callable[[], T], repeats: int) -> tuple[float, T]:
    """The shortest wall time of ``repeats`` calls (at least one) and the last result."""
    t0 = time.perf_counter()
    out = fn()
    best = time.perf_counter() - t0
    for _ in range(repeats - 1):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def compare_with_torch(
    checkpoint_dir: Path,
    models_dir: Path,
    *,
    frames: int,
    provider: str = "auto",
    threads: int | None = None,
    repeats: int = 2,
) -> dict[str, dict[str, float]]:
    """Per graph: ONNX and torch wall time (best of ``repeats``), their ratio and the max abs diff."""
    manifest = load_manifest(models_dir)
    reference = load_reference_models(checkpoint_dir)
    if threads:
        torch.set_num_threads(threads)
    providers = requested_providers(provider)
    report: dict[str, dict[str, float]] = {}
    for graph, feeds in _inputs(manifest, frames).items():
        session = create_session(manifest.graph_path(graph), providers, threads)
        onnx_s, onnx_outs = _best_time(functools.partial(session.run, None, feeds), repeats)
        onnx_out = onnx_outs[0]
        module = reference.graph(graph)
        args = [torch.from_numpy(v) for v in feeds.values()]
        with torch.inference_mode():
            torch_s, torch_out = _best_time(functools.partial(module, *args), repeats)
        if isinstance(torch_out, tuple):
            torch_out = torch_out[0]
        report[graph] = {
            "onnx_sec": round(onnx_s, 4),
            "torch_sec": round(torch_s, 4),
            "onnx_over_torch": round(onnx_s / torch_s, 3) if torch_s else float("nan"),
            "max_abs_diff": float(np.abs(onnx_out - torch_out.numpy()).max()),
        }
    return report
