"""The project's torch modules with real weights, for parity tests and ``lofi-export bench-torch``.

Loads a checkpoint (after the same validation as the export) into float32 CPU modules whose forward
passes are the graphs' references.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from .checkpoint import Component, TensorSource
from .components import UMT5_TIED, build_dcae, build_transformer, build_umt5, build_vocoder
from .graphs import (
    ConditionEncoderGraph,
    DcaeDecoderGraph,
    DcaeEncoderGraph,
    DenoiserGraph,
    TextEncoderGraph,
    VocoderGraph,
)
from .modules.vocoder import infer_vocoder_config
from .opened_checkpoint import OpenCheckpoint, open_checkpoint

M = TypeVar("M", bound=nn.Module)


def _load(module: M, component: Component, aliases: dict[str, str] | None = None) -> M:
    source = TensorSource(component, aliases)
    state = {name: source.torch(name) for name in module.state_dict()}
    module.load_state_dict(state, strict=True, assign=True)
    tie_weights = getattr(module, "tie_weights", None)  # transformers models re-tie shared weights
    if aliases and callable(tie_weights):
        tie_weights()
    return module.eval()


@dataclass
class ReferenceModels:
    """One torch module per exported graph, same inputs and outputs."""

    text_encoder: nn.Module
    condition_encoder: nn.Module
    denoiser: nn.Module
    dcae_decoder: nn.Module
    dcae_encoder: nn.Module
    vocoder: nn.Module
    checkpoint: OpenCheckpoint

    def graph(self, name: str) -> nn.Module:
        return getattr(self, name)


def load_reference_models(checkpoint_dir: Path) -> ReferenceModels:
    ckpt = open_checkpoint(checkpoint_dir)
    with torch.no_grad():
        dit = _load(
            build_transformer(ckpt.transformer_config, ckpt.conformer_config, device="cpu"),
            ckpt.transformer,
        )
        umt5 = _load(
            build_umt5(ckpt.text_encoder.config, device="cpu"), ckpt.text_encoder, UMT5_TIED
        )
        dcae = _load(build_dcae(ckpt.dcae.config, device="cpu"), ckpt.dcae)
        vcfg = infer_vocoder_config(ckpt.vocoder.config, ckpt.vocoder.shapes())
        vocoder = _load(build_vocoder(vcfg, device="cpu"), ckpt.vocoder).folded()
    return ReferenceModels(
        text_encoder=TextEncoderGraph(umt5).eval(),
        condition_encoder=ConditionEncoderGraph(dit).eval(),
        denoiser=DenoiserGraph(dit).eval(),
        dcae_decoder=DcaeDecoderGraph(dcae).eval(),
        dcae_encoder=DcaeEncoderGraph(dcae).eval(),
        vocoder=VocoderGraph(vocoder).eval(),
        checkpoint=ckpt,
    )
