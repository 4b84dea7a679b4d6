"""Configurations of the random-weight checkpoints: ``full`` (official sizes) and ``tiny``.

``tiny`` keeps every key name of the official checkpoint and only shrinks widths and depths. It
keeps the depths that the ERG layer ranges of ``acestep/pipeline_ace_step.py`` need: UMT5 layers
8-9 (``get_text_embeddings_null``), conformer blocks 4-5 and transformer blocks 15-19 (the hooks
registered in ``text2music_diffusion_process``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .modules.conformer import ConformerConfig
from .modules.transformer import TransformerConfig
from .modules.vocoder_config import VocoderConfig


@dataclass(frozen=True)
class Preset:
    name: str
    transformer: TransformerConfig
    conformer: ConformerConfig
    umt5: dict[str, Any]
    dcae: dict[str, Any]
    vocoder: VocoderConfig


def _umt5(d_model: int, d_kv: int, d_ff: int, layers: int, heads: int) -> dict[str, Any]:
    return {
        "architectures": ["UMT5EncoderModel"],
        "model_type": "umt5",
        "vocab_size": 256384,
        "d_model": d_model,
        "d_kv": d_kv,
        "d_ff": d_ff,
        "num_layers": layers,
        "num_decoder_layers": layers,
        "num_heads": heads,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "dropout_rate": 0.1,
        "layer_norm_epsilon": 1e-6,
        "initializer_factor": 1.0,
        "feed_forward_proj": "gated-gelu",
        "is_encoder_decoder": True,
        "tie_word_embeddings": False,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
        "scalable_attention": True,
        "torch_dtype": "float32",
    }


def _dcae(
    head_dim: int, widths: list[int], enc_layers: list[int], dec_layers: list[int]
) -> dict[str, Any]:
    blocks = ["ResBlock", "ResBlock", "ResBlock", "EfficientViTBlock"]
    return {
        "_class_name": "AutoencoderDC",
        "in_channels": 2,
        "latent_channels": 8,
        "attention_head_dim": head_dim,
        "encoder_block_types": blocks,
        "decoder_block_types": blocks,
        "encoder_block_out_channels": widths,
        "decoder_block_out_channels": widths,
        "encoder_layers_per_block": enc_layers,
        "decoder_layers_per_block": dec_layers,
        "encoder_qkv_multiscales": [[], [], [5], [5]],
        "decoder_qkv_multiscales": [[], [], [5], [5]],
        "upsample_block_type": "interpolate",
        "downsample_block_type": "Conv",
        "decoder_norm_types": "rms_norm",
        "decoder_act_fns": "silu",
        "scaling_factor": 0.41407,
    }


FULL = Preset(
    name="full",
    transformer=TransformerConfig(),
    conformer=ConformerConfig(),
    umt5=_umt5(768, 64, 2048, 12, 12),
    dcae=_dcae(32, [128, 256, 512, 1024], [2, 2, 3, 3], [3, 3, 3, 3]),
    vocoder=VocoderConfig(),
)

TINY = Preset(
    name="tiny",
    transformer=TransformerConfig(
        num_layers=20,
        num_attention_heads=4,
        attention_head_dim=16,
        max_position=4096,
        text_embedding_dim=32,
        ssl_latent_dims=(16, 16),
        lyric_hidden_size=32,
        max_width=4096,
    ),
    conformer=ConformerConfig(output_size=32, attention_heads=4, linear_units=64, num_blocks=6),
    umt5=_umt5(32, 8, 64, 10, 4),
    dcae=_dcae(8, [16, 32, 64, 128], [1, 1, 1, 1], [1, 1, 1, 1]),
    vocoder=VocoderConfig.tiny(),
)

#: Full widths, few layers (2 transformer blocks, 2 UMT5 layers, 2 conformer blocks; the DCAE and
#: vocoder as in ``full``): real-width numerics, e.g. the fp16-vs-fp32 check, at a fraction of the
#: size. ERG's layer ranges fall outside the 2 blocks and are skipped, as the runtime does.
WIDE = Preset(
    name="wide",
    transformer=replace(FULL.transformer, num_layers=2),
    conformer=replace(FULL.conformer, num_blocks=2),
    umt5=_umt5(768, 64, 2048, 2, 12),
    dcae=FULL.dcae,
    vocoder=FULL.vocoder,
)

PRESETS = {"tiny": TINY, "wide": WIDE, "full": FULL}
