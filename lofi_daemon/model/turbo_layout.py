"""The ACE-Step 1.5 model contract: the official checkpoint layout and what its export contains.

Checkpoint: the hub repository ``ACE-Step/Ace-Step1.5`` (upstream
``acestep/model_downloader.py``: ``MAIN_MODEL_REPO``), of which the DiT-only path needs three
folders: the turbo DiT with its condition encoder (``acestep-v15-turbo``, one safetensors file
holding ``decoder.*``, ``encoder.*``, ``tokenizer.*``, ``detokenizer.*`` and
``null_condition_emb``, plus ``silence_latent.pt``), the Oobleck VAE (``vae``) and the Qwen3 text
encoder with its tokenizer (``Qwen3-Embedding-0.6B``). The 5 Hz planner LM in the same repository
is never needed.

Export: the graphs and arrays below, named in the model directory's ``manifest.json`` under
``graphs`` and ``arrays`` (see ``docs/ace-step-1.5.md``). The exporter writes them from this
module's names; the runtime reads them back through the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

BACKEND: Final = "ace-step-1.5"
VARIANT: Final = "turbo"
REPO_ID: Final = "ACE-Step/Ace-Step1.5"


@dataclass(frozen=True)
class Folder:
    """One folder of the checkpoint: its name, weights file and the other files it must have."""

    name: str
    weights: str
    files: tuple[str, ...]

    def paths(self) -> tuple[str, ...]:
        return tuple(f"{self.name}/{f}" for f in (self.weights, *self.files))


DIT: Final = Folder("acestep-v15-turbo", "model.safetensors", ("config.json", "silence_latent.pt"))
VAE: Final = Folder("vae", "diffusion_pytorch_model.safetensors", ("config.json",))
TEXT_ENCODER: Final = Folder(
    "Qwen3-Embedding-0.6B",
    "model.safetensors",
    (
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
        "merges.txt",
        "added_tokens.json",
        "special_tokens_map.json",
    ),
)
FOLDERS: Final = (DIT, VAE, TEXT_ENCODER)
#: What an install downloads (and nothing else: never ``acestep-5Hz-lm-*``).
ALLOW_PATTERNS: Final = tuple(path for folder in FOLDERS for path in folder.paths())
#: Without these a checkpoint folder cannot be exported.
REQUIRED_FILES: Final = (
    *DIT.paths(),
    *VAE.paths(),
    f"{TEXT_ENCODER.name}/{TEXT_ENCODER.weights}",
    f"{TEXT_ENCODER.name}/config.json",
    f"{TEXT_ENCODER.name}/tokenizer.json",
)
#: The file inside ``silence_latent.pt`` (a torch zip archive) that holds the raw float32
#: ``[1, C, 15000]`` tensor (upstream ``InitServiceLoaderMixin._load_main_model_from_checkpoint``
#: loads it with ``torch.load`` and transposes it to ``[1, 15000, C]``).
SILENCE_LATENT_FRAMES: Final = 15000

# -- the export (graph and array names in manifest.json) ------------------------------------------
GRAPH_TEXT_ENCODER: Final = "text_encoder"  # input_ids [1,Lt] int64 -> hidden [1,Lt,Dt]
GRAPH_CONDITION_ENCODER: Final = "condition_encoder"  # text_hidden, lyric_embeds -> 2 states
GRAPH_DIT: Final = "dit"  # hidden_states, timestep, encoder_hidden_states, context -> velocity
GRAPH_VAE_DECODER: Final = "vae_decoder"  # latents [1,C,T] -> audio [1,2,1920*T]
GRAPHS: Final = (GRAPH_TEXT_ENCODER, GRAPH_CONDITION_ENCODER, GRAPH_DIT, GRAPH_VAE_DECODER)
ARRAY_EMBED_TOKENS: Final = "embed_tokens"  # [V, Dt] float32: the Qwen3 token embedding
ARRAY_SILENCE_LATENT: Final = "silence_latent"  # [15000, C] float32 (already transposed)
ARRAY_SILENCE_TIMBRE: Final = "silence_timbre"  # [1, 1, H] float32: timbre of silence[:750]
ARRAYS: Final = (ARRAY_EMBED_TOKENS, ARRAY_SILENCE_LATENT, ARRAY_SILENCE_TIMBRE)
TOKENIZER_FILE: Final = "tokenizer.json"

# -- fixed numbers of the reference pipeline ------------------------------------------------------
SAMPLE_RATE: Final = 48000
SAMPLES_PER_LATENT_FRAME: Final = 1920  # Oobleck hop: 2*4*4*6*10
LATENT_FRAMES_PER_SECOND: Final = 25
PATCH_SIZE: Final = 2
TEXT_MAX_TOKENS: Final = 256  # ConditioningTextMixin._prepare_text_conditioning_inputs
LYRIC_MAX_TOKENS: Final = 2048
TIMBRE_FRAMES: Final = 750  # timbre_fix_frame: 30 s of silence latent
MIN_LATENT_FRAMES: Final = 128  # _prepare_target_latents_and_wavs: max(128, T)
MIN_DURATION_SEC: Final = 5.0
MAX_DURATION_SEC: Final = 600.0
#: Turbo's fixed 8-step tables, keyed by shift (``modeling_acestep_v15_turbo.py``:
#: ``SHIFT_TIMESTEPS``); each equals ``s*u/(1+(s-1)*u)`` for ``u = linspace(1, 0, 9)[:-1]``.
TURBO_STEPS: Final = 8
SHIFT_TIMESTEPS: Final[dict[int, tuple[float, ...]]] = {
    1: (1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125),
    2: (1.0, 14 / 15, 6 / 7, 10 / 13, 2 / 3, 6 / 11, 0.4, 2 / 9),
    3: (1.0, 21 / 22, 0.9, 5 / 6, 0.75, 9 / 14, 0.5, 0.3),
}
DEFAULT_SHIFT: Final = 3
