"""``lofi-export tiny``: a random-weight checkpoint in the exact official layout.

Folder names, file names, key names and on-disk dtypes follow the released hub checkpoint
``ACE-Step/ACE-Step-v1-3.5B`` (the folders ``acestep/pipeline_ace_step.py:
ACEStepPipeline.get_checkpoint_path`` looks for): a bf16 transformer (with the unused
``add_*``/``projectors`` entries), a 16-bit DCAE, a 16-bit vocoder with ``weight_g``/``weight_v``
pairs and the two mel buffers, and an fp32 UMT5 encoder without the tied
``encoder.embed_tokens.weight``. Tensors are generated and written one at a time,
so even the ``full`` preset (3.5 B parameters) needs little memory.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterator
from pathlib import Path

import torch

from lofi_daemon.fsutil import remove_tree, replace_dir, staging_dir, write_json_atomic
from lofi_daemon.model import layout

from .components import (
    UMT5_TIED,
    build_dcae,
    build_transformer,
    build_umt5,
    build_vocoder,
    state_shapes,
)
from .errors import ExportError
from .modules.mel import hann_window_periodic, slaney_mel_filterbank
from .modules.transformer import unused_checkpoint_shapes
from .presets import PRESETS, Preset
from .safetensors_io import Producer, write_streaming
from .tokenizer_build import write_tokenizer_files

log = logging.getLogger(__name__)

MEL_WINDOW_KEY = "mel_transform.spectrogram.window"
MEL_FB_KEY = "mel_transform.mel_scale.fb"


def _key_seed(seed: int, key: str) -> int:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def random_producer(seed: int, key: str, shape: tuple[int, ...]) -> Producer:
    """A deterministic random tensor whose scale keeps activations finite and non-trivial."""

    def produce() -> torch.Tensor:
        gen = torch.Generator().manual_seed(_key_seed(seed, key))
        noise = torch.randn(shape, generator=gen, dtype=torch.float32)
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "weight_g":
            return 1.0 + 0.05 * noise
        if leaf == "bias":
            return 0.02 * noise
        if leaf == "gamma":
            return 0.1 + 0.02 * noise
        if leaf == "scale_shift_table":
            return noise / math.sqrt(shape[-1])
        if len(shape) == 1:  # norm weights
            return 1.0 + 0.05 * noise
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else shape[0]
        if key.endswith(("lyric_embs.weight", "shared.weight")):
            return noise
        return noise / math.sqrt(max(fan_in, 1))

    return produce


def _entries(
    shapes: dict[str, tuple[int, ...]], dtype: str, seed: int, prefix: str
) -> Iterator[tuple[str, str, tuple[int, ...], Producer]]:
    for key in sorted(shapes):
        yield key, dtype, shapes[key], random_producer(seed, prefix + key, shapes[key])


def write_tiny_checkpoint(out_dir: Path, preset: Preset, seed: int = 0) -> None:
    """Write the four component folders of a random checkpoint into ``out_dir`` (atomically)."""
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ExportError(f"{out_dir}: folder exists and is not empty")
    staging = staging_dir(out_dir)
    try:
        _write_transformer(staging, preset, seed)
        _write_umt5(staging, preset, seed)
        _write_dcae(staging, preset, seed)
        _write_vocoder(staging, preset, seed)
        replace_dir(staging, out_dir)  # out_dir is absent or an empty folder
    except BaseException:
        remove_tree(staging)
        raise
    log.info("wrote %s checkpoint (seed %d) to %s", preset.name, seed, out_dir)


def _component_dir(root: Path, component: layout.ComponentLayout) -> Path:
    folder = root / component.folder
    folder.mkdir()
    return folder


def _write_transformer(root: Path, preset: Preset, seed: int) -> None:
    folder = _component_dir(root, layout.TRANSFORMER)
    model = build_transformer(preset.transformer, preset.conformer)
    shapes = state_shapes(model) | unused_checkpoint_shapes(preset.transformer)
    write_json_atomic(folder / "config.json", preset.transformer.to_json_dict())
    write_streaming(
        folder / layout.TRANSFORMER.weights,
        _entries(shapes, "BF16", seed, "dit."),
        metadata={"format": "pt"},
    )


def _write_umt5(root: Path, preset: Preset, seed: int) -> None:
    folder = _component_dir(root, layout.TEXT_ENCODER)
    shapes = state_shapes(build_umt5(preset.umt5))
    for tied in UMT5_TIED:
        shapes.pop(tied, None)
    write_json_atomic(folder / "config.json", preset.umt5)
    write_streaming(
        folder / layout.TEXT_ENCODER.weights,
        _entries(shapes, "F32", seed, "umt5."),
        metadata={"format": "pt"},
    )
    write_tokenizer_files(folder)


def _write_dcae(root: Path, preset: Preset, seed: int) -> None:
    folder = _component_dir(root, layout.DCAE)
    shapes = state_shapes(build_dcae(preset.dcae))
    write_json_atomic(folder / "config.json", {**preset.dcae, "_diffusers_version": "0.33.1"})
    write_streaming(
        folder / layout.DCAE.weights,
        _entries(shapes, "BF16", seed, "dcae."),
        metadata={"format": "pt"},
    )


def _write_vocoder(root: Path, preset: Preset, seed: int) -> None:
    folder = _component_dir(root, layout.VOCODER)
    config = preset.vocoder
    shapes = state_shapes(build_vocoder(config))
    entries = []
    for key, dtype, shape, producer in _entries(shapes, "BF16", seed, "vocoder."):
        if key == MEL_WINDOW_KEY:
            producer = lambda: torch.from_numpy(hann_window_periodic(config.win_length))
        elif key == MEL_FB_KEY:
            producer = lambda: torch.from_numpy(
                slaney_mel_filterbank(
                    config.n_fft // 2 + 1,
                    config.f_min,
                    config.f_max,
                    config.n_mels,
                    config.sampling_rate,
                )
            )
        entries.append((key, dtype, shape, producer))
    write_json_atomic(
        folder / "config.json",
        {"_class_name": "ADaMoSHiFiGANV1", "_diffusers_version": "0.33.1", **config.to_json_dict()},
    )
    write_streaming(folder / layout.VOCODER.weights, entries, metadata={"format": "pt"})


def preset_by_name(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ExportError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}") from None
