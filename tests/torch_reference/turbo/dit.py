"""One evaluation of the turbo DiT, functionally from the ``decoder.*`` state dict.

From ``modeling_acestep_v15_turbo.py``: ``TimestepEmbedding`` (τ = t·1000 in t's dtype, cos
first, in_channels 256), ``AceStepDiTModel.forward`` (context first in the concatenation, zero
padding of an odd T before the stride-2 patch conv and cropping after the transposed conv; masks
rebuilt inside the forward: all-zero full and encoder masks, ``|i-j| <= sliding_window`` on the
sliding layers; RoPE positions ``0..N-1`` because the self-attention cache is never filled) and
``AceStepDiTLayer.forward`` (AdaLN self-attention with gate, un-modulated cross-attention, AdaLN
MLP with gate; chunks shift, scale, gate × 2). The cross-attention K/V cache of
``generate_audio`` only reuses step-invariant values, so it is left out.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .encoders import attn_shape, layer_types, window
from .layers import (
    additive_mask,
    cross_attention,
    linear,
    mlp,
    rms_norm,
    rope_tables,
    self_attention,
)
from .weights import Checkpoint, State

TIME_FREQ_DIM = 256  # TimestepEmbedding(in_channels=256, …)
TIME_SCALE = 1000.0


def timestep_embedding(
    state: State, prefix: str, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``TimestepEmbedding.forward``: ``(temb [B, D], proj [B, 6, D])``."""
    scaled = t * TIME_SCALE  # in t's dtype, as upstream
    half = TIME_FREQ_DIM // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = scaled[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    temb = linear(state, f"{prefix}.linear_1", emb.to(t.dtype))
    temb = linear(state, f"{prefix}.linear_2", F.silu(temb))
    proj = linear(state, f"{prefix}.time_proj", F.silu(temb)).unflatten(1, (6, -1))
    return temb, proj


def dit_forward(
    ck: Checkpoint,
    hidden_states: torch.Tensor,
    timestep: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    context_latents: torch.Tensor,
    timestep_r: torch.Tensor | None = None,
) -> torch.Tensor:
    """``decoder(hidden_states [B,T,C], t [B], t_r [B], enc [B,S,E], context [B,T,2C])[0]`` →
    velocity ``[B, T, C]``; ``timestep_r`` defaults to ``timestep`` as in ``generate_audio``."""
    cfg, state = ck.dit_config, ck.decoder
    shape = attn_shape(cfg)
    patch = int(cfg.get("patch_size", 2))
    if timestep_r is None:
        timestep_r = timestep
    temb_t, proj_t = timestep_embedding(state, "time_embed", timestep)
    temb_r, proj_r = timestep_embedding(state, "time_embed_r", timestep - timestep_r)
    temb, proj = temb_t + temb_r, proj_t + proj_r

    h = torch.cat([context_latents, hidden_states], dim=-1)
    original = h.shape[1]
    if original % patch:
        h = F.pad(h, (0, 0, 0, patch - original % patch))
    h = F.conv1d(
        h.transpose(1, 2), state["proj_in.1.weight"], state["proj_in.1.bias"], stride=patch
    )
    h = h.transpose(1, 2)
    enc = linear(state, "condition_embedder", encoder_hidden_states)

    n, s = h.shape[1], enc.shape[1]
    dtype = h.dtype
    rope = rope_tables(n, shape.head_dim, float(cfg["rope_theta"]), dtype)
    full = additive_mask(n, n, dtype)
    w = window(cfg)
    sliding = additive_mask(n, n, dtype, window=w) if w is not None else None
    enc_mask = additive_mask(max(n, s), max(n, s), dtype)[:, :, :n, :s]
    types = layer_types(cfg)
    for i in range(int(cfg["num_hidden_layers"])):
        p = f"layers.{i}"
        mask = sliding if types[i] == "sliding_attention" else full
        mods = (state[f"{p}.scale_shift_table"] + proj).chunk(6, dim=1)
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = mods
        x = rms_norm(h, state[f"{p}.self_attn_norm.weight"], shape.eps) * (1 + scale_a) + shift_a
        h = h + self_attention(state, f"{p}.self_attn", x, shape, rope, mask) * gate_a
        x = rms_norm(h, state[f"{p}.cross_attn_norm.weight"], shape.eps)
        h = h + cross_attention(state, f"{p}.cross_attn", x, enc, shape, enc_mask)
        x = rms_norm(h, state[f"{p}.mlp_norm.weight"], shape.eps) * (1 + scale_m) + shift_m
        h = h + mlp(state, f"{p}.mlp", x) * gate_m

    shift, scale = (state["scale_shift_table"] + temb.unsqueeze(1)).chunk(2, dim=1)
    h = rms_norm(h, state["norm_out.weight"], shape.eps) * (1 + scale) + shift
    out = F.conv_transpose1d(
        h.transpose(1, 2), state["proj_out.1.weight"], state["proj_out.1.bias"], stride=patch
    )
    return out.transpose(1, 2)[:, :original, :]
