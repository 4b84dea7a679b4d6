"""The ACE-Step 1.5 DiT (upstream ``AceStepDiTModel``), one velocity evaluation at batch 1.

State-dict keys are exactly the upstream ``decoder.*`` names without the prefix: ``layers.{i}.*``
(``scale_shift_table``, ``self_attn_norm``, ``self_attn``, ``cross_attn_norm``, ``cross_attn``,
``mlp_norm``, ``mlp``), ``proj_in.1.*`` (Conv1d), ``proj_out.1.*`` (ConvTranspose1d),
``time_embed.*``, ``time_embed_r.*``, ``condition_embedder.*``, ``norm_out.weight`` and
``scale_shift_table``. The ``.1`` comes from upstream's ``nn.Sequential(transpose, conv,
transpose)``, which is kept here.

Forward (``AceStepDiTModel.forward`` / ``AceStepDiTLayer.forward``, doc §7.3):

* ``temb, proj = time_embed(t) + time_embed_r(t - r)`` with ``r = t`` (turbo inference), each
  from a cos-first 256-wide sinusoid of ``t * 1000``;
* ``h = proj_in(cat([context_latents, hidden_states], -1))`` patchifies 2 frames per token;
* each layer: AdaLN-modulated gated self-attention (RoPE over token positions, sliding window
  ``|i-j| <= sliding_window`` on even layers, no mask on odd ones), un-modulated cross-attention
  to ``condition_embedder(encoder_hidden_states)`` (no RoPE, no mask: upstream overwrites its
  masks with None), AdaLN-modulated gated MLP;
* ``h = norm_out(h) * (1 + scale) + shift`` with ``(shift, scale)`` from ``temb`` (not ``proj``),
  then ``proj_out`` back to frames.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import MLP, Attention, RMSNorm, RotaryEmbedding, sliding_window_mask
from .presets import AceStepConfig

TIMESTEP_CHANNELS = 256  # upstream TimestepEmbedding(in_channels=256, ...)
TIMESTEP_SCALE = 1000.0
MAX_PERIOD = 10000.0


class _Transpose(nn.Module):
    """Swap the time and channel axes (upstream's ``Lambda(lambda x: x.transpose(1, 2))``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


class TimestepEmbedding(nn.Module):
    """Upstream ``TimestepEmbedding``: ``t [B]`` -> ``temb [B, H]``, ``proj [B, 6, H]``."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(TIMESTEP_CHANNELS, hidden_size)
        self.linear_2 = nn.Linear(hidden_size, hidden_size)
        self.time_proj = nn.Linear(hidden_size, 6 * hidden_size)

    @staticmethod
    def sinusoid(t: torch.Tensor) -> torch.Tensor:
        """``[cos(tau*f), sin(tau*f)]`` with ``tau = t*1000`` (in t's dtype), ``f`` in fp32."""
        half = TIMESTEP_CHANNELS // 2
        k = torch.arange(half, dtype=torch.float32, device=t.device)
        freqs = torch.exp(-math.log(MAX_PERIOD) * k / half)
        args = (t * TIMESTEP_SCALE)[:, None].float() * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        temb = self.linear_2(torch.nn.functional.silu(self.linear_1(self.sinusoid(t).to(t.dtype))))
        proj = self.time_proj(torch.nn.functional.silu(temb))
        return temb, proj.unflatten(1, (6, -1))


class DiTLayer(nn.Module):
    """Upstream ``AceStepDiTLayer`` (with cross-attention)."""

    def __init__(self, cfg: AceStepConfig, layer_idx: int) -> None:
        super().__init__()
        h, eps = cfg.hidden_size, cfg.rms_norm_eps
        heads = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, eps)
        self.sliding_window = cfg.sliding_window if cfg.is_sliding(layer_idx) else None
        self.self_attn_norm = RMSNorm(h, eps)
        self.self_attn = Attention(h, *heads)
        self.cross_attn_norm = RMSNorm(h, eps)
        self.cross_attn = Attention(h, *heads)
        self.mlp_norm = RMSNorm(h, eps)
        self.mlp = MLP(h, cfg.intermediate_size)
        self.scale_shift_table = nn.Parameter(torch.zeros(1, 6, h))

    def forward(
        self,
        h: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        proj: torch.Tensor,
        context: torch.Tensor,
    ) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = (self.scale_shift_table + proj).chunk(6, 1)
        mask = None
        if self.sliding_window is not None:
            mask = sliding_window_mask(h.shape[1], self.sliding_window, h.device)
        x = (self.self_attn_norm(h) * (1 + scale1) + shift1).type_as(h)
        h = (h + self.self_attn(x, rope, mask) * gate1).type_as(h)
        h = h + self.cross_attn(self.cross_attn_norm(h).type_as(h), context=context)
        x = (self.mlp_norm(h) * (1 + scale2) + shift2).type_as(h)
        return (h + self.mlp(x) * gate2).type_as(h)


class DiT(nn.Module):
    """``forward(hidden_states, timestep, encoder_hidden_states, context_latents) -> velocity``.

    * ``hidden_states`` ``[1, T, C]``: the noisy latent x_t, time-major. **T must be even**
      (patch size 2): upstream zero-pads an odd T by one frame and crops the output; here the
      caller pads (latent and context alike) and crops, so the graph has no parity branch.
    * ``timestep`` ``[1]``: t in [0, 1] (multiplied by 1000 inside); ``timestep_r`` = t.
    * ``encoder_hidden_states`` ``[1, S, H]``: packed ``[lyrics | timbre | text]`` conditions.
    * ``context_latents`` ``[1, T, 2C]``: ``[src latents | chunk mask]``.

    Returns the flow velocity ``[1, T, C]`` (x_{t-dt} = x_t - v * dt).
    """

    def __init__(self, cfg: AceStepConfig) -> None:
        super().__init__()
        self.config = cfg
        h = cfg.hidden_size
        self.rotary_emb = RotaryEmbedding(cfg.head_dim, cfg.rope_theta)
        self.layers = nn.ModuleList(DiTLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        p = cfg.patch_size
        self.proj_in = nn.Sequential(
            _Transpose(), nn.Conv1d(cfg.in_channels, h, p, stride=p), _Transpose()
        )
        self.time_embed = TimestepEmbedding(h)
        self.time_embed_r = TimestepEmbedding(h)
        self.condition_embedder = nn.Linear(h, h)
        self.norm_out = RMSNorm(h, cfg.rms_norm_eps)
        self.proj_out = nn.Sequential(
            _Transpose(),
            nn.ConvTranspose1d(h, cfg.audio_acoustic_hidden_dim, p, stride=p),
            _Transpose(),
        )
        self.scale_shift_table = nn.Parameter(torch.zeros(1, 2, h))

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        context_latents: torch.Tensor,
    ) -> torch.Tensor:
        temb_t, proj_t = self.time_embed(timestep)
        temb_r, proj_r = self.time_embed_r(timestep - timestep)  # t - r with r = t
        temb = temb_t + temb_r
        proj = proj_t + proj_r
        h = self.proj_in(torch.cat([context_latents, hidden_states], dim=-1))
        context = self.condition_embedder(encoder_hidden_states)
        rope = self.rotary_emb(h)
        for layer in self.layers:
            h = layer(h, rope, proj, context)
        shift, scale = (self.scale_shift_table + temb.unsqueeze(1)).chunk(2, dim=1)
        h = (self.norm_out(h) * (1 + scale) + shift).type_as(h)
        return self.proj_out(h)
