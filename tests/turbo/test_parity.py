"""End-to-end parity of the ACE-Step 1.5 turbo runtime with the upstream pipeline.

The runtime (``TurboEngine`` on the exported tiny model: ONNX Runtime + numpy) and the
independent torch reference of upstream's turbo text2music path
(``tests/torch_reference/turbo``, reading the same tiny official-layout checkpoint) start from the
same injected noise; the final latents and the written audio must agree at ≥ 35 dB SNR (fp32,
CPU). Cases: an instrumental, one with bpm / key / time signature that is long enough for three
VAE decode windows (T = 260 > 256), and one with lyrics in a named language.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from torch_reference.turbo.pipeline import latent_frames, reference_generate
from torch_reference.turbo.text import build_metadata, caption_prompt, lyric_prompt, tokenize
from torch_reference.turbo.weights import Checkpoint, load_checkpoint

from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.turbo import TurboEngine
from lofi_daemon.turbo import prompt as runtime_prompt
from lofi_daemon.turbo.tokens import TurboTokenizer

MIN_SNR_DB = 35.0  # the acceptance figure, for latents and audio
# Both sides are fp32 versions of the same maths, so the latents agree to rounding (~126 dB on the
# tiny model). A one-token prompt slip (e.g. "11 seconds" for "10 seconds") still scores ~35 dB
# there, so the latents must clear this much stricter floor too.
LATENTS_FLOOR_DB = 80.0
BACKEND = "ace-step-1.5"
INSTRUMENTAL = "[Instrumental]"
LYRICS = "[verse]\nrain on the window, tea going cold\n[chorus]\nslow down, slow down"

CASES: dict[str, dict[str, Any]] = {
    # 5 s: upstream's 128-frame floor (5.12 s), trimmed back to 5 s by the runtime
    "instrumental": {"prompt": "lofi hip hop, dusty piano, vinyl crackle", "duration_sec": 5.0},
    "metadata": {
        "prompt": "chill jazz hop with a soft rhodes",
        "duration_sec": 10.4,  # 260 frames > 256: three decode windows of upstream's CPU tiling
        "bpm": 84,
        "keyscale": "F# minor",
        "time_signature": 4,
    },
    "lyrics": {
        "prompt": "bedroom pop, warm female vocal",
        "duration_sec": 5.2,
        "lyrics": LYRICS,
        "vocal_language": "en",
    },
}


def snr_db(test: np.ndarray, reference: np.ndarray) -> float:
    noise = float(np.sum((test.astype(np.float64) - reference) ** 2))
    signal = float(np.sum(reference.astype(np.float64) ** 2))
    return float("inf") if noise == 0.0 else 10.0 * np.log10(signal / noise)


def params_of(case: str) -> GenerationParams:
    return GenerationParams(
        seed=1, backend=BACKEND, format="wav", wav_subtype="float", **CASES[case]
    )


def reference_inputs(params: GenerationParams) -> tuple[str, str, dict[str, Any]]:
    """Lyrics, language and the metas dict as upstream's handler builds them for ``params``."""
    lyrics = params.lyrics if params.lyrics is not None else INSTRUMENTAL
    metas = build_metadata(params.bpm, params.keyscale, params.time_signature, params.duration_sec)
    return lyrics, params.vocal_language, metas


@pytest.fixture(scope="module")
def ck(turbo_checkpoint: Path) -> Checkpoint:
    return load_checkpoint(turbo_checkpoint)


@pytest.fixture(scope="module")
def engine(turbo_models: Path) -> TurboEngine:
    return TurboEngine(turbo_models)


@pytest.mark.parametrize("case", list(CASES))
def test_prompt_tokens_match_upstream(ck: Checkpoint, turbo_models: Path, case: str) -> None:
    """The runtime's prompt strings and ids (``tokenizers`` on the exported tokenizer.json) equal
    upstream's (``AutoTokenizer`` on the checkpoint folder), extra ``<|endoftext|>`` included."""
    params = params_of(case)
    lyrics, language, metas = reference_inputs(params)
    caption = runtime_prompt.caption_text(
        params.prompt,
        runtime_prompt.metas_text(
            params.duration_sec, params.bpm, params.time_signature, params.keyscale
        ),
    )
    assert caption == caption_prompt(params.prompt, metas)
    lyric_text = runtime_prompt.lyric_text(params.lyrics, params.vocal_language)
    assert lyric_text == lyric_prompt(lyrics, language)
    tokens = TurboTokenizer(turbo_models / "tokenizer.json", 256, 2048)
    want_text = tokenize(ck.tokenizer_dir, caption_prompt(params.prompt, metas), 256)
    want_lyrics = tokenize(ck.tokenizer_dir, lyric_prompt(lyrics, language), 2048)
    assert tokens.caption_ids(caption).tolist() == want_text.tolist()
    assert tokens.lyric_ids(lyric_text).tolist() == want_lyrics.tolist()


@pytest.mark.parametrize("case", list(CASES))
def test_generation_matches_upstream(
    ck: Checkpoint, engine: TurboEngine, tmp_path: Path, case: str
) -> None:
    params = params_of(case)
    frames = latent_frames(params.duration_sec)
    channels = ck.silence_latent.shape[-1]
    noise = np.random.default_rng(1001).standard_normal((1, frames, channels), dtype=np.float32)

    result = engine.generate(params, tmp_path / f"{case}.wav", initial_noise=noise)
    lyrics, language, metas = reference_inputs(params)
    want_latents, want_audio = reference_generate(
        ck, params.prompt, lyrics, language, metas, params.duration_sec, torch.from_numpy(noise)
    )

    assert want_latents.shape == (1, frames, channels)
    # the engine reports latents time-last, [1, C, T] (as the VAE takes them)
    assert result.latents.shape == (1, channels, frames)
    latents_db = snr_db(result.latents, want_latents.transpose(1, 2).numpy())
    audio, rate = sf.read(str(result.path), dtype="float32", always_2d=True)
    assert rate == 48000
    audio = audio.T
    samples = min(want_audio.shape[-1], round(params.duration_sec * 48000))
    assert audio.shape == (2, samples)
    audio_db = snr_db(audio, want_audio[:, :samples].numpy())
    # shown with `pytest -s`: the figures the closing note quotes
    name = os.environ.get("PYTEST_CURRENT_TEST", case).split("::")[-1].split(" ")[0]
    print(f"\nparity {name}: latents {latents_db:.1f} dB, audio {audio_db:.1f} dB")
    assert latents_db >= max(MIN_SNR_DB, LATENTS_FLOOR_DB), f"latents SNR {latents_db:.1f} dB"
    assert audio_db >= MIN_SNR_DB, f"audio SNR {audio_db:.1f} dB"
