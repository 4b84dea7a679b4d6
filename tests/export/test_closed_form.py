"""Closed-form checks of the export modules against the upstream formulas.

The formulas are those of ``acestep/models/customer_attention_processor.py`` (RoPE, linear
attention), ``acestep/models/ace_step_transformer.py`` (``T2IFinalLayer``) and
``acestep/models/lyrics_utils/lyric_encoder.py`` (relative-position attention and its table).

Each test writes the formula out in numpy, independently of the module, and compares. Where a
plausible but wrong variant exists (standard RoPE, sin-first sinusoid, …) the test also shows that
the variant would be caught.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import pytest
import torch
from lofi_export.modules.conformer import RelPositionAttention, relative_position_table
from lofi_export.modules.transformer import (
    CrossAttention,
    FinalLayer,
    LinearSelfAttention,
    apply_rope,
    rope_tables,
    timestep_sinusoid,
)

THETA = 1_000_000.0


M = TypeVar("M", bound=torch.nn.Module)


def _randomise(module: M, seed: int) -> M:
    """Fill every parameter with N(0, 0.5²) so that no term (bias, pos_bias, …) is trivially zero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(0.5 * torch.randn(param.shape, generator=gen))
    return module.eval()


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _inv_freq(dim: int) -> np.ndarray:
    return 1.0 / THETA ** (np.arange(0, dim, 2, dtype=np.float64) / dim)


def _rope_closed_form(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Upstream ``CustomLiteLAProcessor2_0.apply_rotary_emb``: interleaved pairs rotated with the
    half-split table (the two elements of a pair use different frequencies).

    out[d] = x[d]·cos(p·ω[d mod D/2]) + rot[d]·sin(p·ω[d mod D/2]), rot[2i] = −x[2i+1],
    rot[2i+1] = x[2i]; x is [..., N, D].
    """
    dim = x.shape[-1]
    omega = _inv_freq(dim)[np.arange(dim) % (dim // 2)]
    angle = positions[:, None] * omega[None, :]
    rot = np.empty_like(x)
    rot[..., 0::2] = -x[..., 1::2]
    rot[..., 1::2] = x[..., 0::2]
    return x * np.cos(angle) + rot * np.sin(angle)


# --------------------------------------------------------------------------------------------
# RoPE quirk
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [16, 128])
def test_rope_tables_are_half_split(dim: int) -> None:
    length = 37
    cos, sin = rope_tables(length, dim, THETA)
    assert cos.shape == sin.shape == (length, dim)
    omega = _inv_freq(dim)
    angle = np.arange(length)[:, None] * np.concatenate((omega, omega))[None, :]
    np.testing.assert_allclose(_np(cos), np.cos(angle), atol=2e-6)
    np.testing.assert_allclose(_np(sin), np.sin(angle), atol=2e-6)


@pytest.mark.parametrize("dim", [16, 128])
def test_apply_rope_rotates_interleaved_pairs_with_half_split_frequencies(dim: int) -> None:
    length = 29
    gen = torch.Generator().manual_seed(dim)
    x = torch.randn(2, 3, length, dim, generator=gen)
    out = _np(apply_rope(x, *rope_tables(length, dim, THETA)))
    want = _rope_closed_form(_np(x), np.arange(length, dtype=np.float64))
    np.testing.assert_allclose(out, want, atol=2e-5)

    # The two elements of one pair really use different frequencies: the textbook interleaved
    # RoPE (both elements of pair i at ω_i) differs from the reference by far more than rounding.
    omega = np.repeat(_inv_freq(dim), 2)
    angle = np.arange(length)[:, None] * omega[None, :]
    rot = np.empty_like(_np(x))
    rot[..., 0::2] = -_np(x)[..., 1::2]
    rot[..., 1::2] = _np(x)[..., 0::2]
    textbook = _np(x) * np.cos(angle) + rot * np.sin(angle)
    assert np.abs(out - textbook).max() > 0.1


def test_apply_rope_at_position_zero_is_identity() -> None:
    x = torch.randn(1, 2, 1, 16)
    torch.testing.assert_close(apply_rope(x, *rope_tables(1, 16, THETA)), x)


# --------------------------------------------------------------------------------------------
# ReLU linear attention with eps
# --------------------------------------------------------------------------------------------


def _linear_attention_closed_form(attn: LinearSelfAttention, x: np.ndarray) -> np.ndarray:
    """Upstream ``CustomLiteLAProcessor2_0.__call__``: ReLU linear attention,
    o_s = Σ_j v_j (k_j·q_s) / (Σ_j k_j·q_s + 1e-15), per head, then to_out."""
    b, n, c = x.shape
    heads = attn.heads
    d = c // heads

    def proj(linear: torch.nn.Linear) -> np.ndarray:
        y = x @ _np(linear.weight).T + _np(linear.bias)
        return y.reshape(b, n, heads, d).transpose(0, 2, 1, 3)  # [B,H,N,D]

    positions = np.arange(n, dtype=np.float64)
    q = np.maximum(_rope_closed_form(proj(attn.to_q), positions), 0.0)
    k = np.maximum(_rope_closed_form(proj(attn.to_k), positions), 0.0)
    v = proj(attn.to_v)
    out = np.zeros_like(q)
    for s in range(n):
        weights = np.einsum("bhjd,bhd->bhj", k, q[:, :, s])  # k_j·q_s
        num = np.einsum("bhj,bhjd->bhd", weights, v)
        den = weights.sum(-1, keepdims=True)
        out[:, :, s] = num / (den + 1e-15)
    out = out.transpose(0, 2, 1, 3).reshape(b, n, c)
    y = out @ _np(attn.to_out[0].weight).T + _np(attn.to_out[0].bias)
    return np.clip(y, -65504.0, 65504.0)


def test_linear_attention_matches_closed_form() -> None:
    attn = _randomise(LinearSelfAttention(32, heads=2), seed=1)
    x = torch.randn(2, 11, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = attn(x, *rope_tables(11, 16, THETA), torch.ones(2))
    np.testing.assert_allclose(_np(out), _linear_attention_closed_form(attn, _np(x)), atol=2e-5)


def test_linear_attention_eps_keeps_a_zero_denominator_finite() -> None:
    # A zero query scale makes every q (and so every k·q) exactly 0: 0/(0+eps) = 0, so the
    # attention output is exactly to_out's bias. Without the eps the same input gives NaN.
    attn = _randomise(LinearSelfAttention(32, heads=2), seed=3)
    x = torch.randn(1, 7, 32, generator=torch.Generator().manual_seed(4))
    rope = rope_tables(7, 16, THETA)
    with torch.no_grad():
        out = attn(x, *rope, torch.zeros(1))
        assert attn.eps == 1e-15
        attn.eps = 0.0
        without_eps = attn(x, *rope, torch.zeros(1))
    torch.testing.assert_close(out, attn.to_out[0].bias.expand_as(out), rtol=0, atol=0)
    assert torch.isnan(without_eps).all()


def test_linear_attention_is_invariant_to_query_scale() -> None:
    # ERG on the DiT self-attention (the to_q hook of text2music_diffusion_process) is a no-op:
    # ReLU, RoPE and the ratio are all positively homogeneous in q.
    attn = _randomise(LinearSelfAttention(32, heads=2), seed=5)
    x = torch.randn(2, 9, 32, generator=torch.Generator().manual_seed(6))
    rope = rope_tables(9, 16, THETA)
    with torch.no_grad():
        plain = attn(x, *rope, torch.ones(2))
        scaled = attn(x, *rope, torch.full((2,), 0.01))
    torch.testing.assert_close(scaled, plain, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Cross-attention (RoPE on both sides, key mask)
# --------------------------------------------------------------------------------------------


def test_cross_attention_matches_closed_form() -> None:
    attn = _randomise(CrossAttention(32, heads=2), seed=7)
    gen = torch.Generator().manual_seed(8)
    x, cond = torch.randn(2, 6, 32, generator=gen), torch.randn(2, 5, 32, generator=gen)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 1, 0]], dtype=torch.float32)
    with torch.no_grad():
        out = attn(
            x, cond, mask, rope_tables(6, 16, THETA), rope_tables(5, 16, THETA), torch.ones(2)
        )

    def proj(linear: torch.nn.Linear, inp: np.ndarray) -> np.ndarray:
        y = inp @ _np(linear.weight).T + _np(linear.bias)
        return y.reshape(inp.shape[0], inp.shape[1], 2, 16).transpose(0, 2, 1, 3)

    q = _rope_closed_form(proj(attn.to_q, _np(x)), np.arange(6.0))
    k = _rope_closed_form(proj(attn.to_k, _np(cond)), np.arange(5.0))
    v = proj(attn.to_v, _np(cond))
    scores = np.einsum("bhid,bhjd->bhij", q, k) / 4.0
    scores = np.where(_np(mask)[:, None, None, :] > 0, scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    o = np.einsum("bhij,bhjd->bhid", weights, v).transpose(0, 2, 1, 3).reshape(2, 6, 32)
    want = o @ _np(attn.to_out[0].weight).T + _np(attn.to_out[0].bias)
    np.testing.assert_allclose(_np(out), want, atol=2e-5)


# --------------------------------------------------------------------------------------------
# Timestep sinusoid
# --------------------------------------------------------------------------------------------


def test_timestep_sinusoid_is_cos_first_on_raw_timesteps() -> None:
    t = torch.tensor([0.0, 1.0, 8.928572, 500.0, 999.0])
    out = _np(timestep_sinusoid(t))
    freqs = np.exp(-math.log(10000.0) * np.arange(128) / 128)
    angles = _np(t)[:, None] * freqs[None, :]
    np.testing.assert_allclose(out, np.concatenate((np.cos(angles), np.sin(angles)), -1), atol=1e-4)
    # t = 0: the first half (cos) is all ones, the second (sin) all zeros.
    np.testing.assert_array_equal(out[0, :128], 1.0)
    np.testing.assert_array_equal(out[0, 128:], 0.0)
    # Sin-first would be a different vector.
    sin_first = np.concatenate((np.sin(angles), np.cos(angles)), -1)
    assert np.abs(out[1:] - sin_first[1:]).max() > 0.5


# --------------------------------------------------------------------------------------------
# Unpatchify
# --------------------------------------------------------------------------------------------


def test_unpatchify_index() -> None:
    # T2IFinalLayer.unpatchfy (einsum "nhwpqc->nchpwq"): out[b, c, p, t] = lin[b, t, 8p + c].
    layer = _randomise(FinalLayer(32, (16, 1), 8), seed=9)
    captured: list[torch.Tensor] = []
    layer.linear.register_forward_hook(lambda _m, _i, out: captured.append(out.detach().clone()))
    h = torch.randn(2, 13, 32, generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        out = _np(layer(h, torch.randn(2, 32)))
    lin = _np(captured[0])
    assert out.shape == (2, 8, 16, 13) and lin.shape == (2, 13, 128)
    b, c, p, t = np.meshgrid(*(np.arange(n) for n in out.shape), indexing="ij")
    np.testing.assert_array_equal(out, lin[b, t, 8 * p + c])


def test_final_layer_uses_shift_then_scale() -> None:
    # T2IFinalLayer.forward: chunks of (table + e) are (shift, scale); y = rms(h)·(1+scale) + shift.
    layer = _randomise(FinalLayer(32, (16, 1), 8), seed=11)
    captured: list[torch.Tensor] = []
    layer.linear.register_forward_pre_hook(lambda _m, inp: captured.append(inp[0].detach().clone()))
    h = torch.randn(1, 5, 32, generator=torch.Generator().manual_seed(12))
    e = torch.randn(1, 32, generator=torch.Generator().manual_seed(13))
    with torch.no_grad():
        layer(h, e)
    table = _np(layer.scale_shift_table) + _np(e)
    shift, scale = table[0], table[1]
    hn = _np(h)
    rms = hn / np.sqrt((hn**2).mean(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(_np(captured[0]), rms * (1 + scale) + shift, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Conformer relative-position attention
# --------------------------------------------------------------------------------------------


def test_relative_position_table_layout() -> None:
    # EspnetRelPositionalEncoding: row k holds offset r = Y−1−k; pe[2i] = sin(rω_i),
    # pe[2i+1] = cos(rω_i).
    y, dim = 6, 16
    table = _np(relative_position_table(y, dim))
    assert table.shape == (2 * y - 1, dim)
    offsets = np.arange(y - 1, -y, -1, dtype=np.float64)
    omega = np.exp(-np.arange(0, dim, 2) * math.log(10000.0) / dim)
    np.testing.assert_allclose(table[:, 0::2], np.sin(offsets[:, None] * omega), atol=1e-6)
    np.testing.assert_allclose(table[:, 1::2], np.cos(offsets[:, None] * omega), atol=1e-6)
    np.testing.assert_array_equal(table[y - 1], np.tile([0.0, 1.0], dim // 2))


def _rel_attention_closed_form(
    attn: RelPositionAttention, x: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """RelPositionMultiHeadedAttention (Transformer-XL terms ac + bd with espnet's rel_shift) in
    closed form, with p(r) = W_pos·pe(r) taken straight from the sinusoid."""
    b, y, c = x.shape
    heads, d = attn.heads, attn.head_dim

    def proj(linear: torch.nn.Linear) -> np.ndarray:
        return (x @ _np(linear.weight).T + _np(linear.bias)).reshape(b, y, heads, d)

    q, k, v = proj(attn.linear_q), proj(attn.linear_k), proj(attn.linear_v)
    u, vb = _np(attn.pos_bias_u), _np(attn.pos_bias_v)
    omega = np.exp(-np.arange(0, c, 2) * math.log(10000.0) / c)

    def pos(r: int) -> np.ndarray:
        pe = np.empty(c)
        pe[0::2], pe[1::2] = np.sin(r * omega), np.cos(r * omega)
        return (_np(attn.linear_pos.weight) @ pe).reshape(heads, d)

    scores = np.empty((b, heads, y, y))
    for i in range(y):
        for j in range(y):
            p = pos(i - j)
            scores[:, :, i, j] = (
                ((q[:, i] + u) * k[:, j]).sum(-1) + ((q[:, i] + vb) * p).sum(-1)
            ) / math.sqrt(d)
    valid = mask[:, None, None, :]
    scores = np.where(valid, scores, -np.inf)
    with np.errstate(invalid="ignore"):
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
    weights = np.where(valid, weights, 0.0)
    out = np.einsum("bhij,bjhd->bihd", weights, v).reshape(b, y, c)
    return out @ _np(attn.linear_out.weight).T + _np(attn.linear_out.bias)


def test_rel_position_attention_matches_closed_form() -> None:
    attn = _randomise(RelPositionAttention(16, heads=2), seed=14)
    y = 7
    x = torch.randn(2, y, 16, generator=torch.Generator().manual_seed(15))
    mask = torch.tensor([[1] * y, [1, 1, 1, 0, 1, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        out = attn(x, mask, relative_position_table(y, 16), torch.ones(2))
    want = _rel_attention_closed_form(attn, _np(x), mask.numpy())
    np.testing.assert_allclose(_np(out), want, atol=2e-5)


def test_rel_position_attention_all_keys_masked_gives_exactly_the_output_bias() -> None:
    # Empty lyrics are one token with mask 0 (ACEStepPipeline.__call__); forward_attention zeroes
    # the weights after the softmax, so the output is exactly linear_out.bias.
    attn = _randomise(RelPositionAttention(16, heads=2), seed=16)
    x = torch.randn(2, 3, 16, generator=torch.Generator().manual_seed(17))
    with torch.no_grad():
        out = attn(
            x, torch.zeros(2, 3, dtype=torch.bool), relative_position_table(3, 16), torch.ones(2)
        )
    torch.testing.assert_close(out, attn.linear_out.bias.expand_as(out), rtol=0, atol=0)


def test_rel_position_attention_query_scale_keeps_position_bias_terms() -> None:
    # ERG-lyric scales q before the biases are added: scores become (u·k + v·p)/√d plus
    # 0.01× the content terms, which the closed form reproduces with a scaled linear_q.
    attn = _randomise(RelPositionAttention(16, heads=2), seed=18)
    x = torch.randn(1, 5, 16, generator=torch.Generator().manual_seed(19))
    mask = torch.ones(1, 5, dtype=torch.bool)
    with torch.no_grad():
        out = attn(x, mask, relative_position_table(5, 16), torch.full((1,), 0.01))
        attn.linear_q.weight.mul_(0.01)
        attn.linear_q.bias.mul_(0.01)
    want = _rel_attention_closed_form(attn, _np(x), mask.numpy())
    np.testing.assert_allclose(_np(out), want, atol=2e-5)
