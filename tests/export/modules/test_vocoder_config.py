"""Tests for the vocoder hyper-parameters (``lofi_export.modules.vocoder_config``): reading and
writing the official ``music_vocoder/config.json`` and rejecting what the modules do not support."""

from __future__ import annotations

import json

import pytest
from lofi_export.modules.vocoder_config import VocoderConfig

_OFFICIAL_CONFIG_JSON = {
    "_class_name": "ADaMoSHiFiGANV1",
    "input_channels": 128,
    "depths": [3, 3, 9, 3],
    "dims": [128, 256, 384, 512],
    "drop_path_rate": 0.0,
    "kernel_sizes": [7],
    "upsample_rates": [4, 4, 2, 2, 2, 2, 2],
    "upsample_kernel_sizes": [8, 8, 4, 4, 4, 4, 4],
    "resblock_kernel_sizes": [3, 7, 11, 13],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "num_mels": 512,
    "upsample_initial_channel": 1024,
    "use_template": False,
    "pre_conv_kernel_size": 13,
    "post_conv_kernel_size": 13,
    "sampling_rate": 44100,
    "n_fft": 2048,
    "win_length": 2048,
    "hop_length": 512,
    "f_min": 40,
    "f_max": 16000,
    "n_mels": 128,
}


def test_config_reads_official_json() -> None:
    assert VocoderConfig.from_json_dict(_OFFICIAL_CONFIG_JSON) == VocoderConfig()


def test_config_json_round_trip() -> None:
    for cfg in (VocoderConfig(), VocoderConfig.tiny()):
        d = json.loads(json.dumps(cfg.to_json_dict()))
        assert d["drop_path_rate"] == 0.0 and d["use_template"] is False
        assert VocoderConfig.from_json_dict(d) == cfg
    written = VocoderConfig().to_json_dict()
    official = {k: v for k, v in _OFFICIAL_CONFIG_JSON.items() if not k.startswith("_")}
    assert written == official


@pytest.mark.parametrize(
    "override",
    [{"use_template": True}, {"num_mels": 256}, {"hop_length": 256}, {"kernel_sizes": [7, 5]}],
)
def test_config_rejects_unsupported(override: dict) -> None:
    with pytest.raises(ValueError):
        VocoderConfig.from_json_dict({**_OFFICIAL_CONFIG_JSON, **override})
