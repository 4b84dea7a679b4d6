"""The Qwen3-style building blocks shared by the text encoder, the condition encoders and the DiT.

Functional versions of transformers' ``Qwen3RMSNorm``, ``Qwen3RotaryEmbedding`` (default rope),
``apply_rotary_pos_emb`` (rotate-half), ``repeat_kv``, ``Qwen3MLP`` and the SDPA attention path,
plus upstream's ``create_4d_mask`` and ``AceStepAttention`` / ``AceStepEncoderLayer``
(``modeling_acestep_v15_turbo.py``). Weights come from a state dict by key prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .weights import State


@dataclass(frozen=True)
class AttnShape:
    heads: int
    kv_heads: int
    head_dim: int
    eps: float


def linear(state: State, prefix: str, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, state[f"{prefix}.weight"], state.get(f"{prefix}.bias"))


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``Qwen3RMSNorm``: variance in float32, then ``weight * x.to(input dtype)``."""
    dtype = x.dtype
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(dtype)


def rope_tables(
    length: int, head_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """``Qwen3RotaryEmbedding`` (default rope): cos/sin ``[1, L, head_dim]``, halves concatenated,
    computed in float32 for positions ``0..L-1`` and cast to ``dtype``."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    positions = torch.arange(length, dtype=torch.float32)
    freqs = positions[:, None] * inv_freq[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)[None]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``apply_rotary_pos_emb`` on ``[B, heads, L, D]`` (unsqueeze_dim=1)."""
    return x * cos[:, None] + _rotate_half(x) * sin[:, None]


def repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """transformers ``repeat_kv``: KV head ``h`` serves query heads ``h*groups .. h*groups+groups-1``."""
    if groups == 1:
        return x
    b, kv, length, d = x.shape
    return x[:, :, None].expand(b, kv, groups, length, d).reshape(b, kv * groups, length, d)


def additive_mask(
    q_len: int,
    k_len: int,
    dtype: torch.dtype,
    window: int | None = None,
    causal: bool = False,
) -> torch.Tensor:
    """Upstream ``create_4d_mask`` without a padding mask (batch 1): ``[1, 1, q_len, k_len]`` of
    0 where visible and ``finfo(dtype).min`` elsewhere; ``window`` keeps ``|i - j| <= window``."""
    i = torch.arange(q_len)[:, None]
    j = torch.arange(k_len)[None, :]
    valid = torch.ones(q_len, k_len, dtype=torch.bool)
    if causal:
        valid &= i - j >= 0
    if window is not None:
        valid &= (i - j).abs() <= window
    out = torch.full((1, 1, q_len, k_len), torch.finfo(dtype).min, dtype=dtype)
    return out.masked_fill(valid[None, None], 0.0)


def sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float,
    causal: bool = False,
) -> torch.Tensor:
    """transformers' ``sdpa_attention_forward``: repeat_kv, then SDPA; returns ``[B, L, H*D]``."""
    groups = q.shape[1] // k.shape[1]
    k, v = repeat_kv(k, groups), repeat_kv(v, groups)
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, scale=scale, is_causal=causal and mask is None
    )
    b, _, length, _ = out.shape
    return out.transpose(1, 2).reshape(b, length, -1)


def _heads(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    """``[B, L, H*D]`` → ``[B, L, H, D]``."""
    return x.view(*x.shape[:-1], -1, head_dim)


def self_attention(
    state: State,
    prefix: str,
    x: torch.Tensor,
    shape: AttnShape,
    rope: tuple[torch.Tensor, torch.Tensor],
    mask: torch.Tensor | None,
    causal: bool = False,
) -> torch.Tensor:
    """``AceStepAttention`` / ``Qwen3Attention`` self-attention: per-head q/k RMSNorm, then RoPE."""
    q = rms_norm(
        _heads(linear(state, f"{prefix}.q_proj", x), shape.head_dim),
        state[f"{prefix}.q_norm.weight"],
        shape.eps,
    ).transpose(1, 2)
    k = rms_norm(
        _heads(linear(state, f"{prefix}.k_proj", x), shape.head_dim),
        state[f"{prefix}.k_norm.weight"],
        shape.eps,
    ).transpose(1, 2)
    v = _heads(linear(state, f"{prefix}.v_proj", x), shape.head_dim).transpose(1, 2)
    cos, sin = rope
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    out = sdpa(q, k, v, mask, shape.head_dim**-0.5, causal=causal)
    return linear(state, f"{prefix}.o_proj", out)


def cross_attention(
    state: State,
    prefix: str,
    x: torch.Tensor,
    enc: torch.Tensor,
    shape: AttnShape,
    mask: torch.Tensor | None,
) -> torch.Tensor:
    """``AceStepAttention`` with ``is_cross_attention``: K/V from ``enc``, no RoPE."""
    q = rms_norm(
        _heads(linear(state, f"{prefix}.q_proj", x), shape.head_dim),
        state[f"{prefix}.q_norm.weight"],
        shape.eps,
    ).transpose(1, 2)
    k = rms_norm(
        _heads(linear(state, f"{prefix}.k_proj", enc), shape.head_dim),
        state[f"{prefix}.k_norm.weight"],
        shape.eps,
    ).transpose(1, 2)
    v = _heads(linear(state, f"{prefix}.v_proj", enc), shape.head_dim).transpose(1, 2)
    out = sdpa(q, k, v, mask, shape.head_dim**-0.5)
    return linear(state, f"{prefix}.o_proj", out)


def mlp(state: State, prefix: str, x: torch.Tensor) -> torch.Tensor:
    """``Qwen3MLP`` with SiLU: ``down(silu(gate(x)) * up(x))``."""
    gate = F.silu(linear(state, f"{prefix}.gate_proj", x))
    return linear(state, f"{prefix}.down_proj", gate * linear(state, f"{prefix}.up_proj", x))


def pre_norm_layer(
    state: State,
    prefix: str,
    x: torch.Tensor,
    shape: AttnShape,
    rope: tuple[torch.Tensor, torch.Tensor],
    mask: torch.Tensor | None,
    causal: bool = False,
) -> torch.Tensor:
    """``AceStepEncoderLayer`` (and ``Qwen3DecoderLayer``): pre-norm attention, pre-norm MLP."""
    h = rms_norm(x, state[f"{prefix}.input_layernorm.weight"], shape.eps)
    x = x + self_attention(state, f"{prefix}.self_attn", h, shape, rope, mask, causal)
    h = rms_norm(x, state[f"{prefix}.post_attention_layernorm.weight"], shape.eps)
    return x + mlp(state, f"{prefix}.mlp", h)
