"""The reference run's settings, named as the arguments of upstream ``ACEStepPipeline.__call__``.

The reference takes its own record (not the runtime's ``GenerationParams``) so it shares no code
with the engine under test; tests fill it from the parameters they give the engine.
"""

from __future__ import annotations

from dataclasses import dataclass

# ERG hooks of acestep/pipeline_ace_step.py: get_text_embeddings_null (l_min=8, l_max=10),
# forward_encoder_with_temperature (4, 6) and forward_diffusion_with_temperature (15, 20); tau=0.01.
ERG_TAU = 0.01
ERG_TEXT_LAYERS = range(8, 10)
ERG_LYRIC_LAYERS = range(4, 6)
ERG_DIFFUSION_LAYERS = range(15, 20)

# acestep/music_dcae/music_dcae_pipeline.py: MusicDCAE
DCAE_SCALE = 0.1786
DCAE_SHIFT = -1.9091
MIN_MEL = -11.0
MAX_MEL = 3.0
SAMPLES_PER_FRAME = 8 * 512
SAMPLE_RATE = 44100
MAX_FRAMES = int(240 * 44100 / 512 / 8)  # 2583, the extend cap of text2music_diffusion_process


@dataclass(frozen=True)
class Settings:
    prompt: str
    duration: float = 30.0
    infer_steps: int = 27
    guidance_scale: float = 15.0
    scheduler_type: str = "euler"
    cfg_type: str = "apg"
    omega_scale: float = 10.0
    guidance_interval: float = 0.5
    guidance_interval_decay: float = 0.0
    min_guidance_scale: float = 3.0
    guidance_scale_text: float = 0.0
    guidance_scale_lyric: float = 0.0
    use_erg_tag: bool = True
    use_erg_lyric: bool = True
    use_erg_diffusion: bool = True

    @property
    def do_cfg(self) -> bool:
        return self.guidance_scale not in (0.0, 1.0)

    @property
    def double_condition(self) -> bool:
        return self.guidance_scale_text > 1.0 and self.guidance_scale_lyric > 1.0


def frames_for(seconds: float) -> int:
    """``int(seconds * 44100 / 512 / 8)``: latent frames of a duration or a repaint bound."""
    return int(seconds * 44100 / 512 / 8)
