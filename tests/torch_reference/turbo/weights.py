"""Reading an official-layout ACE-Step 1.5 checkpoint into float32 state dicts.

The three folders of the hub bundle ``ACE-Step/Ace-Step1.5`` (upstream
``InitServiceLoaderMixin._load_main_model_from_checkpoint`` and
``_load_text_encoder_and_tokenizer``): ``acestep-v15-turbo`` (one safetensors with ``decoder.*``,
``encoder.*`` … and ``silence_latent.pt``), ``vae`` and ``Qwen3-Embedding-0.6B``. Folder and file
names are written out here on purpose (not taken from the project's layout module).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

DIT_FOLDER = "acestep-v15-turbo"
VAE_FOLDER = "vae"
TEXT_FOLDER = "Qwen3-Embedding-0.6B"

State = dict[str, torch.Tensor]


def _fp32(state: State) -> State:
    return {k: v.to(torch.float32) for k, v in state.items()}


def sub_state(state: State, prefix: str) -> State:
    """The entries under ``prefix`` (``"decoder."``) with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


@dataclass
class Checkpoint:
    """Everything the turbo text2music path reads, as float32 tensors."""

    root: Path
    dit_config: dict[str, Any]
    text_config: dict[str, Any]
    vae_config: dict[str, Any]
    model: State  # the whole AceStepConditionGenerationModel state dict
    text: State  # Qwen3Model, keys without "model."
    vae: State  # AutoencoderOobleck, weight_g / weight_v
    silence_latent: torch.Tensor  # [1, 15000, C] (transposed as upstream does on load)

    @property
    def decoder(self) -> State:
        return sub_state(self.model, "decoder.")

    @property
    def encoder(self) -> State:
        return sub_state(self.model, "encoder.")

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / TEXT_FOLDER


def _json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def load_checkpoint(root: Path) -> Checkpoint:
    """Read the three folders; bf16 weights become float32."""
    dit = root / DIT_FOLDER
    silence = torch.load(dit / "silence_latent.pt", weights_only=True)
    return Checkpoint(
        root=root,
        dit_config=_json(dit / "config.json"),
        text_config=_json(root / TEXT_FOLDER / "config.json"),
        vae_config=_json(root / VAE_FOLDER / "config.json"),
        model=_fp32(load_file(str(dit / "model.safetensors"))),
        text=_fp32(load_file(str(root / TEXT_FOLDER / "model.safetensors"))),
        vae=_fp32(load_file(str(root / VAE_FOLDER / "diffusion_pytorch_model.safetensors"))),
        # upstream: torch.load(...).transpose(1, 2) → [1, 15000, C]
        silence_latent=silence.to(torch.float32).transpose(1, 2).contiguous(),
    )
