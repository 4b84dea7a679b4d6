"""Hyper-parameters of the ACE-Step mel vocoder (``ADaMoSHiFiGANV1``) and their ``config.json``.

Upstream: ``acestep/music_dcae/music_vocoder.py: ADaMoSHiFiGANV1.__init__``; its argument
defaults are the values of the released ``music_vocoder/config.json``, and :meth:`VocoderConfig.tiny`
shrinks the widths and depths while keeping the key names.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

log = logging.getLogger(__name__)


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
                log.warning("ignoring unknown vocoder config key %r", key)
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
        """A small random-weight configuration with the official key names (≈0.28 M parameters)."""
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
