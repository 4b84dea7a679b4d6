"""``lofi-export tiny --model ace-step-1.5``: a random ACE-Step 1.5 turbo checkpoint.

Folder names, file names, key names, dtypes (bf16) and safetensors metadata (``{"format":
"pt"}``) follow the published ``ACE-Step/Ace-Step1.5`` bundle (doc §1.2, names in
``lofi_daemon.model.turbo_layout``): ``acestep-v15-turbo/`` (config.json, model.safetensors,
silence_latent.pt), ``vae/`` (config.json, diffusion_pytorch_model.safetensors) and
``Qwen3-Embedding-0.6B/`` (config.json, model.safetensors and the tokenizer files). Tensors are
generated and written one at a time with the same deterministic producer as the v1 checkpoint,
so even the ``full`` preset (3.2 B values) needs little memory. The whole tree is assembled in a
staging folder and moved into place only when complete.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import torch

from lofi_daemon.fsutil import remove_tree, replace_dir, staging_dir, write_json_atomic
from lofi_daemon.model import turbo_layout as tl

from ..errors import ExportError
from ..safetensors_io import Producer, write_streaming
from ..tiny import _key_seed, random_producer
from .checkpoint_keys import Shapes, dit_file_shapes, text_encoder_shapes, vae_shapes
from .presets import TurboPreset, turbo_preset
from .tokenizer import write_tokenizer_files

log = logging.getLogger(__name__)

METADATA = {"format": "pt"}
DIFFUSERS_VERSION = "0.33.1"
#: The residual units' weight-norm gains are scaled down in the random VAE: with every gain near 1
#: each of the decoder's 15 residual units doubles the signal's variance, and the random decoder
#: ends in the hundreds, where float32 rounding alone exceeds the graphs' 1e-4 parity bar. At 0.3
#: its output stays within a few units, like audio (it still exceeds 1, so the peak limit runs).
RESIDUAL_GAIN = 0.3


def _entries(
    shapes: Shapes, seed: int, prefix: str
) -> Iterator[tuple[str, str, tuple[int, ...], Producer]]:
    for key in sorted(shapes):
        yield key, "BF16", shapes[key], random_producer(seed, prefix + key, shapes[key])


def _vae_entries(shapes: Shapes, seed: int) -> Iterator[tuple[str, str, tuple[int, ...], Producer]]:
    for key, dtype, shape, produce in _entries(shapes, seed, "vae15."):
        if ".res_unit" in key and key.endswith(".weight_g"):
            yield key, dtype, shape, _scaled(produce, RESIDUAL_GAIN)
        else:
            yield key, dtype, shape, produce


def _scaled(produce: Producer, factor: float) -> Producer:
    return lambda: produce() * factor


def silence_latent(channels: int, seed: int) -> torch.Tensor:
    """A deterministic float32 ``[1, C, 15000]`` stand-in for the VAE-encoded silence (std ~1)."""
    gen = torch.Generator().manual_seed(_key_seed(seed, "silence_latent"))
    return torch.randn((1, channels, tl.SILENCE_LATENT_FRAMES), generator=gen, dtype=torch.float32)


def write_turbo_checkpoint(out_dir: Path, preset: str = "tiny", seed: int = 0) -> None:
    """Write the three checkpoint folders into ``out_dir`` (absent or empty), atomically."""
    config = turbo_preset(preset)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(f"{out_dir}: exists and is not an empty folder")
    staging = staging_dir(out_dir)
    try:
        _write_dit(staging / tl.DIT.name, config, seed)
        _write_vae(staging / tl.VAE.name, config, seed)
        _write_text_encoder(staging / tl.TEXT_ENCODER.name, config, seed)
        replace_dir(staging, out_dir)
    except BaseException:
        remove_tree(staging)
        raise
    log.info("wrote ACE-Step 1.5 %s checkpoint (seed %d) to %s", preset, seed, out_dir)


def _write_dit(folder: Path, config: TurboPreset, seed: int) -> None:
    folder.mkdir()
    write_json_atomic(folder / "config.json", config.dit.to_json_dict())
    write_streaming(
        folder / tl.DIT.weights,
        _entries(dit_file_shapes(config.dit), seed, "turbo."),
        metadata=METADATA,
    )
    # torch.save names the archive after the file stem ("silence_latent/data/0" as on the hub),
    # so it is written under its final name inside the staging folder.
    torch.save(silence_latent(config.latent_channels, seed), folder / "silence_latent.pt")


def _write_vae(folder: Path, config: TurboPreset, seed: int) -> None:
    folder.mkdir()
    write_json_atomic(
        folder / "config.json",
        {
            "_class_name": "AutoencoderOobleck",
            "_diffusers_version": DIFFUSERS_VERSION,
            **config.vae,
        },
    )
    write_streaming(
        folder / tl.VAE.weights, _vae_entries(vae_shapes(config.vae), seed), metadata=METADATA
    )


def _write_text_encoder(folder: Path, config: TurboPreset, seed: int) -> None:
    folder.mkdir()
    write_json_atomic(folder / "config.json", config.text.to_json_dict())
    write_streaming(
        folder / tl.TEXT_ENCODER.weights,
        _entries(text_encoder_shapes(config.text), seed, "qwen3."),
        metadata=METADATA,
    )
    write_tokenizer_files(folder)
