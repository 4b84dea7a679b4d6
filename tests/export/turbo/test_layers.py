"""The shared building blocks and the three modules' conventions (Qwen3 / upstream AceStep)."""

from __future__ import annotations

import math

import pytest
import torch
from lofi_export.turbo.condition import ConditionEncoder, TimbreEncoder
from lofi_export.turbo.dit import DiT, TimestepEmbedding
from lofi_export.turbo.layers import (
    Attention,
    EncoderLayer,
    RMSNorm,
    RotaryEmbedding,
    apply_rope,
    causal_mask,
    sliding_window_mask,
)
from lofi_export.turbo.presets import TINY
from lofi_export.turbo.qwen3 import Qwen3TextEncoder
from torch import nn


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Noise on every parameter (norm weights start at 1 and biases at 0 otherwise)."""
    gen = _gen(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return module.eval()


def test_rms_norm_formula() -> None:
    norm = RMSNorm(6, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.arange(1.0, 7.0))
    x = torch.randn(2, 3, 6, generator=_gen(1))
    want = x / torch.sqrt((x**2).mean(-1, keepdim=True) + 1e-6) * torch.arange(1.0, 7.0)
    torch.testing.assert_close(norm(x), want)


def test_rope_is_rotate_half_with_concatenated_halves() -> None:
    head_dim, theta = 4, 100.0
    rope = RotaryEmbedding(head_dim, theta)
    torch.testing.assert_close(rope.inv_freq, torch.tensor([1.0, 0.1]))
    cos, sin = rope(torch.zeros(1, 3, 8))
    assert cos.shape == sin.shape == (3, head_dim)
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 4).expand(1, 1, 3, 4)
    out = apply_rope(x, cos, sin)[0, 0, 2]
    # position 2: pair (x0, x2) turns by 2*1.0, pair (x1, x3) by 2*0.1
    a, b = 2.0, 0.2
    want = torch.tensor(
        [
            1 * math.cos(a) - 3 * math.sin(a),
            2 * math.cos(b) - 4 * math.sin(b),
            3 * math.cos(a) + 1 * math.sin(a),
            4 * math.cos(b) + 2 * math.sin(b),
        ]
    )
    torch.testing.assert_close(out, want)


def test_rope_dot_products_depend_on_relative_position_only() -> None:
    rope = RotaryEmbedding(16, 1e6)
    cos, sin = rope(torch.zeros(1, 12, 1))
    q = torch.randn(16, generator=_gen(2)).expand(1, 1, 12, 16)
    k = torch.randn(16, generator=_gen(3)).expand(1, 1, 12, 16)
    qr, kr = apply_rope(q, cos, sin)[0, 0], apply_rope(k, cos, sin)[0, 0]
    torch.testing.assert_close(qr[5] @ kr[2], qr[9] @ kr[6], rtol=1e-5, atol=1e-5)


def test_masks() -> None:
    window = sliding_window_mask(9, 3, torch.device("cpu"))
    i, j = torch.meshgrid(torch.arange(9), torch.arange(9), indexing="ij")
    assert torch.equal(window, (i - j).abs() <= 3)
    assert int(window[4].sum()) == 7  # 2*window + 1 keys away from the edges
    assert torch.equal(causal_mask(5, torch.device("cpu")), torch.ones(5, 5).tril().bool())


def _naive_attention(
    attn: Attention, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """Per-head loop: query head h reads KV head h // (heads / kv_heads) (repeat-interleave)."""
    d = attn.head_dim
    q = attn.q_proj(x).view(1, -1, attn.num_heads, d).transpose(1, 2)
    k = attn.k_proj(x).view(1, -1, attn.num_kv_heads, d).transpose(1, 2)
    v = attn.v_proj(x).view(1, -1, attn.num_kv_heads, d).transpose(1, 2)
    q = apply_rope(attn.q_norm(q), *rope)
    k = apply_rope(attn.k_norm(k), *rope)
    groups = attn.num_heads // attn.num_kv_heads
    heads = []
    for h in range(attn.num_heads):
        scores = q[0, h] @ k[0, h // groups].T / math.sqrt(d)
        heads.append(torch.softmax(scores, -1) @ v[0, h // groups])
    return attn.o_proj(torch.cat(heads, -1)[None])


def test_gqa_attention_matches_per_head_loop() -> None:
    attn = _randomize(Attention(32, 4, 2, 8, 1e-6))
    assert isinstance(attn, Attention)
    x = torch.randn(1, 6, 32, generator=_gen(4))
    rope = RotaryEmbedding(8, 1e6)(x)
    with torch.no_grad():
        torch.testing.assert_close(attn(x, rope), _naive_attention(attn, x, rope))


def test_sliding_layer_sees_only_its_window() -> None:
    layer = _randomize(EncoderLayer(16, 32, 2, 1, 8, 1e-6, sliding_window=2))
    x = torch.randn(1, 8, 16, generator=_gen(5))
    rope = RotaryEmbedding(8, 1e6)(x)
    far, near = x.clone(), x.clone()
    far[0, 3] += 1.0  # |3 - 0| > 2
    near[0, 2] += 1.0  # |2 - 0| <= 2
    with torch.no_grad():
        base = layer(x, rope)[0, 0]
        torch.testing.assert_close(layer(far, rope)[0, 0], base)
        assert not torch.allclose(layer(near, rope)[0, 0], base)


def test_text_encoder_is_causal() -> None:
    qwen = _randomize(Qwen3TextEncoder(TINY.text))
    ids = torch.tensor([[5, 17, 200, 9, 381]])
    changed = ids.clone()
    changed[0, -1] = 42
    with torch.no_grad():
        a, b = qwen(ids), qwen(changed)
    assert a.shape == (1, 5, TINY.text.hidden_size)
    torch.testing.assert_close(a[:, :-1], b[:, :-1])
    assert not torch.allclose(a[:, -1], b[:, -1])


def test_timbre_is_frame_zero_and_ignores_special_token() -> None:
    enc = _randomize(ConditionEncoder(TINY.dit))
    assert isinstance(enc, ConditionEncoder)
    latents = torch.randn(1, 10, TINY.dit.timbre_hidden_dim, generator=_gen(6))
    with torch.no_grad():
        every_frame = super(TimbreEncoder, enc.timbre_encoder).forward(latents)
        out = enc.timbre(latents)
        assert every_frame.shape == (1, 10, TINY.dit.hidden_size)
        torch.testing.assert_close(out, every_frame[:, :1])
        enc.timbre_encoder.special_token.add_(5.0)  # the 2B code never prepends it
        torch.testing.assert_close(enc.timbre(latents), out)
        text, lyrics = enc.text_and_lyrics(torch.randn(1, 4, 32), torch.randn(1, 7, 32))
    assert text.shape == (1, 4, 64) and lyrics.shape == (1, 7, 64)


def test_timestep_sinusoid_is_cos_first_of_t_times_1000() -> None:
    zero = TimestepEmbedding.sinusoid(torch.tensor([0.0]))
    torch.testing.assert_close(zero, torch.cat([torch.ones(1, 128), torch.zeros(1, 128)], -1))
    half = TimestepEmbedding.sinusoid(torch.tensor([0.5]))
    k = torch.arange(128, dtype=torch.float32)
    args = 500.0 * torch.exp(-math.log(10000.0) * k / 128)
    torch.testing.assert_close(half, torch.cat([args.cos(), args.sin()])[None])


def test_dit_state_dict_names_follow_upstream() -> None:
    dit = DiT(TINY.dit)
    keys = set(dit.state_dict())
    globals_ = {k for k in keys if not k.startswith("layers.")}
    assert globals_ == {
        "proj_in.1.weight",
        "proj_in.1.bias",
        "proj_out.1.weight",
        "proj_out.1.bias",
        "norm_out.weight",
        "scale_shift_table",
        "condition_embedder.weight",
        "condition_embedder.bias",
        *(
            f"{t}.{part}.{leaf}"
            for t in ("time_embed", "time_embed_r")
            for part in ("linear_1", "linear_2", "time_proj")
            for leaf in ("weight", "bias")
        ),
    }
    layer0 = {k.removeprefix("layers.0.") for k in keys if k.startswith("layers.0.")}
    attn = {f"{p}.weight" for p in ("q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm")}
    assert layer0 == {
        "scale_shift_table",
        "self_attn_norm.weight",
        "cross_attn_norm.weight",
        "mlp_norm.weight",
        *(f"{a}.{w}" for a in ("self_attn", "cross_attn") for w in attn),
        *(f"mlp.{p}_proj.weight" for p in ("gate", "up", "down")),
    }
    # layer 0 sliding, layer 1 full (upstream layer_types default)
    assert [layer.sliding_window for layer in dit.layers] == [3, None, 3, None]


@pytest.mark.parametrize("frames", [4, 12])
def test_dit_velocity_shape_and_timestep_dependence(frames: int) -> None:
    dit = _randomize(DiT(TINY.dit))
    c = TINY.dit.audio_acoustic_hidden_dim
    x = torch.randn(1, frames, c, generator=_gen(7))
    enc = torch.randn(1, 5, TINY.dit.hidden_size, generator=_gen(8))
    ctx = torch.randn(1, frames, 2 * c, generator=_gen(9))
    with torch.no_grad():
        v1 = dit(x, torch.tensor([1.0]), enc, ctx)
        v2 = dit(x, torch.tensor([0.5]), enc, ctx)
        v3 = dit(x, torch.tensor([1.0]), enc[:, :3], ctx)
    assert v1.shape == (1, frames, c)
    assert torch.isfinite(v1).all()
    assert not torch.allclose(v1, v2)
    assert not torch.allclose(v1, v3)
