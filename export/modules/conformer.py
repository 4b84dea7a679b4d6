"""The lyric encoder: a Conformer (relative-position MHA, no conv module) under official key names.

Upstream: ``acestep/models/lyrics_utils/lyric_encoder.py: ConformerEncoder`` (with
``RelPositionMultiHeadedAttention`` and ``EspnetRelPositionalEncoding``), which
``acestep/models/ace_step_transformer.py: ACEStepTransformer2DModel.__init__`` builds as
``lyric_encoder`` with its default sizes. Keys live under ``lyric_encoder.``: ``embed.out.{0,1}``, ``encoders.{i}.self_attn.*``,
``encoders.{i}.feed_forward.w_{1,2}``, ``encoders.{i}.norm_{mha,ff}``, ``after_norm``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ConformerConfig:
    """Sizes of the lyric conformer. The official checkpoint does not record them in config.json."""

    output_size: int = 1024
    attention_heads: int = 16
    linear_units: int = 4096
    num_blocks: int = 6

    @classmethod
    def from_shapes(
        cls, shapes: dict[str, tuple[int, ...]], prefix: str = "lyric_encoder."
    ) -> ConformerConfig:
        """Infer the sizes from tensor shapes (so smaller checkpoints load too)."""
        try:
            output_size = shapes[f"{prefix}embed.out.0.weight"][0]
            heads = shapes[f"{prefix}encoders.0.self_attn.pos_bias_u"][0]
            units = shapes[f"{prefix}encoders.0.feed_forward.w_1.weight"][0]
        except KeyError as exc:
            raise ValueError(
                f"missing key {exc.args[0]!r} needed to size the lyric encoder"
            ) from exc
        blocks = 0
        while f"{prefix}encoders.{blocks}.self_attn.linear_q.weight" in shapes:
            blocks += 1
        return cls(
            output_size=output_size, attention_heads=heads, linear_units=units, num_blocks=blocks
        )


def relative_position_table(
    length: int, dim: int, device: torch.device | None = None
) -> torch.Tensor:
    """Sinusoids for relative offsets ``length-1 … 0 … -(length-1)``: [2·length−1, dim].

    Even channels hold sin(r·ω_i), odd channels cos(r·ω_i), with ω_i = 10000^(−2i/dim).
    """
    offsets = torch.arange(length - 1, -length, -1, device=device, dtype=torch.float32)
    freqs = torch.exp(
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )
    angles = offsets[:, None] * freqs[None, :]
    return torch.stack((torch.sin(angles), torch.cos(angles)), dim=-1).flatten(1)


class RelPositionAttention(nn.Module):
    """Transformer-XL style multi-head attention with relative positions (espnet variant)."""

    def __init__(self, size: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = size // heads
        self.linear_q = nn.Linear(size, size)
        self.linear_k = nn.Linear(size, size)
        self.linear_v = nn.Linear(size, size)
        self.linear_out = nn.Linear(size, size)
        self.linear_pos = nn.Linear(size, size, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(heads, self.head_dim))
        self.pos_bias_v = nn.Parameter(torch.zeros(heads, self.head_dim))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_dim)

    def forward(
        self, x: torch.Tensor, key_mask: torch.Tensor, pos: torch.Tensor, q_scale: torch.Tensor
    ) -> torch.Tensor:
        """x [B,Y,C]; key_mask [B,Y] bool; pos [2Y−1,C]; q_scale [B] (ERG: 0.01, else 1)."""
        b, y, _ = x.shape
        q = self._split(self.linear_q(x) * q_scale[:, None, None])  # [B,Y,H,D]
        k = self._split(self.linear_k(x)).transpose(1, 2)  # [B,H,Y,D]
        v = self._split(self.linear_v(x)).transpose(1, 2)
        p = self.linear_pos(pos).view(-1, self.heads, self.head_dim).transpose(0, 1)  # [H,2Y-1,D]
        content = torch.matmul((q + self.pos_bias_u).transpose(1, 2), k.transpose(-2, -1))
        position_all = torch.matmul((q + self.pos_bias_v).transpose(1, 2), p.transpose(-2, -1))
        # position_all[..., i, k] scores offset r = Y-1-k; we need r = i-j, i.e. k = Y-1-i+j.
        rows = torch.arange(y, device=x.device)
        index = (y - 1) - rows[:, None] + rows[None, :]  # [Y,Y]
        position = torch.gather(position_all, -1, index.expand(b, self.heads, y, y))
        scores = (content + position) / math.sqrt(self.head_dim)
        masked = ~key_mask[:, None, None, :]
        scores = scores.masked_fill(masked, float("-inf"))
        weights = torch.softmax(scores, dim=-1).masked_fill(masked, 0.0)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(b, y, self.heads * self.head_dim)
        return self.linear_out(out)


class FeedForward(nn.Module):
    def __init__(self, size: int, units: int) -> None:
        super().__init__()
        self.w_1 = nn.Linear(size, units)
        self.w_2 = nn.Linear(units, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(F.silu(self.w_1(x)))


class ConformerLayer(nn.Module):
    def __init__(self, size: int, heads: int, units: int) -> None:
        super().__init__()
        self.self_attn = RelPositionAttention(size, heads)
        self.feed_forward = FeedForward(size, units)
        self.norm_mha = nn.LayerNorm(size, eps=1e-5)
        self.norm_ff = nn.LayerNorm(size, eps=1e-5)

    def forward(
        self, x: torch.Tensor, key_mask: torch.Tensor, pos: torch.Tensor, q_scale: torch.Tensor
    ) -> torch.Tensor:
        x = x + self.self_attn(self.norm_mha(x), key_mask, pos, q_scale)
        return x + self.feed_forward(self.norm_ff(x))


class LinearEmbed(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.out = nn.Sequential(nn.Linear(size, size), nn.LayerNorm(size, eps=1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(x)


class LyricConformer(nn.Module):
    """Lyric embeddings [B,Y,C] + mask → encoded lyrics [B,Y,C]."""

    def __init__(self, config: ConformerConfig) -> None:
        super().__init__()
        self.config = config
        size = config.output_size
        self.embed = LinearEmbed(size)
        self.encoders = nn.ModuleList(
            ConformerLayer(size, config.attention_heads, config.linear_units)
            for _ in range(config.num_blocks)
        )
        self.after_norm = nn.LayerNorm(size, eps=1e-5)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, q_scale: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x [B,Y,C]; mask [B,Y] (int or bool); q_scale [B, num_blocks] or None (all ones)."""
        b, y, size = x.shape
        if q_scale is None:
            q_scale = x.new_ones(b, self.config.num_blocks)
        key_mask = mask.bool()
        x = self.embed(x) * math.sqrt(size)
        pos = relative_position_table(y, size, device=x.device).to(x.dtype)
        for index, layer in enumerate(self.encoders):
            x = layer(x, key_mask, pos, q_scale[:, index])
        return self.after_norm(x)
