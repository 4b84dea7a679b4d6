"""The official ACE-Step v1 checkpoint layout (hub repo ``ACE-Step/ACE-Step-v1-3.5B``), spec §1."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

REPO_ID: Final = "ACE-Step/ACE-Step-v1-3.5B"


@dataclass(frozen=True)
class ComponentLayout:
    name: str
    folder: str
    weights: str


TRANSFORMER: Final = ComponentLayout(
    "transformer", "ace_step_transformer", "diffusion_pytorch_model.safetensors"
)
TEXT_ENCODER: Final = ComponentLayout("text_encoder", "umt5-base", "model.safetensors")
DCAE: Final = ComponentLayout("dcae", "music_dcae_f8c8", "diffusion_pytorch_model.safetensors")
VOCODER: Final = ComponentLayout("vocoder", "music_vocoder", "diffusion_pytorch_model.safetensors")
COMPONENTS: Final = (TRANSFORMER, TEXT_ENCODER, DCAE, VOCODER)

TOKENIZER_FILES: Final = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

# Pipeline constants (spec §10–§12).
SAMPLE_RATE_MODEL: Final = 44100
SAMPLE_RATE_OUTPUT: Final = 48000
SAMPLES_PER_LATENT_FRAME: Final = 4096
MEL_FRAMES_PER_LATENT_FRAME: Final = 8
DCAE_SCALE: Final = 0.1786
DCAE_SHIFT: Final = -1.9091
MEL_MIN: Final = -11.0
MEL_MAX: Final = 3.0
TEXT_MAX_TOKENS: Final = 256

# ERG layer ranges (spec §6): [start, stop).
ERG_TAG_LAYERS: Final = (8, 10)
ERG_LYRIC_LAYERS: Final = (4, 6)
ERG_DIFFUSION_LAYERS: Final = (15, 20)
ERG_SCALE: Final = 0.01
