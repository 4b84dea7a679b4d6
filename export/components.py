"""Build each checkpoint component as a torch module (on the meta device by default).

The transformer and vocoder are this project's own modules; UMT5 comes from transformers and the
DCAE from diffusers, as in the reference pipeline.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .modules.conformer import ConformerConfig
from .modules.transformer import ACEStepTransformer, TransformerConfig
from .modules.vocoder import Vocoder
from .modules.vocoder_config import VocoderConfig

if TYPE_CHECKING:
    from diffusers.models.autoencoders.autoencoder_dc import AutoencoderDC
    from transformers import UMT5EncoderModel  # untyped (no py.typed): Any to mypy

log = logging.getLogger(__name__)


def _quiet_transformers() -> contextlib.AbstractContextManager[None]:
    from transformers.utils import logging as hf_logging

    @contextlib.contextmanager
    def quiet() -> Any:
        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            yield
        finally:
            hf_logging.set_verbosity(level)

    return quiet()


def build_transformer(
    config: TransformerConfig, conformer: ConformerConfig, device: str = "meta"
) -> ACEStepTransformer:
    with torch.device(device):
        return ACEStepTransformer(config, conformer).eval()


def build_umt5(config: dict[str, Any], device: str = "meta") -> UMT5EncoderModel:
    from transformers import UMT5Config, UMT5EncoderModel

    with _quiet_transformers(), torch.device(device):
        cfg = UMT5Config.from_dict(dict(config))
        model = UMT5EncoderModel(cfg)
    return model.eval()


def build_dcae(config: dict[str, Any], device: str = "meta") -> AutoencoderDC:
    # The defining module, not ``diffusers``: its lazy __init__ shows type checkers a dummy class.
    from diffusers.models.autoencoders.autoencoder_dc import AutoencoderDC

    kwargs = {k: v for k, v in config.items() if not k.startswith("_")}
    with torch.device(device):
        model = AutoencoderDC(**kwargs)
    return model.eval()


def build_vocoder(config: VocoderConfig, device: str = "meta") -> Vocoder:
    with torch.device(device):
        return Vocoder(config).eval()


def state_shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    """Every persistent entry of ``module.state_dict()`` with its shape."""
    return {name: tuple(t.shape) for name, t in module.state_dict().items()}


# UMT5's input embedding is tied to ``shared.weight``; the checkpoint stores only the latter.
UMT5_TIED = {"encoder.embed_tokens.weight": "shared.weight"}
