"""The ACE-Step mel vocoder (``ADaMoSHiFiGANV1``) under the official state-dict key names.

Upstream: ``acestep/music_dcae/music_vocoder.py: ADaMoSHiFiGANV1`` (``decode`` is
``head(backbone(mel))``). A ConvNeXt backbone (:mod:`.vocoder_backbone`) maps the 128-bin log-mel
to ``dims[-1]`` channels; a HiFi-GAN head (:mod:`.vocoder_head`) upsamples by
``prod(upsample_rates) = hop_length`` to one waveform channel in ``[-1, 1]``. The weight norm of
the head must be folded per dim 0, which for a transposed convolution is its *input*-channel axis
(:meth:`Vocoder.folded`).

The state dict also carries the log-mel buffers ``mel_transform.spectrogram.window`` and
``mel_transform.mel_scale.fb`` (``acestep/music_dcae/music_log_mel.py: LogMelSpectrogram``); they
are not used by :meth:`Vocoder.forward`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .mel import LogMel, hann_window_periodic, slaney_mel_filterbank
from .vocoder_backbone import ConvNeXtBackbone
from .vocoder_config import VocoderConfig
from .vocoder_head import HiFiGANHead


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
