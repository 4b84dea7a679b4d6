"""Load an ACE-Step 1.5 turbo checkpoint folder into fp32 CPU torch modules (for export).

Sizes come from the folder's own ``config.json`` files. Every weight file's header must hold
exactly the keys and shapes ``checkpoint_keys`` expects for that config (strict: a missing,
unexpected or mis-shaped tensor is a ``CheckpointError`` naming it). The modules are built
without random initialisation (meta device, then ``to_empty``) and filled tensor by tensor, so
the peak memory stays near the fp32 size of the weights.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn

from lofi_daemon.model import turbo_layout as tl

from ..errors import CheckpointError
from ..safetensors_io import FLOAT_DTYPES, read_header
from .checkpoint_keys import (
    Shapes,
    build_vae,
    dit_file_shapes,
    module_shapes,
    text_encoder_shapes,
    vae_shapes,
)
from .condition import ConditionEncoder
from .dit import DiT
from .layers import RotaryEmbedding
from .presets import VAE_CONFIG_KEYS, AceStepConfig, Qwen3Config
from .qwen3 import Qwen3TextEncoder


@dataclass
class TurboModules:
    """fp32 CPU modules in eval mode, plus the two arrays the runtime needs."""

    text_config: Qwen3Config
    dit_config: AceStepConfig
    vae_config: dict[str, Any]
    text_encoder: Qwen3TextEncoder
    condition_encoder: ConditionEncoder
    dit: DiT
    vae: Any  # diffusers AutoencoderOobleck, weight norm not folded (weight_g / weight_v)
    silence_latent: torch.Tensor  # [1, 15000, C] float32 (already transposed)
    embed_tokens: torch.Tensor  # [V, Dt] float32, the Qwen3 token embedding


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    return data


def _names(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")


def check_weights(path: Path, expected: Shapes) -> None:
    """The header of ``path`` must hold exactly ``expected`` (names and shapes), float dtypes."""
    infos = read_header(path)
    missing = expected.keys() - infos.keys()
    if missing:
        raise CheckpointError(f"{path}: missing tensors {_names(missing)}")
    unexpected = infos.keys() - expected.keys()
    if unexpected:
        raise CheckpointError(f"{path}: unexpected tensors {_names(unexpected)}")
    for name, info in infos.items():
        if info.shape != expected[name]:
            raise CheckpointError(
                f"{path}: tensor {name!r} has shape {list(info.shape)}, "
                f"expected {list(expected[name])}"
            )
        if info.dtype not in FLOAT_DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has dtype {info.dtype}")


def _materialize(module: nn.Module) -> None:
    """Allocate a meta-built module on the CPU and recompute its non-persistent RoPE tables."""
    module.to_empty(device="cpu")
    for sub in module.modules():
        if isinstance(sub, RotaryEmbedding):
            sub.reset_inv_freq()


def _fill(module: nn.Module, path: Path, prefix: str) -> None:
    """Copy every ``prefix``-ed tensor of ``path`` into ``module`` (strict, one at a time)."""
    targets = module.state_dict()
    with safe_open(str(path), framework="pt") as handle:
        names: list[str] = list(handle.keys())
        keys = [k[len(prefix) :] for k in names if k.startswith(prefix)]
        if set(keys) != targets.keys():
            raise CheckpointError(
                f"{path}: {prefix or 'tensors'} do not match the model "
                f"(missing {_names(targets.keys() - set(keys))}; "
                f"unexpected {_names(set(keys) - targets.keys())})"
            )
        for key in keys:
            with torch.no_grad():
                targets[key].copy_(handle.get_tensor(prefix + key).to(torch.float32))
    module.eval()


def _silence_latent(path: Path, channels: int) -> torch.Tensor:
    try:
        latent = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except Exception as exc:  # torch raises many kinds for a damaged archive
        raise CheckpointError(f"{path}: not a readable torch file ({exc})") from exc
    expected = (1, channels, tl.SILENCE_LATENT_FRAMES)
    if not isinstance(latent, torch.Tensor) or tuple(latent.shape) != expected:
        got = tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
        raise CheckpointError(f"{path}: expected a tensor of shape {list(expected)}, got {got}")
    # upstream InitServiceLoaderMixin._load_main_model_from_checkpoint: .transpose(1, 2)
    return latent.to(torch.float32).transpose(1, 2).contiguous()


def load_turbo_modules(checkpoint_dir: Path) -> TurboModules:
    """Load the three folders of ``checkpoint_dir`` (layout of ``turbo_layout``)."""
    missing = [p for p in tl.REQUIRED_FILES if not (checkpoint_dir / p).is_file()]
    if missing:
        raise CheckpointError(
            f"{checkpoint_dir}: not an ACE-Step 1.5 checkpoint, missing {missing}"
        )
    dit_dir = checkpoint_dir / tl.DIT.name
    vae_dir = checkpoint_dir / tl.VAE.name
    text_dir = checkpoint_dir / tl.TEXT_ENCODER.name
    dit_config = AceStepConfig.from_json_dict(_read_json(dit_dir / "config.json"))
    text_config = Qwen3Config.from_json_dict(_read_json(text_dir / "config.json"))
    raw_vae = _read_json(vae_dir / "config.json")
    absent = [k for k in VAE_CONFIG_KEYS if k not in raw_vae]
    if absent:
        raise CheckpointError(f"{vae_dir / 'config.json'}: missing fields {absent}")
    vae_config = {k: raw_vae[k] for k in VAE_CONFIG_KEYS}

    dit_file = dit_dir / tl.DIT.weights
    vae_file = vae_dir / tl.VAE.weights
    text_file = text_dir / tl.TEXT_ENCODER.weights
    check_weights(dit_file, dit_file_shapes(dit_config))
    try:
        check_weights(vae_file, vae_shapes(vae_config))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{vae_dir / 'config.json'}: bad VAE config ({exc})") from exc
    check_weights(text_file, text_encoder_shapes(text_config))

    with torch.device("meta"):
        text_encoder = Qwen3TextEncoder(text_config)
        condition_encoder = ConditionEncoder(dit_config)
        dit = DiT(dit_config)
    vae = build_vae(vae_config, "meta")
    for module, path, prefix in (
        (text_encoder, text_file, ""),
        (condition_encoder, dit_file, "encoder."),
        (dit, dit_file, "decoder."),
        (vae, vae_file, ""),
    ):
        _materialize(module)
        _fill(module, path, prefix)
    return TurboModules(
        text_config=text_config,
        dit_config=dit_config,
        vae_config=vae_config,
        text_encoder=text_encoder,
        condition_encoder=condition_encoder,
        dit=dit,
        vae=vae,
        silence_latent=_silence_latent(
            dit_dir / "silence_latent.pt", dit_config.audio_acoustic_hidden_dim
        ),
        embed_tokens=text_encoder.embed_tokens.weight.detach().clone(),
    )


__all__ = ["TurboModules", "check_weights", "load_turbo_modules", "module_shapes"]
