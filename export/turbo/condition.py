"""The condition encoder: text projector, lyric encoder and timbre encoder (batch 1, no padding).

State-dict keys are exactly the upstream ``encoder.*`` names without the prefix
(``AceStepConditionEncoder`` in upstream ``acestep/models/turbo/modeling_acestep_v15_turbo.py``):
``text_projector.weight``; ``lyric_encoder.{embed_tokens.{weight,bias}, norm.weight, layers.*}``;
``timbre_encoder.{embed_tokens.{weight,bias}, norm.weight, special_token, layers.*}``.

Both encoders are stacks of ``AceStepEncoderLayer``: bidirectional, layer ``i`` sliding
(``|i-j| <= sliding_window``) when ``layer_types[i]`` is ``"sliding_attention"`` (even ``i``),
full otherwise, RoPE positions ``0..L-1``, then a final RMSNorm. Upstream ``pack_sequences`` (the
``[lyrics | timbre | text]`` concatenation) is left to the caller: with batch 1 and no padding
it is a plain concatenation (doc §6).
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import EncoderLayer, RMSNorm, RotaryEmbedding
from .presets import AceStepConfig


def encoder_layers(cfg: AceStepConfig, count: int) -> nn.ModuleList:
    """``count`` ``AceStepEncoderLayer``s; layer ``i`` takes its attention type from
    ``cfg.layer_types[i]`` as upstream ``AceStepAttention`` does."""
    return nn.ModuleList(
        EncoderLayer(
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
            cfg.rms_norm_eps,
            sliding_window=cfg.sliding_window if cfg.is_sliding(i) else None,
        )
        for i in range(count)
    )


class _Encoder(nn.Module):
    """Linear input projection, encoder layers with RoPE, final RMSNorm."""

    def __init__(self, cfg: AceStepConfig, input_dim: int, num_layers: int) -> None:
        super().__init__()
        self.embed_tokens = nn.Linear(input_dim, cfg.hidden_size)
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(cfg.head_dim, cfg.rope_theta)
        self.layers = encoder_layers(cfg, num_layers)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        h = self.embed_tokens(inputs)
        rope = self.rotary_emb(h)
        for layer in self.layers:
            h = layer(h, rope)
        return self.norm(h)


class LyricEncoder(_Encoder):
    """``AceStepLyricEncoder``: lyric token embeddings ``[B, Ly, Dt]`` -> ``[B, Ly, H]``."""

    def __init__(self, cfg: AceStepConfig) -> None:
        super().__init__(cfg, cfg.text_hidden_dim, cfg.num_lyric_encoder_hidden_layers)


class TimbreEncoder(_Encoder):
    """``AceStepTimbreEncoder`` for one reference: latents ``[1, F, C]`` -> ``[1, 1, H]``.

    The output is the normed hidden state at frame 0. ``special_token`` is a weight of the 2B
    checkpoint that its code never uses (the prepend is commented out upstream; only the XL
    variants prepend it), so it is stored and loaded but not read here.
    """

    def __init__(self, cfg: AceStepConfig) -> None:
        super().__init__(cfg, cfg.timbre_hidden_dim, cfg.num_timbre_encoder_hidden_layers)
        self.special_token = nn.Parameter(torch.zeros(1, 1, cfg.hidden_size))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return super().forward(inputs)[:, :1, :]


class ConditionEncoder(nn.Module):
    """``AceStepConditionEncoder`` minus the packing: see ``text_and_lyrics`` and ``timbre``."""

    def __init__(self, cfg: AceStepConfig) -> None:
        super().__init__()
        self.config = cfg
        self.text_projector = nn.Linear(cfg.text_hidden_dim, cfg.hidden_size, bias=False)
        self.lyric_encoder = LyricEncoder(cfg)
        self.timbre_encoder = TimbreEncoder(cfg)

    def text_and_lyrics(
        self, text_hidden: torch.Tensor, lyric_embeds: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``text_hidden [1, Lt, Dt]`` (Qwen3 output), ``lyric_embeds [1, Ly, Dt]`` (embedding rows)
        -> ``text_states [1, Lt, H]``, ``lyric_states [1, Ly, H]``."""
        return self.text_projector(text_hidden), self.lyric_encoder(lyric_embeds)

    def timbre(self, refer_latents: torch.Tensor) -> torch.Tensor:
        """``refer_latents [1, F, C]`` (time-major) -> timbre vector ``[1, 1, H]``."""
        return self.timbre_encoder(refer_latents)

    def forward(
        self, text_hidden: torch.Tensor, lyric_embeds: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Same as ``text_and_lyrics`` (the graph that is exported)."""
        return self.text_and_lyrics(text_hidden, lyric_embeds)
