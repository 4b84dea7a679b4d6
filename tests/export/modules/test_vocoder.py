"""Tests for the torch vocoder (``lofi_export.modules.vocoder``): layout, maths, folding, config
inference. The config itself and the weight-normed convolutions have their own test files."""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lofi_export.modules.mel import hann_window_periodic, slaney_mel_filterbank
from lofi_export.modules.vocoder import Vocoder, expected_state_dict_shapes, infer_vocoder_config
from lofi_export.modules.vocoder_config import VocoderConfig
from torch import nn

# --------------------------------------------------------------------------------------------
# Helpers: an independent description of the checkpoint layout (the key names that
# acestep/music_dcae/music_vocoder.py: ADaMoSHiFiGANV1 produces) and a
# functional re-statement of the forward pass built only from state-dict tensors.
# --------------------------------------------------------------------------------------------


def _layout_from_naming_rules(cfg: VocoderConfig) -> dict[str, tuple[int, ...]]:
    """Key → shape written out from the upstream naming rules, without using the module."""
    shapes: dict[str, tuple[int, ...]] = {}
    d = cfg.dims
    bb = "backbone.channel_layers"
    shapes[f"{bb}.0.0.weight"] = (d[0], cfg.input_channels, 7)
    shapes[f"{bb}.0.0.bias"] = (d[0],)
    shapes[f"{bb}.0.1.weight"] = (d[0],)
    shapes[f"{bb}.0.1.bias"] = (d[0],)
    for i in range(1, len(d)):
        shapes[f"{bb}.{i}.0.weight"] = (d[i - 1],)
        shapes[f"{bb}.{i}.0.bias"] = (d[i - 1],)
        shapes[f"{bb}.{i}.1.weight"] = (d[i], d[i - 1], 1)
        shapes[f"{bb}.{i}.1.bias"] = (d[i],)
    k = cfg.kernel_sizes[0]
    for s, (dim, depth) in enumerate(zip(d, cfg.depths, strict=True)):
        for j in range(depth):
            p = f"backbone.stages.{s}.{j}"
            shapes[f"{p}.dwconv.weight"] = (dim, 1, k)
            shapes[f"{p}.dwconv.bias"] = (dim,)
            shapes[f"{p}.norm.weight"] = (dim,)
            shapes[f"{p}.norm.bias"] = (dim,)
            shapes[f"{p}.pwconv1.weight"] = (4 * dim, dim)
            shapes[f"{p}.pwconv1.bias"] = (4 * dim,)
            shapes[f"{p}.pwconv2.weight"] = (dim, 4 * dim)
            shapes[f"{p}.pwconv2.bias"] = (dim,)
            shapes[f"{p}.gamma"] = (dim,)
    shapes["backbone.norm.weight"] = (d[-1],)
    shapes["backbone.norm.bias"] = (d[-1],)

    def wn(prefix: str, v_shape: tuple[int, int, int], out_ch: int) -> None:
        shapes[f"{prefix}.bias"] = (out_ch,)
        shapes[f"{prefix}.weight_g"] = (v_shape[0], 1, 1)
        shapes[f"{prefix}.weight_v"] = v_shape

    c0 = cfg.upsample_initial_channel
    wn("head.conv_pre", (c0, cfg.num_mels, cfg.pre_conv_kernel_size), c0)
    n_kernels = len(cfg.resblock_kernel_sizes)
    for i, uk in enumerate(cfg.upsample_kernel_sizes):
        c_in, c_out = c0 // 2**i, c0 // 2 ** (i + 1)
        wn(f"head.ups.{i}", (c_in, c_out, uk), c_out)  # transposed conv: g is per INPUT channel
        for j, rk in enumerate(cfg.resblock_kernel_sizes):
            for branch in ("convs1", "convs2"):
                for m in range(len(cfg.resblock_dilation_sizes[j])):
                    wn(
                        f"head.resblocks.{i * n_kernels + j}.{branch}.{m}",
                        (c_out, c_out, rk),
                        c_out,
                    )
    c_last = c0 // 2 ** len(cfg.upsample_rates)
    wn("head.conv_post", (1, c_last, cfg.post_conv_kernel_size), 1)
    shapes["mel_transform.spectrogram.window"] = (cfg.n_fft,)
    shapes["mel_transform.mel_scale.fb"] = (cfg.n_fft // 2 + 1, cfg.n_mels)
    return shapes


def _channels_first_ln(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    u = x.mean(1, keepdim=True)
    s = ((x - u) ** 2).mean(1, keepdim=True)
    return (x - u) / torch.sqrt(s + 1e-6) * w[:, None] + b[:, None]


def _wn(sd: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    v, g = sd[f"{prefix}.weight_v"], sd[f"{prefix}.weight_g"]
    return g * v / v.flatten(1).norm(dim=1).reshape(-1, 1, 1)


def _reference_backbone(
    sd: dict[str, torch.Tensor], cfg: VocoderConfig, mel: torch.Tensor
) -> torch.Tensor:
    """Upstream ``ConvNeXtEncoder`` restated with functional ops over the state dict."""
    x = mel
    bb = "backbone.channel_layers"
    for i, depth in enumerate(cfg.depths):
        if i == 0:
            x = F.pad(x, (3, 3), mode="replicate")
            x = F.conv1d(x, sd[f"{bb}.0.0.weight"], sd[f"{bb}.0.0.bias"])
            x = _channels_first_ln(x, sd[f"{bb}.0.1.weight"], sd[f"{bb}.0.1.bias"])
        else:
            x = _channels_first_ln(x, sd[f"{bb}.{i}.0.weight"], sd[f"{bb}.{i}.0.bias"])
            x = F.conv1d(x, sd[f"{bb}.{i}.1.weight"], sd[f"{bb}.{i}.1.bias"])
        c = x.shape[1]
        for j in range(depth):
            p = f"backbone.stages.{i}.{j}"
            h = F.conv1d(x, sd[f"{p}.dwconv.weight"], sd[f"{p}.dwconv.bias"], padding=3, groups=c)
            h = F.layer_norm(
                h.transpose(1, 2), (c,), sd[f"{p}.norm.weight"], sd[f"{p}.norm.bias"], 1e-6
            )
            h = F.gelu(F.linear(h, sd[f"{p}.pwconv1.weight"], sd[f"{p}.pwconv1.bias"]))
            h = F.linear(h, sd[f"{p}.pwconv2.weight"], sd[f"{p}.pwconv2.bias"]) * sd[f"{p}.gamma"]
            x = x + h.transpose(1, 2)
    return _channels_first_ln(x, sd["backbone.norm.weight"], sd["backbone.norm.bias"])


def _reference_forward(
    sd: dict[str, torch.Tensor], cfg: VocoderConfig, mel: torch.Tensor
) -> torch.Tensor:
    """Upstream ``ADaMoSHiFiGANV1.decode`` restated with functional ops over the state dict."""
    x = _reference_backbone(sd, cfg, mel)
    pad = cfg.pre_conv_kernel_size // 2
    x = F.conv1d(x, _wn(sd, "head.conv_pre"), sd["head.conv_pre.bias"], padding=pad)
    n_k = len(cfg.resblock_kernel_sizes)
    for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes, strict=True)):
        p = f"head.ups.{i}"
        x = F.conv_transpose1d(
            F.silu(x), _wn(sd, p), sd[f"{p}.bias"], stride=u, padding=(k - u) // 2
        )
        outs = []
        for j, (rk, dils) in enumerate(
            zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes, strict=True)
        ):
            y = x
            rb = f"head.resblocks.{i * n_k + j}"
            for m, dil in enumerate(dils):
                c1, c2 = f"{rb}.convs1.{m}", f"{rb}.convs2.{m}"
                t = F.conv1d(
                    F.silu(y),
                    _wn(sd, c1),
                    sd[f"{c1}.bias"],
                    padding=dil * (rk - 1) // 2,
                    dilation=dil,
                )
                t = F.conv1d(F.silu(t), _wn(sd, c2), sd[f"{c2}.bias"], padding=(rk - 1) // 2)
                y = y + t
            outs.append(y)
        x = functools.reduce(torch.add, outs) / n_k
    pad = cfg.post_conv_kernel_size // 2
    x = F.conv1d(F.silu(x), _wn(sd, "head.conv_post"), sd["head.conv_post.bias"], padding=pad)
    return torch.tanh(x)


# Tiny, but with two resblock kernels per stage (so their averaging is exercised) and an
# uneven dilation list.
_TWO_KERNEL_CONFIG = dataclasses.replace(
    VocoderConfig.tiny(), resblock_kernel_sizes=(3, 5), resblock_dilation_sizes=((1, 3, 5), (1, 2))
)


def _randomized_tiny(seed: int = 0, config: VocoderConfig | None = None) -> Vocoder:
    """A tiny vocoder whose every parameter is random and of a size that makes each path count."""
    torch.manual_seed(seed)
    model = Vocoder(config or VocoderConfig.tiny())
    with torch.no_grad():
        for name, p in model.named_parameters():
            # Weight-norm gains, layer scales and LayerNorm scales stay positive and near 1.
            if name.endswith(("weight_g", ".gamma")) or (p.ndim == 1 and name.endswith("weight")):
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0.0, 0.2)
    return model


# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------


def test_tiny_state_dict_matches_naming_rules() -> None:
    cfg = VocoderConfig.tiny()
    expected = _layout_from_naming_rules(cfg)
    got = {k: tuple(v.shape) for k, v in Vocoder(cfg).state_dict().items()}
    assert got == expected
    two = {k: tuple(v.shape) for k, v in Vocoder(_TWO_KERNEL_CONFIG).state_dict().items()}
    assert two == _layout_from_naming_rules(_TWO_KERNEL_CONFIG)
    # 16 transition/stem + 4 blocks x 9 + 2 norm; head 3 + 7 x 3 ups + 7 x 18 resblock + 3; 2 buffers.
    assert len(got) == 16 + 36 + 2 + 3 + 21 + 126 + 3 + 2
    assert got["head.ups.0.weight_g"] == (128, 1, 1)
    assert got["head.ups.0.weight_v"] == (128, 64, 8)
    assert got["head.resblocks.6.convs1.2.weight_v"] == (1, 1, 3)
    assert got["backbone.channel_layers.0.0.weight"] == (16, 128, 7)


def test_official_layout_matches_naming_rules_and_checkpoint_size() -> None:
    cfg = VocoderConfig()
    shapes = expected_state_dict_shapes(cfg)
    assert shapes == _layout_from_naming_rules(cfg)
    # The released music_vocoder/diffusion_pytorch_model.safetensors: 713 tensors holding
    # 103,138,386 values (its 206,350,988 bytes at 2 bytes a value, plus the header).
    assert len(shapes) == 713
    assert sum(math.prod(s) for s in shapes.values()) == 103_138_386


def test_weight_norm_pairs_and_buffers() -> None:
    model = Vocoder(VocoderConfig.tiny())
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    assert set(buffers) == {"mel_transform.spectrogram.window", "mel_transform.mel_scale.fb"}
    assert not any(name.startswith("mel_transform") for name in params)
    head_weights = [n for n in params if n.startswith("head.") and not n.endswith(".bias")]
    assert head_weights and all(n.endswith(("weight_g", "weight_v")) for n in head_weights)
    np.testing.assert_array_equal(
        buffers["mel_transform.spectrogram.window"].numpy(), hann_window_periodic(2048)
    )
    np.testing.assert_array_equal(
        buffers["mel_transform.mel_scale.fb"].numpy(),
        slaney_mel_filterbank(1025, 40.0, 16000.0, 128, 44100),
    )


def test_loads_a_16bit_checkpoint_strictly() -> None:
    source = _randomized_tiny(seed=3)
    half = {k: v.to(torch.bfloat16) for k, v in source.state_dict().items()}
    target = Vocoder(VocoderConfig.tiny())
    target.load_state_dict(half, strict=True)
    for key, value in target.state_dict().items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, half[key].float(), rtol=0, atol=0)


# --------------------------------------------------------------------------------------------
# Maths
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("frames", [1, 5, 16])
def test_output_shape_and_range(frames: int) -> None:
    model = _randomized_tiny()
    with torch.no_grad():
        wav = model(torch.randn(2, 128, frames))
    assert wav.shape == (2, 1, 512 * frames)
    assert wav.abs().max() <= 1.0
    assert wav.std() > 1e-3


def test_backbone_matches_functional_reference() -> None:
    # Tight enough that the tanh approximation of GELU (off by ~1e-3 here) would fail.
    model = _randomized_tiny(seed=1)
    mel = torch.randn(2, 128, 9) * 2.0 - 4.0
    with torch.no_grad():
        got = model.backbone(mel)
        want = _reference_backbone(model.state_dict(), model.config, mel)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_forward_matches_functional_reference() -> None:
    model = _randomized_tiny(seed=1, config=_TWO_KERNEL_CONFIG)
    assert model.state_dict()["head.resblocks.13.convs2.1.weight_v"].shape == (1, 1, 5)
    mel = torch.randn(2, 128, 9) * 2.0 - 4.0
    with torch.no_grad():
        got = model(mel)
        want = _reference_forward(model.state_dict(), model.config, mel)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_folded_equals_weight_normed() -> None:
    model = _randomized_tiny(seed=2, config=_TWO_KERNEL_CONFIG)
    folded = model.folded()
    mel = torch.randn(3, 128, 11)
    with torch.no_grad():
        torch.testing.assert_close(folded(mel), model(mel), rtol=0, atol=1e-5)
    keys = folded.state_dict().keys()
    assert not any(k.endswith(("weight_g", "weight_v")) for k in keys)
    assert "head.ups.3.weight" in keys and "head.resblocks.0.convs1.1.weight" in keys
    assert not any(k.startswith("mel_transform") for k in keys)
    # Backbone and biases are shared, not copied.
    assert folded.backbone is model.backbone
    assert folded.head.conv_pre.bias is model.head.conv_pre.bias
    assert isinstance(folded.head.ups[0], nn.ConvTranspose1d)


def test_stem_conv_pads_by_replication() -> None:
    model = _randomized_tiny(seed=6)
    stem = model.backbone.channel_layers[0][0]
    x = torch.randn(1, 128, 12) + 3.0  # non-zero edges: replicate and zero padding differ
    with torch.no_grad():
        got = stem(x)
        replicate = F.conv1d(F.pad(x, (3, 3), mode="replicate"), stem.weight, stem.bias)
        zeros = F.conv1d(x, stem.weight, stem.bias, padding=3)
    torch.testing.assert_close(got, replicate, rtol=0, atol=1e-6)
    assert (got - zeros).abs()[..., :3].max() > 1e-2


# --------------------------------------------------------------------------------------------
# Config inference (config.json against the checkpoint's shapes)
# --------------------------------------------------------------------------------------------


def test_infer_config_accepts_consistent_shapes() -> None:
    cfg = VocoderConfig.tiny()
    shapes = _layout_from_naming_rules(cfg)
    assert infer_vocoder_config(cfg.to_json_dict(), shapes) == cfg


def test_infer_config_names_the_mismatching_key() -> None:
    cfg = VocoderConfig.tiny()
    shapes = _layout_from_naming_rules(cfg)
    wrong = {**cfg.to_json_dict(), "pre_conv_kernel_size": 7}
    with pytest.raises(ValueError, match=r"head\.conv_pre\.weight_v"):
        infer_vocoder_config(wrong, shapes)
    missing = dict(shapes)
    del missing["head.ups.2.weight_g"]
    with pytest.raises(ValueError, match=r"head\.ups\.2\.weight_g"):
        infer_vocoder_config(cfg.to_json_dict(), missing)
    extra = {**shapes, "head.noise_convs.0.weight": (64, 1, 64)}
    with pytest.raises(ValueError, match=r"head\.noise_convs\.0\.weight"):
        infer_vocoder_config(cfg.to_json_dict(), extra)
