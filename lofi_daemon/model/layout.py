"""The official ACE-Step v1 checkpoint layout (hub repo ``ACE-Step/ACE-Step-v1-3.5B``).

Folder and file names are those ``acestep/pipeline_ace_step.py: ACEStepPipeline.load_checkpoint``
loads. The exporter reads checkpoints in this layout; the installer downloads exactly these files.
"""

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

# Pipeline constants: 44.1 kHz model audio, 4096 samples (8 mel frames of 512) per latent frame,
# the DCAE latent scaling and mel range of ``acestep/music_dcae/music_dcae_pipeline.py: MusicDCAE``,
# and the 256-token prompt limit of ``ACEStepPipeline.get_text_embeddings``.
SAMPLE_RATE_MODEL: Final = 44100
SAMPLE_RATE_OUTPUT: Final = 48000
SAMPLES_PER_LATENT_FRAME: Final = 4096
MEL_FRAMES_PER_LATENT_FRAME: Final = 8
DCAE_SCALE: Final = 0.1786
DCAE_SHIFT: Final = -1.9091
MEL_MIN: Final = -11.0
MEL_MAX: Final = 3.0
TEXT_MAX_TOKENS: Final = 256

# ERG layer ranges, [start, stop), and the query scale: the hooks of
# ``acestep/pipeline_ace_step.py: get_text_embeddings_null``, ``text2music_diffusion_process``.
ERG_TAG_LAYERS: Final = (8, 10)
ERG_LYRIC_LAYERS: Final = (4, 6)
ERG_DIFFUSION_LAYERS: Final = (15, 20)
ERG_SCALE: Final = 0.01
