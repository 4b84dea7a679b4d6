"""Model configurations of the ACE-Step 1.5 turbo checkpoint: ``full`` (official sizes) and ``tiny``.

``full`` is the published ``ACE-Step/Ace-Step1.5`` bundle: the ``AceStepConfig`` defaults of
upstream ``acestep/models/common/configuration_acestep_v15.py``, the ``Qwen3-Embedding-0.6B``
config and the Oobleck VAE config. ``tiny`` keeps every key name and only shrinks widths and
depths; its sliding window (3 tokens) is small on purpose so the window matters at test lengths.

Each dataclass writes the upstream ``config.json`` (``to_json_dict``) and reads one back
(``from_json_dict``), so a checkpoint folder describes its own sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from ..errors import CheckpointError, ExportError

SLIDING = "sliding_attention"
FULL = "full_attention"


@dataclass(frozen=True)
class Qwen3Config:
    """The text encoder (``transformers`` ``Qwen3Model``): causal, tied embeddings, no LM head."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 32768
    eos_token_id: int = 151643

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "architectures": ["Qwen3Model"],
            "attention_bias": False,
            "attention_dropout": 0.0,
            "bos_token_id": self.eos_token_id,
            "eos_token_id": self.eos_token_id,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "hidden_size": self.hidden_size,
            "initializer_range": 0.02,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.max_position_embeddings,
            "max_window_layers": self.num_hidden_layers,
            "model_type": "qwen3",
            "num_attention_heads": self.num_attention_heads,
            "num_hidden_layers": self.num_hidden_layers,
            "num_key_value_heads": self.num_key_value_heads,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_scaling": None,
            "rope_theta": self.rope_theta,
            "sliding_window": None,
            "tie_word_embeddings": True,
            "torch_dtype": "bfloat16",
            "transformers_version": "4.51.3",
            "use_cache": True,
            "use_sliding_window": False,
            "vocab_size": self.vocab_size,
        }

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> Qwen3Config:
        if data.get("use_sliding_window"):
            raise CheckpointError("text encoder config: sliding-window Qwen3 is not supported")
        return _from_json(cls, data, "text encoder config.json")


@dataclass(frozen=True)
class AceStepConfig:
    """The DiT, condition encoder and FSQ tokenizer sizes (upstream ``AceStepConfig`` names)."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    text_hidden_dim: int
    timbre_hidden_dim: int
    audio_acoustic_hidden_dim: int
    in_channels: int
    num_lyric_encoder_hidden_layers: int
    num_timbre_encoder_hidden_layers: int
    num_attention_pooler_hidden_layers: int
    fsq_dim: int
    sliding_window: int
    fsq_input_levels: tuple[int, ...] = (8, 8, 8, 5, 5, 5)
    fsq_input_num_quantizers: int = 1
    pool_window_size: int = 5
    patch_size: int = 2
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 32768
    timbre_fix_frame: int = 750
    vocab_size: int = 64003
    layer_types: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.layer_types:
            # upstream AceStepConfig default: layer 0 sliding, layer 1 full, ...
            types = tuple(SLIDING if i % 2 == 0 else FULL for i in range(self.num_hidden_layers))
            object.__setattr__(self, "layer_types", types)
        problems = []
        if len(self.layer_types) != self.num_hidden_layers:
            problems.append("len(layer_types) != num_hidden_layers")
        if any(t not in (SLIDING, FULL) for t in self.layer_types):
            problems.append(f"layer_types must be {SLIDING!r} or {FULL!r}")
        if self.in_channels != 3 * self.audio_acoustic_hidden_dim:
            problems.append("in_channels != 3 * audio_acoustic_hidden_dim")
        if self.timbre_hidden_dim != self.audio_acoustic_hidden_dim:
            problems.append("timbre_hidden_dim != audio_acoustic_hidden_dim")
        if self.head_dim % 2 or self.num_attention_heads % self.num_key_value_heads:
            problems.append("head_dim must be even and heads a multiple of kv heads")
        # upstream encoders run ``self.layers[: config.num_hidden_layers]``
        if max(self.num_lyric_encoder_hidden_layers, self.num_timbre_encoder_hidden_layers) > (
            self.num_hidden_layers
        ):
            problems.append("an encoder has more layers than num_hidden_layers")
        if problems:
            raise ExportError("invalid AceStepConfig: " + "; ".join(problems))

    def is_sliding(self, layer_idx: int) -> bool:
        return self.layer_types[layer_idx] == SLIDING

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "architectures": ["AceStepConditionGenerationModel"],
            "auto_map": {
                "AutoConfig": "configuration_acestep_v15.AceStepConfig",
                "AutoModel": "modeling_acestep_v15_turbo.AceStepConditionGenerationModel",
            },
            "model_type": "acestep",
            "attention_bias": False,
            "attention_dropout": 0.0,
            "audio_acoustic_hidden_dim": self.audio_acoustic_hidden_dim,
            "data_proportion": 0.5,
            "dtype": "bfloat16",
            "fsq_dim": self.fsq_dim,
            "fsq_input_levels": list(self.fsq_input_levels),
            "fsq_input_num_quantizers": self.fsq_input_num_quantizers,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "hidden_size": self.hidden_size,
            "in_channels": self.in_channels,
            "initializer_range": 0.02,
            "intermediate_size": self.intermediate_size,
            "is_turbo": True,
            "layer_types": list(self.layer_types),
            "max_position_embeddings": self.max_position_embeddings,
            "model_version": "turbo",
            "num_attention_heads": self.num_attention_heads,
            "num_attention_pooler_hidden_layers": self.num_attention_pooler_hidden_layers,
            "num_audio_decoder_hidden_layers": self.num_hidden_layers,
            "num_hidden_layers": self.num_hidden_layers,
            "num_key_value_heads": self.num_key_value_heads,
            "num_lyric_encoder_hidden_layers": self.num_lyric_encoder_hidden_layers,
            "num_timbre_encoder_hidden_layers": self.num_timbre_encoder_hidden_layers,
            "patch_size": self.patch_size,
            "pool_window_size": self.pool_window_size,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_scaling": None,
            "rope_theta": self.rope_theta,
            "sliding_window": self.sliding_window,
            "text_hidden_dim": self.text_hidden_dim,
            "timbre_fix_frame": self.timbre_fix_frame,
            "timbre_hidden_dim": self.timbre_hidden_dim,
            "timestep_mu": -0.4,
            "timestep_sigma": 1.0,
            "tie_word_embeddings": True,
            "transformers_version": "4.57.1",
            "use_cache": True,
            "use_sliding_window": True,
            "vocab_size": self.vocab_size,
        }

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> AceStepConfig:
        if data.get("use_sliding_window") is False:
            raise CheckpointError("DiT config: use_sliding_window false is not supported")
        if data.get("is_turbo") is not True:
            raise CheckpointError("DiT config: not a turbo checkpoint (is_turbo is not true)")
        return _from_json(cls, data, "DiT config.json")


def _from_json(cls: Any, data: dict[str, Any], what: str) -> Any:
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in data and data[f.name] is not None:
            value = data[f.name]
            kwargs[f.name] = tuple(value) if isinstance(value, list) else value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise CheckpointError(f"{what}: missing or bad fields ({exc})") from exc
    except ExportError as exc:
        raise CheckpointError(f"{what}: {exc}") from exc


def vae_config(
    encoder_hidden_size: int, decoder_channels: int, decoder_input_channels: int
) -> dict[str, Any]:
    """``diffusers.AutoencoderOobleck`` constructor arguments (48 kHz stereo, hop 1920)."""
    return {
        "encoder_hidden_size": encoder_hidden_size,
        "downsampling_ratios": [2, 4, 4, 6, 10],
        "channel_multiples": [1, 2, 4, 8, 16],
        "decoder_channels": decoder_channels,
        "decoder_input_channels": decoder_input_channels,
        "audio_channels": 2,
        "sampling_rate": 48000,
    }


VAE_CONFIG_KEYS = tuple(vae_config(1, 1, 1))


@dataclass(frozen=True)
class TurboPreset:
    name: str
    text: Qwen3Config
    dit: AceStepConfig
    vae: dict[str, Any]

    @property
    def latent_channels(self) -> int:
        return self.dit.audio_acoustic_hidden_dim


#: Size of the tiny byte-level BPE tokenizer (``tokenizer.py``): 381 BPE entries + 3 specials.
TINY_VOCAB_SIZE = 384
TINY_EOS_ID = 381

TINY = TurboPreset(
    name="tiny",
    text=Qwen3Config(
        vocab_size=TINY_VOCAB_SIZE,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        eos_token_id=TINY_EOS_ID,
    ),
    dit=AceStepConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        text_hidden_dim=32,
        timbre_hidden_dim=8,
        audio_acoustic_hidden_dim=8,
        in_channels=24,
        num_lyric_encoder_hidden_layers=2,
        num_timbre_encoder_hidden_layers=2,
        num_attention_pooler_hidden_layers=2,
        fsq_dim=64,
        sliding_window=3,
    ),
    vae=vae_config(16, 8, 8),
)

FULL_PRESET = TurboPreset(
    name="full",
    text=Qwen3Config(
        vocab_size=151669,
        hidden_size=1024,
        intermediate_size=3072,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
    ),
    dit=AceStepConfig(
        hidden_size=2048,
        intermediate_size=6144,
        num_hidden_layers=24,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        text_hidden_dim=1024,
        timbre_hidden_dim=64,
        audio_acoustic_hidden_dim=64,
        in_channels=192,
        num_lyric_encoder_hidden_layers=8,
        num_timbre_encoder_hidden_layers=4,
        num_attention_pooler_hidden_layers=2,
        fsq_dim=2048,
        sliding_window=128,
    ),
    vae=vae_config(128, 128, 64),
)

#: Full widths, two layers per stack: the fp16-vs-fp32 check at real widths, in seconds.
WIDE = TurboPreset(
    name="wide",
    text=replace(FULL_PRESET.text, num_hidden_layers=2),
    dit=replace(
        FULL_PRESET.dit,
        num_hidden_layers=2,
        num_lyric_encoder_hidden_layers=2,
        num_timbre_encoder_hidden_layers=2,
        layer_types=(),
    ),
    vae=FULL_PRESET.vae,
)

PRESETS: dict[str, TurboPreset] = {p.name: p for p in (TINY, WIDE, FULL_PRESET)}


def turbo_preset(name: str) -> TurboPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ExportError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}") from None
