"""The vocoder's HiFi-GAN head, with weight-normed convolutions under the checkpoint's key names.

Upstream: ``acestep/music_dcae/music_vocoder.py: HiFiGANGenerator`` and ``ResBlock1`` (built with
``use_template=False``, so without the noise-template convolutions). The convolutions use the old
``torch.nn.utils.weight_norm`` layout (``weight_g`` / ``weight_v``, norm over every dim but dim 0),
implemented here directly so that the parameter names match the checkpoint; ``folded()`` turns
them into plain convolutions for ONNX export.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .vocoder_config import VocoderConfig

_RESBLOCK_INIT_STD = 0.01


# --------------------------------------------------------------------------------------------
# Weight norm
# --------------------------------------------------------------------------------------------


def weight_norm_weight(weight_g: torch.Tensor, weight_v: torch.Tensor) -> torch.Tensor:
    """Effective weight ``g * v / ||v||``, the norm taken over every dim except dim 0."""
    norm = torch.linalg.vector_norm(weight_v, dim=tuple(range(1, weight_v.ndim)), keepdim=True)
    return weight_v * (weight_g / norm)


class _WeightNormConvBase(nn.Module):
    """Shared parameter layout: ``bias``, ``weight_g`` ``[shape[0], 1, 1]``, ``weight_v``."""

    def __init__(self, v_shape: tuple[int, int, int], out_channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_g = nn.Parameter(torch.ones(v_shape[0], 1, 1))
        self.weight_v = nn.Parameter(torch.empty(v_shape))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """HiFiGAN init: ``v ~ N(0, 0.01)``, ``g = ||v||`` (so the effective weight equals v)."""
        with torch.no_grad():
            if self.weight_v.is_meta:
                return
            nn.init.normal_(self.weight_v, 0.0, _RESBLOCK_INIT_STD)
            dims = tuple(range(1, self.weight_v.ndim))
            self.weight_g.copy_(torch.linalg.vector_norm(self.weight_v, dim=dims, keepdim=True))
            self.bias.zero_()

    @property
    def weight(self) -> torch.Tensor:
        """The effective (folded) weight."""
        return weight_norm_weight(self.weight_g, self.weight_v)


class WeightNormConv1d(_WeightNormConvBase):
    """``Conv1d`` with weight norm over dim 0 (output channels); ``v`` is ``[out, in, k]``."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, *, dilation: int = 1
    ) -> None:
        super().__init__((out_channels, in_channels, kernel_size), out_channels)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.padding = dilation * (kernel_size - 1) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.weight, self.bias, padding=self.padding, dilation=self.dilation)

    def folded(self) -> nn.Conv1d:
        """A plain ``Conv1d`` with the folded weight; the bias parameter is shared."""
        conv = nn.Conv1d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            padding=self.padding,
            dilation=self.dilation,
            device="meta",
        )
        conv.weight = nn.Parameter(self.weight.detach(), requires_grad=False)
        conv.bias = self.bias
        return conv


class WeightNormConvTranspose1d(_WeightNormConvBase):
    """``ConvTranspose1d`` with weight norm over dim 0, which is the *input*-channel axis.

    ``v`` is ``[in, out, k]`` and ``g`` is ``[in, 1, 1]``. Padding ``(k - stride) / 2`` makes
    the output exactly ``stride`` times longer.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__((in_channels, out_channels, kernel_size), out_channels)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = (kernel_size - stride) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose1d(
            x, self.weight, self.bias, stride=self.stride, padding=self.padding
        )

    def folded(self) -> nn.ConvTranspose1d:
        """A plain ``ConvTranspose1d`` with the folded weight; the bias parameter is shared."""
        conv = nn.ConvTranspose1d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            device="meta",
        )
        conv.weight = nn.Parameter(self.weight.detach(), requires_grad=False)
        conv.bias = self.bias
        return conv


# --------------------------------------------------------------------------------------------
# Head (HiFi-GAN)
# --------------------------------------------------------------------------------------------


class ResBlock(nn.Module):
    """HiFiGAN ``ResBlock1``: for each dilation, ``x += convs2(SiLU(convs1_d(SiLU(x))))``."""

    def __init__(self, convs1: Sequence[nn.Module], convs2: Sequence[nn.Module]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(convs1)
        self.convs2 = nn.ModuleList(convs2)

    @classmethod
    def build(cls, channels: int, kernel_size: int, dilations: Sequence[int]) -> ResBlock:
        """A weight-normed block."""
        return cls(
            [WeightNormConv1d(channels, channels, kernel_size, dilation=d) for d in dilations],
            [WeightNormConv1d(channels, channels, kernel_size) for _ in dilations],
        )

    def folded(self) -> ResBlock:
        """The same block with plain convolutions."""
        return ResBlock([_fold(c) for c in self.convs1], [_fold(c) for c in self.convs2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv1, conv2 in zip(self.convs1, self.convs2, strict=True):
            x = x + conv2(F.silu(conv1(F.silu(x))))
        return x


class HiFiGANHead(nn.Module):
    """``conv_pre``, then per stage ``SiLU → ups[i] → mean of its resblocks``, then
    ``SiLU → conv_post → tanh``. Resblock ``i * n + j`` is kernel ``j`` of stage ``i``."""

    def __init__(
        self,
        conv_pre: nn.Module,
        ups: Sequence[nn.Module],
        resblocks: Sequence[nn.Module],
        conv_post: nn.Module,
    ) -> None:
        super().__init__()
        if len(resblocks) % len(ups):
            raise ValueError(f"{len(resblocks)} resblocks do not divide into {len(ups)} stages")
        self.conv_pre = conv_pre
        self.ups = nn.ModuleList(ups)
        self.resblocks = nn.ModuleList(resblocks)
        self.conv_post = conv_post
        self.kernels_per_stage = len(resblocks) // len(ups)

    @classmethod
    def build(cls, config: VocoderConfig) -> HiFiGANHead:
        """A weight-normed head for ``config``."""
        chans = config.head_channels
        ups = [
            WeightNormConvTranspose1d(chans[i], chans[i + 1], k, u)
            for i, (u, k) in enumerate(
                zip(config.upsample_rates, config.upsample_kernel_sizes, strict=True)
            )
        ]
        resblocks = [
            ResBlock.build(chans[i + 1], k, d)
            for i in range(len(ups))
            for k, d in zip(
                config.resblock_kernel_sizes, config.resblock_dilation_sizes, strict=True
            )
        ]
        return cls(
            WeightNormConv1d(config.num_mels, chans[0], config.pre_conv_kernel_size),
            ups,
            resblocks,
            WeightNormConv1d(chans[-1], 1, config.post_conv_kernel_size),
        )

    def folded(self) -> HiFiGANHead:
        """The same head with every weight norm folded into a plain convolution."""
        return HiFiGANHead(
            _fold(self.conv_pre),
            [_fold(up) for up in self.ups],
            [_fold(block) for block in self.resblocks],
            _fold(self.conv_post),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(x)
        n = self.kernels_per_stage
        for i, up in enumerate(self.ups):
            x = up(F.silu(x))
            blocks = self.resblocks[i * n : (i + 1) * n]
            acc = blocks[0](x)
            for block in blocks[1:]:
                acc = acc + block(x)
            x = acc / n
        return torch.tanh(self.conv_post(F.silu(x)))


def _fold(module: nn.Module) -> nn.Module:
    """The plain-convolution form of a weight-normed convolution or resblock."""
    if isinstance(module, (WeightNormConv1d, WeightNormConvTranspose1d, ResBlock)):
        return module.folded()
    raise TypeError(f"{type(module).__name__} is already folded")
