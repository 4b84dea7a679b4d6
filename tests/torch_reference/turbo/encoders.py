"""The condition encoder: text projector, lyric encoder, timbre encoder and the packing.

From ``modeling_acestep_v15_turbo.py``: ``AceStepConditionEncoder.forward``,
``AceStepLyricEncoder.forward``, ``AceStepTimbreEncoder.forward`` (frame 0; the 2B code leaves
``special_token`` unused — its prepend is commented out) and ``pack_sequences``; the timbre input
for text2music is ``silence_latent[:, :750]`` (``ConditioningEmbedMixin.infer_refer_latent``).
"""

from __future__ import annotations

from typing import Any

import torch

from .layers import AttnShape, additive_mask, linear, pre_norm_layer, rms_norm, rope_tables
from .weights import Checkpoint, State

TIMBRE_FRAMES = 750  # timbre_fix_frame: 30 s of silence latent


def attn_shape(cfg: dict[str, Any]) -> AttnShape:
    heads = int(cfg["num_attention_heads"])
    head_dim = int(cfg.get("head_dim") or cfg["hidden_size"] // heads)
    return AttnShape(heads, int(cfg["num_key_value_heads"]), head_dim, float(cfg["rms_norm_eps"]))


def layer_types(cfg: dict[str, Any]) -> list[str]:
    """``AceStepConfig.layer_types``, defaulting to sliding, full, sliding, … over
    ``num_hidden_layers`` (the encoders index the same list by their own layer index)."""
    types = cfg.get("layer_types")
    if types:
        return list(types)
    n = int(cfg["num_hidden_layers"])
    return ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(n)]


def window(cfg: dict[str, Any]) -> int | None:
    """``config.sliding_window if config.use_sliding_window else None``."""
    return int(cfg["sliding_window"]) if cfg.get("use_sliding_window", True) else None


def _check_2b(cfg: dict[str, Any]) -> None:
    enc = cfg.get("encoder_hidden_size")
    assert enc in (None, cfg["hidden_size"]), "XL encoders (encoder_hidden_size) are not covered"


def bidirectional_encoder(
    cfg: dict[str, Any], state: State, prefix: str, n_layers: int, x: torch.Tensor
) -> torch.Tensor:
    """The shared body of the lyric and timbre encoders after ``embed_tokens``: RoPE positions
    ``0..L-1``, 4-D masks from ``create_4d_mask`` (full: none hidden; sliding: ``|i-j| <= w``),
    the layers, then ``norm``. Upstream loops over ``self.layers[: config.num_hidden_layers]``."""
    shape = attn_shape(cfg)
    length = x.shape[1]
    rope = rope_tables(length, shape.head_dim, float(cfg["rope_theta"]), x.dtype)
    full = additive_mask(length, length, x.dtype)
    w = window(cfg)
    sliding = additive_mask(length, length, x.dtype, window=w) if w is not None else None
    types = layer_types(cfg)
    for i in range(min(n_layers, int(cfg["num_hidden_layers"]))):
        mask = sliding if types[i] == "sliding_attention" else full
        x = pre_norm_layer(state, f"{prefix}.layers.{i}", x, shape, rope, mask)
    return rms_norm(x, state[f"{prefix}.norm.weight"], shape.eps)


def text_projector(ck: Checkpoint, text_hidden: torch.Tensor) -> torch.Tensor:
    """``text_projector``: Linear(text_hidden_dim → hidden), no bias."""
    return linear(ck.encoder, "text_projector", text_hidden)


def lyric_encoder(ck: Checkpoint, lyric_embeds: torch.Tensor) -> torch.Tensor:
    """``AceStepLyricEncoder`` on ``[1, Ly, Dt]`` with an all-ones padding mask (batch 1)."""
    cfg, state = ck.dit_config, ck.encoder
    _check_2b(cfg)
    x = linear(state, "lyric_encoder.embed_tokens", lyric_embeds)
    n = int(cfg["num_lyric_encoder_hidden_layers"])
    return bidirectional_encoder(cfg, state, "lyric_encoder", n, x)


def timbre_encoder(ck: Checkpoint, refer: torch.Tensor) -> torch.Tensor:
    """``AceStepTimbreEncoder`` for one reference ``[1, F, C]`` → ``[1, 1, H]`` (position 0,
    ``unpack_timbre_embeddings`` of one item)."""
    cfg, state = ck.dit_config, ck.encoder
    _check_2b(cfg)
    x = linear(state, "timbre_encoder.embed_tokens", refer)
    n = int(cfg["num_timbre_encoder_hidden_layers"])
    h = bidirectional_encoder(cfg, state, "timbre_encoder", n, x)
    return h[:, 0, :][:, None, :]


def silence_timbre(ck: Checkpoint) -> torch.Tensor:
    """The text2music timbre: the encoder on ``silence_latent[:, :750]``."""
    return timbre_encoder(ck, ck.silence_latent[:, :TIMBRE_FRAMES, :])


def pack_sequences(
    h1: torch.Tensor, h2: torch.Tensor, m1: torch.Tensor, m2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Upstream ``pack_sequences``: concatenate, stable-sort valid tokens first, new mask."""
    hidden = torch.cat([h1, h2], dim=1)
    mask = torch.cat([m1, m2], dim=1)
    b, length, d = hidden.shape
    order = mask.argsort(dim=1, descending=True, stable=True)
    hidden = torch.gather(hidden, 1, order.unsqueeze(-1).expand(b, length, d))
    lengths = mask.sum(dim=1)
    return hidden, torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)


def condition(
    ck: Checkpoint, text_hidden: torch.Tensor, lyric_embeds: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``AceStepConditionEncoder.forward`` for batch 1 without reference audio.

    Returns ``(encoder_hidden_states [1, Ly+1+Lt, H], text_states, lyric_states)``."""
    text_states = text_projector(ck, text_hidden)
    lyric_states = lyric_encoder(ck, lyric_embeds)
    timbre = silence_timbre(ck)
    ones = torch.ones
    enc, mask = pack_sequences(
        lyric_states,
        timbre,
        ones(1, lyric_states.shape[1], dtype=torch.long),
        ones(1, 1, dtype=torch.long),
    )
    enc, _ = pack_sequences(enc, text_states, mask.long(), ones(1, text_states.shape[1]).long())
    return enc, text_states, lyric_states
