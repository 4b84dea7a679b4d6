"""The exported graphs: thin modules whose ``forward`` is exactly one ONNX graph's signature.

The split follows the calls of the reference pipeline (``acestep/pipeline_ace_step.py``): the UMT5
text encoder (``get_text_embeddings``), the transformer's ``encode`` (condition sequence, once per
generation) and ``decode`` (velocity, once per step and branch), the DCAE decoder and encoder and
the vocoder (``acestep/music_dcae/music_dcae_pipeline.py: MusicDCAE.decode``/``encode``). Where the
reference applies ERG with forward hooks that scale attention queries in place
(``text2music_diffusion_process``), every graph here takes a per-sample, per-layer query scale
instead, so the runtime picks ERG per branch at run time and can batch a conditional and an ERG
branch in one call. Each wrapper keeps the wrapped module under ``inner`` so parameter names map
onto checkpoint keys by dropping the ``inner.`` prefix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .modules.transformer import ACEStepTransformer
from .modules.vocoder import FoldedVocoder

if TYPE_CHECKING:
    # The defining module, not ``diffusers``: its lazy __init__ shows type checkers a dummy class.
    from diffusers.models.autoencoders.autoencoder_dc import AutoencoderDC
    from transformers import UMT5EncoderModel  # untyped (no py.typed): Any to mypy

PREFIX = "inner."

#: Every graph of a model directory, in the order ``lofi-export onnx`` writes them.
GRAPH_NAMES = (
    "text_encoder",
    "condition_encoder",
    "denoiser",
    "dcae_decoder",
    "dcae_encoder",
    "vocoder",
)


class TextEncoderGraph(nn.Module):
    """UMT5 encoder: ids, mask, q-scale [B, layers] → last_hidden_state [B, L, d_model]."""

    def __init__(self, umt5: UMT5EncoderModel) -> None:
        super().__init__()
        self.inner = umt5
        self._scale: torch.Tensor | None = None
        for index, block in enumerate(umt5.encoder.block):
            block.layer[0].SelfAttention.q.register_forward_hook(self._hook(index))

    def _hook(self, index: int) -> Callable[[nn.Module, Any, torch.Tensor], torch.Tensor]:
        def scale_query(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
            if self._scale is None:
                return output
            return output * self._scale[:, index, None, None]

        return scale_query

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, q_scale: torch.Tensor
    ) -> torch.Tensor:
        self._scale = q_scale
        try:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        finally:
            self._scale = None


class ConditionEncoderGraph(nn.Module):
    """Transformer ``encode``: prompt states, speaker, lyrics → condition sequence and its mask."""

    def __init__(self, transformer: ACEStepTransformer) -> None:
        super().__init__()
        self.inner = transformer

    def forward(
        self,
        text_hidden: torch.Tensor,
        text_mask: torch.Tensor,
        speaker: torch.Tensor,
        lyric_ids: torch.Tensor,
        lyric_mask: torch.Tensor,
        lyric_q_scale: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inner.encode(
            text_hidden, text_mask, speaker, lyric_ids, lyric_mask, lyric_q_scale
        )


class DenoiserGraph(nn.Module):
    """Transformer ``decode``: latents, timestep, condition → flow velocity [B,8,16,T]."""

    def __init__(self, transformer: ACEStepTransformer) -> None:
        super().__init__()
        self.inner = transformer

    def forward(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        cond: torch.Tensor,
        cond_mask: torch.Tensor,
        q_scale: torch.Tensor,
    ) -> torch.Tensor:
        return self.inner.decode(latents, timestep, cond, cond_mask, q_scale)


class DcaeDecoderGraph(nn.Module):
    """DCAE decoder: scaled latents [B,8,16,T] (already ``x/0.1786 − 1.9091``) → mel_n [B,2,128,8T]."""

    def __init__(self, dcae: AutoencoderDC) -> None:
        super().__init__()
        self.inner = dcae

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.inner.decoder(latents)


class DcaeEncoderGraph(nn.Module):
    """DCAE encoder: normalised mel [B,2,128,W] (W a multiple of 8) → latents [B,8,16,W/8]."""

    def __init__(self, dcae: AutoencoderDC) -> None:
        super().__init__()
        self.inner = dcae

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.inner.encoder(mel)


class VocoderGraph(nn.Module):
    """Vocoder with weight norm folded: log-mel [B,128,F] → waveform [B,1,512F] at 44.1 kHz."""

    def __init__(self, vocoder: FoldedVocoder) -> None:
        super().__init__()
        self.inner = vocoder

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.inner(mel)
