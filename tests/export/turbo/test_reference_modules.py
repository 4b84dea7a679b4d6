"""The exporter's ACE-Step 1.5 torch modules against the independent functional reference.

``lofi_export.turbo`` (what the ONNX graphs are traced from) is checked module by module, with the
tiny checkpoint's real weights, against ``tests/torch_reference/turbo`` (written from upstream
``modeling_acestep_v15_turbo.py`` without the project's code). Agreement here is what shows the
exported graphs follow upstream; the ONNX-vs-torch checks then only need to show the export is
faithful to these modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import pytest
import torch
from lofi_export.checkpoint import fold_weight_norm
from lofi_export.turbo.condition import ConditionEncoder
from lofi_export.turbo.dit import DiT
from lofi_export.turbo.graphs import build_folded_vae_decoder
from lofi_export.turbo.presets import AceStepConfig, Qwen3Config
from lofi_export.turbo.qwen3 import Qwen3TextEncoder
from torch import nn
from torch_reference.turbo.dit import dit_forward
from torch_reference.turbo.encoders import (
    TIMBRE_FRAMES,
    lyric_encoder,
    silence_timbre,
    text_projector,
)
from torch_reference.turbo.text import qwen3_forward
from torch_reference.turbo.vae import build_vae
from torch_reference.turbo.weights import Checkpoint, load_checkpoint

M = TypeVar("M", bound=nn.Module)
TOLERANCE = 1e-5  # max |a - b| relative to max(1, max |reference|)


@pytest.fixture(scope="module")
def ck(turbo_checkpoint: Path) -> Checkpoint:
    return load_checkpoint(turbo_checkpoint)


def _loaded(module: M, state: dict[str, torch.Tensor]) -> M:
    module.load_state_dict(state, strict=True)
    return module.eval()


def assert_close(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    err = float((got - want).abs().max())
    scale = max(1.0, float(want.abs().max()))
    assert err <= TOLERANCE * scale, f"{what}: max |diff| {err:.3g} (reference max {scale:.3g})"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_text_encoder_matches_qwen3(ck: Checkpoint) -> None:
    qwen = _loaded(Qwen3TextEncoder(Qwen3Config.from_json_dict(ck.text_config)), ck.text)
    vocab = ck.text["embed_tokens.weight"].shape[0]
    for length in (1, 7, 40):
        ids = torch.randint(0, vocab, (1, length), generator=_gen(length))
        with torch.no_grad():
            assert_close(qwen(ids), qwen3_forward(ck, ids), f"Qwen3, {length} tokens")


def test_condition_encoder_matches(ck: Checkpoint) -> None:
    cfg = AceStepConfig.from_json_dict(ck.dit_config)
    encoder = _loaded(ConditionEncoder(cfg), ck.encoder)
    dt = cfg.text_hidden_dim
    # lengths around the sliding window (3 tokens): shorter, equal, well past it
    for lt, ly in ((2, 3), (9, 4), (23, 57)):
        text = torch.randn(1, lt, dt, generator=_gen(lt))
        lyrics = torch.randn(1, ly, dt, generator=_gen(100 + ly))
        with torch.no_grad():
            got_text, got_lyrics = encoder(text, lyrics)
            assert_close(got_text, text_projector(ck, text), f"text projector, Lt={lt}")
            assert_close(got_lyrics, lyric_encoder(ck, lyrics), f"lyric encoder, Ly={ly}")


def test_timbre_of_silence_matches(ck: Checkpoint) -> None:
    cfg = AceStepConfig.from_json_dict(ck.dit_config)
    encoder = _loaded(ConditionEncoder(cfg), ck.encoder)
    with torch.no_grad():
        got = encoder.timbre(ck.silence_latent[:, :TIMBRE_FRAMES])
        assert_close(got, silence_timbre(ck), "timbre encoder on silence_latent[:750]")


@pytest.mark.parametrize("frames", [2, 22, 301])
def test_dit_matches_upstream_forward(ck: Checkpoint, frames: int) -> None:
    """Odd ``frames``: upstream pads inside the forward; the exported DiT takes even T, and the
    caller pads x and the context with a zero frame and crops (the runtime's ``pad_even``)."""
    cfg = AceStepConfig.from_json_dict(ck.dit_config)
    dit = _loaded(DiT(cfg), ck.decoder)
    c = cfg.audio_acoustic_hidden_dim
    g = _gen(frames)
    x = torch.randn(1, frames, c, generator=g)
    context = torch.randn(1, frames, 2 * c, generator=g)
    enc = torch.randn(1, 17, cfg.hidden_size, generator=g)
    pad = frames % 2
    x_even = torch.nn.functional.pad(x, (0, 0, 0, pad))
    context_even = torch.nn.functional.pad(context, (0, 0, 0, pad))
    for t in (1.0, 0.9545454545454546, 0.3):
        step = torch.tensor([t], dtype=torch.float32)
        with torch.no_grad():
            got = dit(x_even, step, enc, context_even)[:, :frames]
            assert_close(got, dit_forward(ck, x, step, enc, context), f"DiT, T={frames}, t={t}")


def test_weight_norm_fold_matches_torch(ck: Checkpoint) -> None:
    """``fold_weight_norm`` against torch's own ``_weight_norm`` (what diffusers' modules run),
    per tensor: equal up to float32 rounding."""
    stems = [k.removesuffix(".weight_g") for k in ck.vae if k.endswith(".weight_g")]
    assert stems
    for stem in stems:
        g, v = ck.vae[f"{stem}.weight_g"], ck.vae[f"{stem}.weight_v"]
        want = torch._weight_norm(v, g, 0)
        err = float((fold_weight_norm(g, v) - want).abs().max())
        assert err <= 1e-6 * max(1.0, float(want.abs().max())), f"{stem}: {err:.3g}"


def test_folded_vae_decoder_matches_diffusers(ck: Checkpoint) -> None:
    """The folded decoder module with exactly folded weights (torch's ``_weight_norm``, so the
    module structure is what is compared: the random tiny VAE has a gain near 100 and turns
    1-ulp weight differences into ~1e-4 relative output differences)."""
    decoder = build_folded_vae_decoder(ck.vae_config, device="cpu")
    state = {}
    for key in decoder.state_dict():
        name = f"decoder.{key}"
        if name in ck.vae:
            state[key] = ck.vae[name]
        else:  # x.weight of a weight-normed conv, folded from x.weight_g / x.weight_v
            stem = name.removesuffix(".weight")
            g, v = ck.vae[f"{stem}.weight_g"], ck.vae[f"{stem}.weight_v"]
            state[key] = torch._weight_norm(v, g, 0)
    decoder = _loaded(decoder, state)
    reference = build_vae(ck)
    channels = int(ck.vae_config["decoder_input_channels"])
    for frames in (3, 8):
        z = torch.randn(1, channels, frames, generator=_gen(frames))
        with torch.no_grad():
            want = reference.decode(z).sample
            assert_close(decoder(z), want, f"VAE decoder, T={frames}")
