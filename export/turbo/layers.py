"""Building blocks shared by the Qwen3 text encoder, the condition encoder and the DiT.

All follow the Qwen3 conventions that ACE-Step 1.5 reuses (upstream
``acestep/models/turbo/modeling_acestep_v15_turbo.py`` imports ``Qwen3RMSNorm``,
``Qwen3RotaryEmbedding``, ``apply_rotary_pos_emb`` and ``Qwen3MLP`` from transformers):

* RMSNorm computed in float32, cast back, then scaled by the weight;
* rotate-half RoPE with the two frequency halves concatenated (not interleaved);
* attention with per-head ``q_norm``/``k_norm`` applied *before* RoPE, grouped-query attention
  where query head ``h`` reads KV head ``h // (heads / kv_heads)`` (``repeat_kv``);
* SwiGLU MLP ``down(silu(gate(x)) * up(x))``, no biases.

Masks are built inside the graph from ``arange`` over the current sequence length, so an exported
graph keeps a dynamic length. Every module here takes batch-first ``[B, L, D]`` tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """``Qwen3RMSNorm``: ``weight * (x / sqrt(mean(x^2) + eps))`` with the mean taken in fp32."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)


class RotaryEmbedding(nn.Module):
    """``Qwen3RotaryEmbedding`` (rope_type "default"): cos/sin tables for positions ``0..L-1``.

    ``inv_freq[m] = 1 / theta^(2m/head_dim)``; the table row for position ``p`` is
    ``[p*inv_freq, p*inv_freq]`` (halves concatenated). The buffer is not persistent, so it is not
    part of any state dict (as upstream).
    """

    inv_freq: torch.Tensor

    def __init__(self, head_dim: int, theta: float) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.theta = theta
        self.register_buffer("inv_freq", self._inv_freq(), persistent=False)

    def _inv_freq(self) -> torch.Tensor:
        exponents = torch.arange(0, self.head_dim, 2, dtype=torch.int64).to(torch.float32)
        return 1.0 / (self.theta ** (exponents / self.head_dim))

    def reset_inv_freq(self) -> None:
        """Recompute the table in place (after ``to_empty`` on a meta-built module)."""
        with torch.no_grad():
            self.inv_freq.copy_(self._inv_freq().to(self.inv_freq.device))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tables ``[L, head_dim]`` for the sequence length of ``x`` ``[B, L, D]``, in x's dtype."""
        positions = torch.arange(x.shape[1], device=x.device, dtype=torch.float32)
        freqs = positions[:, None] * self.inv_freq[None, :]
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``[B, heads, L, head_dim]`` by tables ``[L, head_dim]``."""
    return x * cos + rotate_half(x) * sin


def sliding_window_mask(length: int, window: int, device: torch.device) -> torch.Tensor:
    """Boolean ``[L, L]``, True where ``|i - j| <= window`` (upstream ``create_4d_mask``,
    bidirectional sliding case: ``2*window + 1`` keys away from the edges)."""
    idx = torch.arange(length, device=device)
    return (idx[:, None] - idx[None, :]).abs() <= window


def causal_mask(length: int, device: torch.device) -> torch.Tensor:
    """Boolean ``[L, L]``, True where key ``j <= i`` (Qwen3's default causal mask)."""
    idx = torch.arange(length, device=device)
    return idx[None, :] <= idx[:, None]


class Attention(nn.Module):
    """``AceStepAttention`` / Qwen3 attention: GQA, no biases, q/k RMSNorm per head before RoPE.

    Self-attention when ``forward`` gets no ``context``; cross-attention (keys and values from
    ``context``, no RoPE, no mask) otherwise, as upstream ``AceStepAttention`` with
    ``is_cross_attention=True``.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        eps: float,
        kv_input_size: int | None = None,
    ) -> None:
        super().__init__()
        kv_in = hidden_size if kv_input_size is None else kv_input_size
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.q_proj = nn.Linear(hidden_size, num_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(kv_in, num_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(kv_in, num_kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(num_heads * head_dim, hidden_size, bias=False)
        self.q_norm = RMSNorm(head_dim, eps)
        self.k_norm = RMSNorm(head_dim, eps)

    def _heads(self, x: torch.Tensor, count: int) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], count, self.head_dim).transpose(1, 2)

    def _repeat_kv(self, x: torch.Tensor) -> torch.Tensor:
        groups = self.num_heads // self.num_kv_heads
        if groups == 1:
            return x
        b, kv, length, d = x.shape
        return x[:, :, None].expand(b, kv, groups, length, d).reshape(b, kv * groups, length, d)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x`` ``[B, L, D]``; ``mask`` boolean ``[L, S]`` (True = attend) or None."""
        source = x if context is None else context
        q = self.q_norm(self._heads(self.q_proj(x), self.num_heads))
        k = self.k_norm(self._heads(self.k_proj(source), self.num_kv_heads))
        v = self._heads(self.v_proj(source), self.num_kv_heads)
        if rope is not None:
            cos, sin = rope
            q = apply_rope(q, cos, sin)
            k = apply_rope(k, cos, sin)
        out = F.scaled_dot_product_attention(
            q,
            self._repeat_kv(k),
            self._repeat_kv(v),
            attn_mask=mask,
            scale=self.head_dim**-0.5,
        )
        out = out.transpose(1, 2).reshape(x.shape[0], x.shape[1], self.num_heads * self.head_dim)
        return self.o_proj(out)


class MLP(nn.Module):
    """``Qwen3MLP``: ``down_proj(silu(gate_proj(x)) * up_proj(x))``."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer (``AceStepEncoderLayer``, and Qwen3's decoder layer when causal).

    ``x = x + self_attn(input_layernorm(x))``; ``x = x + mlp(post_attention_layernorm(x))``.
    ``sliding_window`` set: bidirectional attention limited to ``|i - j| <= sliding_window``;
    ``causal``: key ``j <= i`` only. The mask is built from ``arange`` inside ``forward``.
    """

    def __init__(
        self,
        hidden_size: int,
        intermediate_size: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        eps: float,
        sliding_window: int | None = None,
        causal: bool = False,
    ) -> None:
        super().__init__()
        if causal and sliding_window is not None:
            raise ValueError("a causal layer with a sliding window is not supported")
        self.sliding_window = sliding_window
        self.causal = causal
        self.self_attn = Attention(hidden_size, num_heads, num_kv_heads, head_dim, eps)
        self.input_layernorm = RMSNorm(hidden_size, eps)
        self.post_attention_layernorm = RMSNorm(hidden_size, eps)
        self.mlp = MLP(hidden_size, intermediate_size)

    def attention_mask(self, x: torch.Tensor) -> torch.Tensor | None:
        if self.causal:
            return causal_mask(x.shape[1], x.device)
        if self.sliding_window is not None:
            return sliding_window_mask(x.shape[1], self.sliding_window, x.device)
        return None

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rope, self.attention_mask(x))
        return x + self.mlp(self.post_attention_layernorm(x))
