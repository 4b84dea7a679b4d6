"""Time the ACE-Step v1 pipeline in PyTorch eager, the way upstream runs it, on the same weights.

    python bench/torch_pipeline.py CHECKPOINT_DIR MODELS_DIR [--duration 60] [--steps 27]
        [--device cuda] [--dtype bfloat16] [--out torch.json]

The modules are the project's torch ports of upstream's (``export/reference.py``:
``load_reference_models``, the forward passes the ONNX graphs were exported from), cast to
``--dtype`` (upstream's ``ACEStepPipeline`` runs bf16 on CUDA) and moved to ``--device``.
``MODELS_DIR`` (exported from ``CHECKPOINT_DIR``) gives the shapes (its manifest's constants).

One generation of ``--duration`` seconds at ``--steps`` Euler steps, as
``acestep/pipeline_ace_step.py: text2music_diffusion_process`` does by default:

* encode: the prompt through UMT5 twice (the prompt and its ERG variant with scaled attention
  queries, as one batch of two), then the condition encoder on both (cond and the null branch);
* diffusion: ``--steps`` Euler flow-matching steps; inside the guidance interval (the middle half
  of the steps for the default ``guidance_interval=0.5``) the denoiser runs on a batch of two
  (cond, null) and CFG combines them; outside it, a batch of one. Upstream's default guidance is
  APG (a projection and a momentum buffer on the ``[1, 8, 16, T]`` velocity): elementwise work
  that costs nothing next to the transformer, so plain CFG stands in for it here;
* decode: the DCAE decoder on the whole latent sequence, then the vocoder on both mel channels.

A warm-up generation (2 steps, same length) runs first so that CUDA context creation, cuDNN
algorithm search and lazy allocations are not timed; the ONNX side is timed warm too.
Prints one JSON object (and writes it to ``--out`` when given): per-phase seconds, RTF per phase
(audio seconds / phase seconds), the device's peak allocated memory, the dtype and device.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lofi_export.reference import load_reference_models

from lofi_daemon.model.manifest import load_manifest
from lofi_daemon.pipeline.guidance import guidance_interval

PHASES = ("encode", "diffusion", "decode", "total")
GUIDANCE_SCALE = 15.0  # upstream's default guidance_scale
TEXT_TOKENS = 24  # a short prompt's token count


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TorchPipeline:
    """The v1 modules on one device in one dtype, and the shapes of one model set."""

    def __init__(self, checkpoint: Path, models: Path, device: torch.device, dtype: torch.dtype):
        self.device, self.dtype = device, dtype
        self._autocast = dtype != torch.float32
        self.constants = load_manifest(models).constants
        ref = load_reference_models(checkpoint)
        self.text_encoder = ref.text_encoder.to(device=device, dtype=dtype)
        self.condition_encoder = ref.condition_encoder.to(device=device, dtype=dtype)
        self.denoiser = ref.denoiser.to(device=device, dtype=dtype)
        self.dcae_decoder = ref.dcae_decoder.to(device=device, dtype=dtype)
        self.vocoder = ref.vocoder.to(device=device, dtype=dtype)

    def _t(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device, self.dtype if x.is_floating_point() else x.dtype)

    def encode(self) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.constants
        ids = torch.randint(3, 90, (2, TEXT_TOKENS))
        mask = torch.ones((2, TEXT_TOKENS), dtype=torch.int64)
        q_scale = torch.ones((2, c.text_encoder_layers))
        q_scale[1] = 0.5  # the ERG branch scales its queries
        hidden = self.text_encoder(self._t(ids), self._t(mask), self._t(q_scale))
        cond, cond_mask = self.condition_encoder(
            hidden,
            self._t(mask),
            self._t(torch.zeros((2, c.speaker_embedding_dim))),
            self._t(torch.zeros((2, 1), dtype=torch.int64)),
            self._t(torch.zeros((2, 1), dtype=torch.int64)),
            self._t(torch.ones((2, c.conformer_blocks))),
        )
        return cond, cond_mask

    def diffuse(
        self, cond: torch.Tensor, cond_mask: torch.Tensor, frames: int, steps: int
    ) -> torch.Tensor:
        c = self.constants
        x = torch.randn(
            (1, c.latent_channels, c.latent_height, frames), device=self.device, dtype=self.dtype
        )
        mask = cond_mask.to(self.dtype)
        start, end = guidance_interval(steps, 0.5)
        shift = c.scheduler_shift
        sigmas = [shift * s / (1 + (shift - 1) * s) for s in _linspace(1.0, 0.0, steps + 1)]
        layers = c.denoiser_layers
        for i in range(steps):
            t = sigmas[i] * c.num_train_timesteps
            guided = start <= i < end
            batch = 2 if guided else 1
            v = self.denoiser(
                x.expand(batch, -1, -1, -1),
                torch.full((batch,), t, device=self.device, dtype=self.dtype),
                cond[:batch],
                mask[:batch],
                torch.ones((batch, layers), device=self.device, dtype=self.dtype),
            )
            if guided:
                v = v[1:2] + GUIDANCE_SCALE * (v[0:1] - v[1:2])
            x = x + (sigmas[i + 1] - sigmas[i]) * v
        return x

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        mel = self.dcae_decoder(latents)  # [1, 2, 128, mel frames]
        return self.vocoder(mel.reshape(-1, *mel.shape[2:]))  # both channels as a batch

    @torch.inference_mode()
    def generate(self, duration: float, steps: int) -> dict[str, float]:
        frames = self.constants.latent_frames(duration)
        timings: dict[str, float] = {}
        # Weights are already in the dtype; autocast casts the float32 tensors the modules make
        # themselves (timestep embeddings, masks), as upstream's pipeline does under bf16.
        autocast = torch.autocast(self.device.type, dtype=self.dtype, enabled=self._autocast)
        _sync(self.device)
        started = time.perf_counter()
        with autocast:
            cond, mask = _timed(self.encode, "encode", timings, self.device)
            latents = _timed(
                lambda: self.diffuse(cond, mask, frames, steps), "diffusion", timings, self.device
            )
            wave = _timed(lambda: self.decode(latents), "decode", timings, self.device)
        timings["total"] = time.perf_counter() - started
        if not torch.isfinite(wave.float()).all():
            raise RuntimeError("the torch pipeline produced non-finite audio")
        return timings


def _linspace(a: float, b: float, n: int) -> list[float]:
    return [a + (b - a) * k / (n - 1) for k in range(n)]


def _timed(fn: Callable[[], Any], phase: str, timings: dict[str, float], dev: torch.device) -> Any:
    t0 = time.perf_counter()
    out = fn()
    _sync(dev)
    timings[phase] = time.perf_counter() - t0
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    pipe = TorchPipeline(args.checkpoint, args.models, device, dtype)
    load_sec = time.perf_counter() - t0
    pipe.generate(args.duration, min(2, args.steps))  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timings = pipe.generate(args.duration, args.steps)
    frames = pipe.constants.latent_frames(args.duration)
    audio_sec = frames * pipe.constants.samples_per_latent_frame / pipe.constants.sample_rate_model
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": args.dtype,
        "torch": torch.__version__,
        "duration_sec": args.duration,
        "audio_sec": round(audio_sec, 3),
        "steps": args.steps,
        "load_sec": round(load_sec, 2),
        "sec": {phase: round(timings[phase], 4) for phase in PHASES},
        "rtf": {
            phase: round(audio_sec / timings[phase], 2) if timings[phase] else None
            for phase in PHASES
        },
        "peak_allocated_mib": None if peak is None else round(peak, 1),
        "guidance": "CFG on the middle half of the steps (upstream: APG, same cost)",
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("models", type=Path, help="the model directory exported from it")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--steps", type=int, default=27)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.steps < 1 or not math.isfinite(args.duration) or args.duration <= 0:
        parser.error("--steps must be at least 1 and --duration positive")
    report = run(args)
    text = json.dumps(report, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
