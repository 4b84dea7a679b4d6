"""Key -> shape maps of the three weight files of an ACE-Step 1.5 turbo checkpoint, and sizes.

* ``acestep-v15-turbo/model.safetensors``: everything upstream ``AceStepConditionGenerationModel``
  saves: ``decoder.*`` (the DiT), ``encoder.*`` (condition encoder), ``tokenizer.*`` and
  ``detokenizer.*`` (the FSQ audio tokenizer and detokenizer, kept for the layout only: the
  text2music path never runs them) and ``null_condition_emb``. 677 tensors for the full preset.
* ``vae/diffusion_pytorch_model.safetensors``: ``diffusers.AutoencoderOobleck`` with weight-norm
  ``weight_g``/``weight_v`` pairs (365 tensors).
* ``Qwen3-Embedding-0.6B/model.safetensors``: ``Qwen3Model`` without the ``model.`` prefix (310).

The DiT, condition encoder and Qwen3 maps come from this package's modules (built on the meta
device); the tokenizer/detokenizer maps are written out from upstream ``AceStepAudioTokenizer``,
``AttentionPooler``, ``AudioTokenDetokenizer`` and ``vector_quantize_pytorch.ResidualFSQ``
(``project_in``/``project_out`` to ``len(levels)`` dims; its buffers are not persistent).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .condition import ConditionEncoder, encoder_layers
from .dit import DiT
from .presets import AceStepConfig, Qwen3Config
from .qwen3 import Qwen3TextEncoder

if TYPE_CHECKING:
    from diffusers.models.autoencoders.autoencoder_oobleck import AutoencoderOobleck

Shapes = dict[str, tuple[int, ...]]
DTYPE_SIZES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4}


def module_shapes(module: nn.Module, prefix: str = "") -> Shapes:
    """Every persistent state-dict entry of ``module`` with its shape, keys prefixed."""
    return {prefix + name: tuple(t.shape) for name, t in module.state_dict().items()}


def _encoder_layer_shapes(cfg: AceStepConfig, count: int, prefix: str) -> Shapes:
    with torch.device("meta"):
        layers = encoder_layers(cfg, count)
    return module_shapes(layers, prefix)


def audio_tokenizer_shapes(cfg: AceStepConfig) -> Shapes:
    """``tokenizer.*`` (``AceStepAudioTokenizer``): 32 tensors for the full preset."""
    h, codebook_dim = cfg.hidden_size, len(cfg.fsq_input_levels)
    pooler = "tokenizer.attention_pooler."
    return {
        "tokenizer.audio_acoustic_proj.weight": (h, cfg.audio_acoustic_hidden_dim),
        "tokenizer.audio_acoustic_proj.bias": (h,),
        pooler + "embed_tokens.weight": (h, h),
        pooler + "embed_tokens.bias": (h,),
        pooler + "norm.weight": (h,),
        pooler + "special_token": (1, 1, h),
        **_encoder_layer_shapes(cfg, cfg.num_attention_pooler_hidden_layers, pooler + "layers."),
        "tokenizer.quantizer.project_in.weight": (codebook_dim, cfg.fsq_dim),
        "tokenizer.quantizer.project_in.bias": (codebook_dim,),
        "tokenizer.quantizer.project_out.weight": (cfg.fsq_dim, codebook_dim),
        "tokenizer.quantizer.project_out.bias": (cfg.fsq_dim,),
    }


def audio_detokenizer_shapes(cfg: AceStepConfig) -> Shapes:
    """``detokenizer.*`` (``AudioTokenDetokenizer``): 28 tensors for the full preset."""
    h = cfg.hidden_size
    return {
        "detokenizer.embed_tokens.weight": (h, h),
        "detokenizer.embed_tokens.bias": (h,),
        "detokenizer.norm.weight": (h,),
        "detokenizer.special_tokens": (1, cfg.pool_window_size, h),
        **_encoder_layer_shapes(cfg, cfg.num_attention_pooler_hidden_layers, "detokenizer.layers."),
        "detokenizer.proj_out.weight": (cfg.audio_acoustic_hidden_dim, h),
        "detokenizer.proj_out.bias": (cfg.audio_acoustic_hidden_dim,),
    }


def dit_file_shapes(cfg: AceStepConfig) -> Shapes:
    """All keys of ``acestep-v15-turbo/model.safetensors``."""
    with torch.device("meta"):
        dit = DiT(cfg)
        encoder = ConditionEncoder(cfg)
    return {
        **module_shapes(dit, "decoder."),
        **module_shapes(encoder, "encoder."),
        **audio_tokenizer_shapes(cfg),
        **audio_detokenizer_shapes(cfg),
        "null_condition_emb": (1, 1, cfg.hidden_size),
    }


def text_encoder_shapes(cfg: Qwen3Config) -> Shapes:
    """All keys of ``Qwen3-Embedding-0.6B/model.safetensors``."""
    with torch.device("meta"):
        return module_shapes(Qwen3TextEncoder(cfg))


def build_vae(config: dict[str, Any], device: str = "cpu") -> AutoencoderOobleck:
    """``diffusers.AutoencoderOobleck`` with weight-norm convs (keys ``weight_g``/``weight_v``)."""
    import warnings

    from diffusers.models.autoencoders.autoencoder_oobleck import AutoencoderOobleck

    with warnings.catch_warnings(), torch.device(device):
        warnings.simplefilter("ignore", FutureWarning)  # torch.nn.utils.weight_norm deprecation
        return AutoencoderOobleck(**config)


def vae_shapes(config: dict[str, Any]) -> Shapes:
    """All keys of ``vae/diffusion_pytorch_model.safetensors``."""
    return module_shapes(build_vae(config, "meta"))


def param_count(shapes: Shapes) -> int:
    return sum(math.prod(shape) for shape in shapes.values())


def size_of_safetensors(
    entries: Iterable[tuple[str, str, tuple[int, ...]]], metadata: dict[str, str] | None = None
) -> int:
    """Exact byte size of the file ``safetensors_io.write_streaming`` writes for ``entries``
    ``(name, dtype, shape)`` in that order, without writing it: 8-byte header length, compact
    JSON header padded with spaces to a multiple of 8, then the raw tensor data."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name, dtype, shape in entries:
        nbytes = math.prod(shape) * DTYPE_SIZES[dtype]
        header[name] = {
            "dtype": dtype,
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    raw_len = len(json.dumps(header, separators=(",", ":")).encode("utf-8"))
    return 8 + raw_len + (-raw_len % 8) + offset


def checkpoint_file_size(shapes: Shapes, dtype: str = "BF16") -> int:
    """Size of one weight file as ``write_turbo_checkpoint`` writes it (sorted keys, metadata
    ``{"format": "pt"}``)."""
    return size_of_safetensors(((k, dtype, shapes[k]) for k in sorted(shapes)), {"format": "pt"})
