"""Tests for the weight-normed convolutions of the vocoder head (``lofi_export.modules.vocoder_head``):
the old ``torch.nn.utils.weight_norm`` layout, reproduced and folded."""

from __future__ import annotations

import warnings

import torch
from lofi_export.modules.vocoder_head import WeightNormConv1d, WeightNormConvTranspose1d
from torch import nn


def _torch_weight_norm(module: nn.Module) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return nn.utils.weight_norm(module, dim=0)


def test_weight_norm_conv1d_matches_torch() -> None:
    torch.manual_seed(4)
    ref = _torch_weight_norm(nn.Conv1d(6, 5, 7, dilation=3, padding=9))
    with torch.no_grad():
        ref.get_parameter("weight_g").uniform_(0.5, 2.0)
        ref.get_parameter("bias").normal_()
    mine = WeightNormConv1d(6, 5, 7, dilation=3)
    mine.load_state_dict({k: v for k, v in ref.state_dict().items()})
    assert mine.weight_g.shape == (5, 1, 1)
    x = torch.randn(2, 6, 40)
    with torch.no_grad():
        torch.testing.assert_close(mine(x), ref(x), rtol=0, atol=1e-6)
        torch.testing.assert_close(mine.folded()(x), ref(x), rtol=0, atol=1e-6)


def test_weight_norm_conv_transpose_matches_torch() -> None:
    torch.manual_seed(5)
    ref = _torch_weight_norm(nn.ConvTranspose1d(8, 4, 8, stride=4, padding=2))
    with torch.no_grad():
        ref.get_parameter("weight_g").uniform_(0.5, 2.0)
        ref.get_parameter("bias").normal_()
    assert ref.weight_g.shape == (8, 1, 1)  # per input channel
    mine = WeightNormConvTranspose1d(8, 4, 8, 4)
    mine.load_state_dict(dict(ref.state_dict()))
    x = torch.randn(2, 8, 13)
    with torch.no_grad():
        out = mine(x)
        torch.testing.assert_close(out, ref(x), rtol=0, atol=1e-6)
        torch.testing.assert_close(mine.folded()(x), ref(x), rtol=0, atol=1e-6)
    assert out.shape[-1] == 4 * 13
