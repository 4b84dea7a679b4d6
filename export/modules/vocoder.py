"""The ACE-Step mel vocoder (``ADaMoSHiFiGANV1``) under the official state-dict key names.

Spec §1 (config), §11.3 (architecture), §15.4 (tiny config), trap 25. A ConvNeXt backbone maps
the 128-bin log-mel to ``dims[-1]`` channels; a HiFiGAN head (no noise template) upsamples by
``prod(upsample_rates) = hop_length`` to one waveform channel in ``[-1, 1]``.

The head's convolutions are weight-normed in the old ``torch.nn.utils.weight_norm`` layout
(``weight_g`` / ``weight_v``, dim 0), implemented here directly so the parameter names match the
checkpoint. :meth:`Vocoder.folded` turns them into plain convolutions for ONNX export.
The state dict also carries the log-mel buffers ``mel_transform.spectrogram.window`` and
``mel_transform.mel_scale.fb``; they are not used by :meth:`Vocoder.forward`.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .mel import LogMel, hann_window_periodic, slaney_mel_filterbank

logger = logging.getLogger(__name__)

_LAYER_NORM_EPS = 1e-6
_LAYER_SCALE_INIT = 1e-6
_STEM_KERNEL = 7
_RESBLOCK_INIT_STD = 0.01
_BACKBONE_INIT_STD = 0.02


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VocoderConfig:
    """Hyper-parameters of ``ADaMoSHiFiGANV1`` (defaults = the official ``config.json``)."""

    input_channels: int = 128
    depths: tuple[int, ...] = (3, 3, 9, 3)
    dims: tuple[int, ...] = (128, 256, 384, 512)
    kernel_sizes: tuple[int, ...] = (7,)
    upsample_rates: tuple[int, ...] = (4, 4, 2, 2, 2, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (8, 8, 4, 4, 4, 4, 4)
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11, 13)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5),) * 4
    num_mels: int = 512
    upsample_initial_channel: int = 1024
    pre_conv_kernel_size: int = 13
    post_conv_kernel_size: int = 13
    sampling_rate: int = 44100
    n_fft: int = 2048
    win_length: int = 2048
    hop_length: int = 512
    f_min: int = 40
    f_max: int = 16000
    n_mels: int = 128

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        if len(self.depths) != len(self.dims) or not self.dims:
            raise ValueError(f"depths {self.depths} and dims {self.dims} must have equal length")
        if len(self.kernel_sizes) != 1:
            raise ValueError(
                f"kernel_sizes must hold one kernel (parallel ConvNeXt blocks are not supported),"
                f" got {self.kernel_sizes}"
            )
        if self.num_mels != self.dims[-1]:
            raise ValueError(f"num_mels ({self.num_mels}) must equal dims[-1] ({self.dims[-1]})")
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ValueError("upsample_rates and upsample_kernel_sizes must have equal length")
        if math.prod(self.upsample_rates) != self.hop_length:
            raise ValueError(
                f"prod(upsample_rates) = {math.prod(self.upsample_rates)} must equal "
                f"hop_length = {self.hop_length}"
            )
        for rate, kernel in zip(self.upsample_rates, self.upsample_kernel_sizes, strict=True):
            if kernel < rate or (kernel - rate) % 2:
                raise ValueError(
                    f"upsample kernel {kernel} with rate {rate}: need kernel >= rate and an even "
                    "difference so each stage multiplies the length exactly"
                )
        if self.upsample_initial_channel % 2 ** len(self.upsample_rates):
            raise ValueError(
                f"upsample_initial_channel ({self.upsample_initial_channel}) must be divisible "
                f"by 2**{len(self.upsample_rates)}"
            )
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ValueError("resblock_kernel_sizes and resblock_dilation_sizes differ in length")
        odd = (
            self.kernel_sizes[0],
            self.pre_conv_kernel_size,
            self.post_conv_kernel_size,
            *self.resblock_kernel_sizes,
        )
        if any(k % 2 == 0 for k in odd):
            raise ValueError(f"convolution kernels must be odd for same-length output, got {odd}")
        if self.win_length != self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must equal n_fft ({self.n_fft})")

    @property
    def head_channels(self) -> tuple[int, ...]:
        """Channel width entering each upsample stage, then the final width."""
        c0 = self.upsample_initial_channel
        return tuple(c0 // 2**i for i in range(len(self.upsample_rates) + 1))

    @classmethod
    def from_json_dict(cls, d: Mapping[str, Any]) -> VocoderConfig:
        """Build a config from the official ``config.json`` contents.

        Missing keys take their defaults; keys starting with ``_`` (diffusers metadata) are
        ignored. ``drop_path_rate`` only matters for training and is ignored. A template
        (``use_template: true``) is not supported.
        """
        names = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            if key.startswith("_") or key == "drop_path_rate":
                continue
            if key == "use_template":
                if value:
                    raise ValueError("use_template: true (noise template convs) is not supported")
                continue
            if key not in names:
                logger.warning("ignoring unknown vocoder config key %r", key)
                continue
            kwargs[key] = _to_tuple(value)
        return cls(**kwargs)

    def to_json_dict(self) -> dict[str, Any]:
        """Return the official ``config.json`` keys (lists instead of tuples)."""
        out: dict[str, Any] = {key: _to_list(value) for key, value in asdict(self).items()}
        out["drop_path_rate"] = 0.0
        out["use_template"] = False
        return dict(sorted(out.items()))

    @classmethod
    def tiny(cls) -> VocoderConfig:
        """The small random-weight configuration of spec §15.4 (≈0.28 M parameters)."""
        return cls(
            depths=(1, 1, 1, 1),
            dims=(16, 16, 32, 32),
            num_mels=32,
            upsample_initial_channel=128,
            resblock_kernel_sizes=(3,),
            resblock_dilation_sizes=((1, 3, 5),),
        )


def _to_tuple(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_to_tuple(v) for v in value)
    return value


def _to_list(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_to_list(v) for v in value]
    return value


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
# Backbone (ConvNeXt)
# --------------------------------------------------------------------------------------------


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
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for channel_layer, stage in zip(self.channel_layers, self.stages, strict=True):
            x = stage(channel_layer(x))
        return self.norm(x)


# --------------------------------------------------------------------------------------------
# Head (HiFiGAN)
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
        return ResBlock([c.folded() for c in self.convs1], [c.folded() for c in self.convs2])

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
            self.conv_pre.folded(),
            [up.folded() for up in self.ups],
            [block.folded() for block in self.resblocks],
            self.conv_post.folded(),
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


# --------------------------------------------------------------------------------------------
# Vocoder
# --------------------------------------------------------------------------------------------


class Vocoder(nn.Module):
    """``ADaMoSHiFiGANV1`` with the official state-dict layout; ``mel [B,128,F] → wav [B,1,hop·F]``.

    ``load_state_dict`` accepts the checkpoint as is (713 tensors for the official config).
    """

    def __init__(self, config: VocoderConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = ConvNeXtBackbone(config)
        self.head = HiFiGANHead.build(config)
        window = torch.from_numpy(hann_window_periodic(config.win_length))
        fb = torch.from_numpy(
            slaney_mel_filterbank(
                config.n_fft // 2 + 1,
                float(config.f_min),
                float(config.f_max),
                config.n_mels,
                config.sampling_rate,
            )
        )
        self.mel_transform = LogMel(window, fb, hop_length=config.hop_length)
        self.eval()

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """Vocode a log-mel ``[B, input_channels, F]`` into audio ``[B, 1, hop_length·F]``."""
        return self.head(self.backbone(mel))

    def folded(self) -> FoldedVocoder:
        """A module for export with plain convolution weights.

        The backbone and all biases are shared with this module; only the folded head weights
        are new tensors.
        """
        with torch.no_grad():
            head = self.head.folded()
        return FoldedVocoder(self.backbone, head).train(self.training)


class FoldedVocoder(nn.Module):
    """The vocoder with weight norm folded away: ``mel [B,128,F] → wav [B,1,hop·F]``."""

    def __init__(self, backbone: ConvNeXtBackbone, head: HiFiGANHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(mel))


# --------------------------------------------------------------------------------------------
# Config inference
# --------------------------------------------------------------------------------------------


def expected_state_dict_shapes(config: VocoderConfig) -> dict[str, tuple[int, ...]]:
    """Key → shape of the state dict a :class:`Vocoder` with ``config`` has (no weights built)."""
    with torch.device("meta"):
        model = Vocoder(config)
    return {key: tuple(t.shape) for key, t in model.state_dict().items()}


def infer_vocoder_config(
    config_json: Mapping[str, Any], state_dict_shapes: Mapping[str, Sequence[int]]
) -> VocoderConfig:
    """Read the config from ``config.json`` and check it against the checkpoint's shapes.

    Args:
        config_json: Parsed ``music_vocoder/config.json``.
        state_dict_shapes: Key → shape of every tensor in the checkpoint.

    Returns:
        The config.

    Raises:
        ValueError: The config is invalid, or a key is missing, unexpected or of another shape
            than the config implies; the message names the first offending key.
    """
    config = VocoderConfig.from_json_dict(config_json)
    expected = expected_state_dict_shapes(config)
    for key, shape in expected.items():
        if key not in state_dict_shapes:
            raise ValueError(f"vocoder checkpoint lacks {key!r} (config implies shape {shape})")
        actual = tuple(int(s) for s in state_dict_shapes[key])
        if actual != shape:
            raise ValueError(
                f"vocoder checkpoint key {key!r} has shape {actual}, config.json implies {shape}"
            )
    for key in state_dict_shapes:
        if key not in expected:
            raise ValueError(f"vocoder checkpoint has unexpected key {key!r} for this config.json")
    return config
