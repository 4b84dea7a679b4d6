"""The ACE-Step v1 diffusion transformer, written for export, under the official key names.

Upstream: ``acestep/models/ace_step_transformer.py: ACEStepTransformer2DModel``, with the blocks
of ``acestep/models/attention.py`` and the attention processors of
``acestep/models/customer_attention_processor.py``. ``encode`` builds the condition sequence ``[speaker | text | lyrics]`` once per generation;
``decode`` predicts the flow velocity once per denoiser step. Unused checkpoint entries
(``cross_attn.add_{q,k,v}_proj``, ``cross_attn.to_add_out``, ``projectors.*``) are not modules here;
the loader tolerates and logs them. Nothing is precomputed into buffers: RoPE tables and the
conformer's position sinusoids are computed in the forward pass from the input lengths, so the
module can be built on the meta device and exported without materialising any weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .conformer import ConformerConfig, LyricConformer

TIME_PROJ_DIM = 256
F16_MAX = 65504.0


@dataclass(frozen=True)
class TransformerConfig:
    """The fields of ``ace_step_transformer/config.json`` that the model uses."""

    in_channels: int = 8
    out_channels: int = 8
    num_layers: int = 24
    attention_head_dim: int = 128
    num_attention_heads: int = 20
    mlp_ratio: float = 2.5
    max_position: int = 32768
    rope_theta: float = 1_000_000.0
    speaker_embedding_dim: int = 512
    text_embedding_dim: int = 768
    ssl_encoder_depths: tuple[int, ...] = (8, 8)
    ssl_names: tuple[str, ...] = ("mert", "m-hubert")
    ssl_latent_dims: tuple[int, ...] = (1024, 768)
    lyric_encoder_vocab_size: int = 6693
    lyric_hidden_size: int = 1024
    patch_size: tuple[int, int] = (16, 1)
    max_height: int = 16
    max_width: int = 32768
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> TransformerConfig:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        values: dict[str, Any] = {}
        for key in known:
            if key in data:
                value = data[key]
                values[key] = tuple(value) if isinstance(value, list) else value
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**values, extra=extra)

    def to_json_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "_class_name": "ACEStepTransformer2DModel",
            "_diffusers_version": "0.27.2",
            "inner_dim": self.inner_dim,
        }
        for key in self.__dataclass_fields__:
            if key == "extra":
                continue
            value = getattr(self, key)
            out[key] = list(value) if isinstance(value, tuple) else value
        return out


def rms_norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """RMS norm over the last axis without weight; variance in float32."""
    variance = x.float().pow(2).mean(-1, keepdim=True)
    return (x.float() * torch.rsqrt(variance + eps)).to(x.dtype)


def rope_tables(
    length: int, dim: int, theta: float, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Half-split RoPE tables [length, dim]: cos/sin of p·θ^(−2m/dim), repeated for both halves."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim))
    positions = torch.arange(length, device=device, dtype=torch.float32)
    angles = positions[:, None] * inv_freq[None, :]
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The reference RoPE: interleaved pairs (2i, 2i+1) rotated with the half-split table.

    x: [B, H, N, D]; cos/sin: [N, D].
    """
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


def _out_projection(dim: int) -> nn.ModuleList:
    return nn.ModuleList([nn.Linear(dim, dim)])


class LinearSelfAttention(nn.Module):
    """ReLU-kernel linear attention (Sana style), accumulated in float32 with eps 1e-15."""

    eps = 1e-15

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = _out_projection(dim)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, q_scale: torch.Tensor
    ) -> torch.Tensor:
        b, n, c = x.shape
        d = c // self.heads
        q = (self.to_q(x) * q_scale[:, None, None]).view(b, n, self.heads, d).transpose(1, 2)
        k = self.to_k(x).view(b, n, self.heads, d).transpose(1, 2)
        v = self.to_v(x).view(b, n, self.heads, d).transpose(1, 2)
        q = F.relu(apply_rope(q, cos, sin)).float()
        k = F.relu(apply_rope(k, cos, sin)).float()
        v = v.float()
        kv = torch.matmul(k.transpose(-2, -1), v)  # [B,H,D,D]  Σ_j k_j v_jᵀ
        numerator = torch.matmul(q, kv)  # [B,H,N,D]
        denominator = torch.matmul(q, k.sum(dim=2, keepdim=True).transpose(-2, -1))  # [B,H,N,1]
        out = numerator / (denominator + self.eps)
        out = out.transpose(1, 2).reshape(b, n, c).to(x.dtype)
        return self.to_out[0](out).clamp(-F16_MAX, F16_MAX)


class CrossAttention(nn.Module):
    """Softmax attention from latent positions to the condition sequence, RoPE on both sides."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = _out_projection(dim)

    def forward(
        self,
        x: torch.Tensor,
        cond: torch.Tensor,
        cond_mask: torch.Tensor,
        rope_x: tuple[torch.Tensor, torch.Tensor],
        rope_c: tuple[torch.Tensor, torch.Tensor],
        q_scale: torch.Tensor,
    ) -> torch.Tensor:
        b, n, c = x.shape
        s = cond.shape[1]
        d = c // self.heads
        q = (self.to_q(x) * q_scale[:, None, None]).view(b, n, self.heads, d).transpose(1, 2)
        k = self.to_k(cond).view(b, s, self.heads, d).transpose(1, 2)
        v = self.to_v(cond).view(b, s, self.heads, d).transpose(1, 2)
        q = apply_rope(q, *rope_x)
        k = apply_rope(k, *rope_c)
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(d)
        scores = scores.masked_fill(cond_mask[:, None, None, :] < 0.5, float("-inf"))
        out = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.to_out[0](out.transpose(1, 2).reshape(b, n, c))


class ConvLayer(nn.Module):
    """A 1-D conv held as ``.conv`` (the checkpoint's nesting)."""

    def __init__(
        self, cin: int, cout: int, kernel: int, groups: int = 1, bias: bool = True
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class GLUMBConv(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.inverted_conv = ConvLayer(dim, hidden * 2, 1)
        self.depth_conv = ConvLayer(hidden * 2, hidden * 2, 3, groups=hidden * 2)
        self.point_conv = ConvLayer(hidden, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.silu(self.inverted_conv(x.transpose(1, 2)))
        y = self.depth_conv(y)
        value, gate = y.chunk(2, dim=1)
        return self.point_conv(value * F.silu(gate)).transpose(1, 2)


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.scale_shift_table = nn.Parameter(torch.zeros(6, dim))
        self.attn = LinearSelfAttention(dim, heads)
        self.cross_attn = CrossAttention(dim, heads)
        self.ff = GLUMBConv(dim, int(dim * mlp_ratio))

    def forward(
        self,
        h: torch.Tensor,
        temb: torch.Tensor,
        cond: torch.Tensor,
        cond_mask: torch.Tensor,
        rope_x: tuple[torch.Tensor, torch.Tensor],
        rope_c: tuple[torch.Tensor, torch.Tensor],
        q_scale: torch.Tensor,
    ) -> torch.Tensor:
        b = h.shape[0]
        mod = self.scale_shift_table[None] + temb.reshape(b, 6, -1)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod.chunk(6, dim=1)
        normed = rms_norm(h) * (1 + scale_msa) + shift_msa
        h = h + gate_msa * self.attn(normed, *rope_x, q_scale)
        h = h + self.cross_attn(h, cond, cond_mask, rope_x, rope_c, q_scale)
        normed = rms_norm(h) * (1 + scale_mlp) + shift_mlp
        return h + gate_mlp * self.ff(normed)


class TimestepEmbedding(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(TIME_PROJ_DIM, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


def timestep_sinusoid(t: torch.Tensor, dim: int = TIME_PROJ_DIM) -> torch.Tensor:
    """[cos | sin] of t·10000^(−k/half), t the raw timestep in [0, 1000] (float32)."""
    half = dim // 2
    freqs = torch.exp(
        torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(10000.0) / half)
    )
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat((torch.cos(angles), torch.sin(angles)), dim=-1)


class PatchEmbed(nn.Module):
    def __init__(self, in_channels: int, dim: int, patch: tuple[int, int]) -> None:
        super().__init__()
        hidden = in_channels * 256
        self.early_conv_layers = nn.Sequential(
            nn.Conv2d(in_channels, hidden, kernel_size=patch, stride=patch),
            nn.GroupNorm(32, hidden, eps=1e-6),
            nn.Conv2d(hidden, dim, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.early_conv_layers(x).flatten(2).transpose(1, 2)


class FinalLayer(nn.Module):
    def __init__(self, dim: int, patch: tuple[int, int], out_channels: int) -> None:
        super().__init__()
        self.patch = patch
        self.out_channels = out_channels
        self.scale_shift_table = nn.Parameter(torch.zeros(2, dim))
        self.linear = nn.Linear(dim, patch[0] * patch[1] * out_channels)

    def forward(self, h: torch.Tensor, embedded_timestep: torch.Tensor) -> torch.Tensor:
        shift, scale = (self.scale_shift_table[None] + embedded_timestep[:, None]).chunk(2, dim=1)
        y = self.linear(rms_norm(h) * (1 + scale) + shift)  # [B,T,p·q·C]
        b, t, _ = y.shape
        ph, pw = self.patch
        y = y.reshape(b, t, ph, pw, self.out_channels)  # out[b,c,p,t] = y[b,t,C·p+c] for pw=1
        return y.permute(0, 4, 2, 1, 3).reshape(b, self.out_channels, ph, t * pw)


class ACEStepTransformer(nn.Module):
    """``encode`` and ``decode`` of ACEStepTransformer2DModel, fp32, ERG as explicit q scales."""

    def __init__(self, config: TransformerConfig, conformer: ConformerConfig) -> None:
        super().__init__()
        if conformer.output_size != config.lyric_hidden_size:
            raise ValueError(
                f"lyric_hidden_size {config.lyric_hidden_size} != conformer width {conformer.output_size}"
            )
        self.config = config
        dim = config.inner_dim
        self.transformer_blocks = nn.ModuleList(
            TransformerBlock(dim, config.num_attention_heads, config.mlp_ratio)
            for _ in range(config.num_layers)
        )
        self.timestep_embedder = TimestepEmbedding(dim)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.speaker_embedder = nn.Linear(config.speaker_embedding_dim, dim)
        self.genre_embedder = nn.Linear(config.text_embedding_dim, dim)
        self.lyric_embs = nn.Embedding(config.lyric_encoder_vocab_size, config.lyric_hidden_size)
        self.lyric_encoder = LyricConformer(conformer)
        self.lyric_proj = nn.Linear(config.lyric_hidden_size, dim)
        patch = (config.patch_size[0], config.patch_size[1])
        self.proj_in = PatchEmbed(config.in_channels, dim, patch)
        self.final_layer = FinalLayer(dim, patch, config.out_channels)

    def encode(
        self,
        text_hidden: torch.Tensor,
        text_mask: torch.Tensor,
        speaker: torch.Tensor,
        lyric_ids: torch.Tensor,
        lyric_mask: torch.Tensor,
        lyric_q_scale: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Condition sequence [B, 1+L+Y, inner] and its float mask [B, 1+L+Y]."""
        b = text_hidden.shape[0]
        speaker_token = self.speaker_embedder(speaker)[:, None]
        text_tokens = self.genre_embedder(text_hidden)
        lyrics = self.lyric_encoder(self.lyric_embs(lyric_ids), lyric_mask, lyric_q_scale)
        lyric_tokens = self.lyric_proj(lyrics)
        cond = torch.cat((speaker_token, text_tokens, lyric_tokens), dim=1)
        mask = torch.cat(
            (text_hidden.new_ones(b, 1), text_mask.to(torch.float32), lyric_mask.to(torch.float32)),
            dim=1,
        )
        return cond, mask

    def decode(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        cond: torch.Tensor,
        cond_mask: torch.Tensor,
        q_scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Velocity [B,8,16,T] for latents [B,8,16,T] at timesteps [B] (σ·1000).

        ``q_scale`` [B, num_layers] multiplies the query projections (self and cross attention)
        of each block: 1 normally, 0.01 in the ERG layers of the unconditional branch.
        """
        b, _, _, t = latents.shape
        if q_scale is None:
            q_scale = latents.new_ones(b, self.config.num_layers)
        embedded_timestep = self.timestep_embedder(timestep_sinusoid(timestep))
        temb = self.t_block(embedded_timestep)
        h = self.proj_in(latents)
        head_dim = self.config.attention_head_dim
        rope_x = rope_tables(t, head_dim, self.config.rope_theta, latents.device)
        rope_c = rope_tables(cond.shape[1], head_dim, self.config.rope_theta, latents.device)
        for index, block in enumerate(self.transformer_blocks):
            h = block(h, temb, cond, cond_mask, rope_x, rope_c, q_scale[:, index])
        return self.final_layer(h, embedded_timestep)


# Checkpoint entries that exist in the official file but are never used at inference.
def unused_checkpoint_key(key: str) -> bool:
    if key.startswith("projectors."):
        return True
    parts = key.split(".")
    return (
        len(parts) >= 5
        and parts[0] == "transformer_blocks"
        and parts[2] == "cross_attn"
        and parts[3] in ("add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")
    )


def unused_checkpoint_shapes(config: TransformerConfig) -> dict[str, tuple[int, ...]]:
    """Shapes of the unused entries, so random checkpoints carry them like the real one."""
    dim = config.inner_dim
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(config.num_layers):
        for name in ("add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"):
            shapes[f"transformer_blocks.{i}.cross_attn.{name}.weight"] = (dim, dim)
            shapes[f"transformer_blocks.{i}.cross_attn.{name}.bias"] = (dim,)
    for j, ssl_dim in enumerate(config.ssl_latent_dims):
        widths = [(dim, 2 * dim), (2 * dim, 2 * dim), (2 * dim, ssl_dim)]
        for layer, (cin, cout) in zip((0, 2, 4), widths, strict=True):
            shapes[f"projectors.{j}.{layer}.weight"] = (cout, cin)
            shapes[f"projectors.{j}.{layer}.bias"] = (cout,)
    return shapes
