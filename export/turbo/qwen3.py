"""The text encoder: a ``transformers.Qwen3Model`` equivalent (Qwen3-Embedding-0.6B weights).

State-dict keys are exactly those of the bundle's ``Qwen3-Embedding-0.6B/model.safetensors`` (no
``model.`` prefix): ``embed_tokens.weight``, ``layers.{i}.self_attn.{q,k,v,o}_proj.weight``,
``layers.{i}.self_attn.{q,k}_norm.weight``, ``layers.{i}.mlp.{gate,up,down}_proj.weight``,
``layers.{i}.{input,post_attention}_layernorm.weight`` and ``norm.weight``.

Upstream calls it as ``text_encoder(input_ids=ids).last_hidden_state`` with no attention mask
(``PromptMixin._get_text_hidden_states``), so attention is plain causal and the output is taken
after the final RMSNorm, with no pooling (doc §3).
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import EncoderLayer, RMSNorm, RotaryEmbedding
from .presets import Qwen3Config


class Qwen3TextEncoder(nn.Module):
    """``forward(input_ids [B, L] int64) -> last_hidden_state [B, L, hidden_size]``."""

    def __init__(self, cfg: Qwen3Config) -> None:
        super().__init__()
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(
            EncoderLayer(
                cfg.hidden_size,
                cfg.intermediate_size,
                cfg.num_attention_heads,
                cfg.num_key_value_heads,
                cfg.head_dim,
                cfg.rms_norm_eps,
                causal=True,
            )
            for _ in range(cfg.num_hidden_layers)
        )
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(cfg.head_dim, cfg.rope_theta)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        h = self.embed_tokens(input_ids)
        rope = self.rotary_emb(h)
        for layer in self.layers:
            h = layer(h, rope)
        return self.norm(h)
