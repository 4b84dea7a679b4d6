"""The vocoder's ConvNeXt backbone: 128-bin log-mel → ``dims[-1]`` channels at the same frame rate.

Upstream: ``acestep/music_dcae/music_vocoder.py: ConvNeXtEncoder``, ``ConvNeXtBlock`` and its
channels-first ``LayerNorm``. The stem convolution pads by replication while every other
convolution pads with zeros, and the blocks use the exact (erf) GELU.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from .vocoder_config import VocoderConfig

_LAYER_NORM_EPS = 1e-6
_LAYER_SCALE_INIT = 1e-6
_STEM_KERNEL = 7
_BACKBONE_INIT_STD = 0.02


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over dim 1 of ``[B, C, T]``: biased variance, eps inside the square root."""

    def __init__(self, channels: int, eps: float = _LAYER_NORM_EPS) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None] * x + self.bias[:, None]


class ConvNeXtBlock(nn.Module):
    """``x + gamma * pwconv2(GELU(pwconv1(LayerNorm(dwconv(x)))))`` with channels-last MLP."""

    def __init__(self, dim: int, kernel_size: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=(kernel_size - 1) // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=_LAYER_NORM_EPS)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU(approximate="none")
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), _LAYER_SCALE_INIT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).transpose(1, 2)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)


class ConvNeXtBackbone(nn.Module):
    """Stem, three channel transitions, four stages of ConvNeXt blocks, final LayerNorm.

    Keys: ``channel_layers.0.{0: Conv1d k7 replicate-padded, 1: LayerNorm}``,
    ``channel_layers.{i>0}.{0: LayerNorm, 1: Conv1d 1x1}``, ``stages.{s}.{j}.*``, ``norm.*``.
    """

    def __init__(self, config: VocoderConfig) -> None:
        super().__init__()
        dims = config.dims
        stem = nn.Sequential(
            nn.Conv1d(
                config.input_channels,
                dims[0],
                _STEM_KERNEL,
                padding=(_STEM_KERNEL - 1) // 2,
                padding_mode="replicate",
            ),
            ChannelsFirstLayerNorm(dims[0]),
        )
        transitions = [
            nn.Sequential(ChannelsFirstLayerNorm(c_in), nn.Conv1d(c_in, c_out, 1))
            for c_in, c_out in itertools.pairwise(dims)
        ]
        self.channel_layers = nn.ModuleList([stem, *transitions])
        self.stages = nn.ModuleList(
            nn.Sequential(*(ConvNeXtBlock(dim, config.kernel_sizes[0]) for _ in range(depth)))
            for dim, depth in zip(dims, config.depths, strict=True)
        )
        self.norm = ChannelsFirstLayerNorm(dims[-1])
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Linear)) and not module.weight.is_meta:
                nn.init.trunc_normal_(module.weight, std=_BACKBONE_INIT_STD)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for channel_layer, stage in zip(self.channel_layers, self.stages, strict=True):
            x = stage(channel_layer(x))
        return self.norm(x)
