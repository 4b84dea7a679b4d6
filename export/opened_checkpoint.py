"""A whole official-layout checkpoint, opened and validated before any export work.

Both the export (``export_models``, ``manifest_writer``) and the torch references (``reference``)
start from :func:`open_checkpoint`; it lives here so that none of them has to import another.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lofi_daemon.model import layout

from .checkpoint import Component, check_keys, open_component
from .components import (
    UMT5_TIED,
    build_dcae,
    build_transformer,
    build_umt5,
    build_vocoder,
    state_shapes,
)
from .errors import CheckpointError
from .modules.conformer import ConformerConfig
from .modules.transformer import TransformerConfig, unused_checkpoint_key
from .modules.vocoder_config import VocoderConfig


@dataclass
class OpenCheckpoint:
    """The four validated components plus the configs derived from them."""

    root: Path
    transformer: Component
    text_encoder: Component
    dcae: Component
    vocoder: Component
    transformer_config: TransformerConfig
    conformer_config: ConformerConfig


def open_checkpoint(root: Path) -> OpenCheckpoint:
    """Open and fully validate a checkpoint folder (keys, shapes, dtypes) before any export work.

    Raises:
        CheckpointError: one line naming the folder, file or key at fault.
    """
    if not root.is_dir():
        raise CheckpointError(f"{root}: checkpoint folder does not exist")
    transformer = open_component(root, layout.TRANSFORMER)
    text_encoder = open_component(root, layout.TEXT_ENCODER)
    dcae = open_component(root, layout.DCAE)
    vocoder = open_component(root, layout.VOCODER)
    if not (text_encoder.folder / "tokenizer.json").is_file():
        raise CheckpointError(f"{text_encoder.folder / 'tokenizer.json'}: missing file")

    tcfg = TransformerConfig.from_json_dict(transformer.config)
    try:
        ccfg = ConformerConfig.from_shapes(transformer.shapes())
    except ValueError as exc:
        raise CheckpointError(f"{transformer.weights_path}: {exc}") from exc
    try:
        dit = build_transformer(tcfg, ccfg)
    except (TypeError, ValueError) as exc:  # TypeError: a config value of the wrong JSON type
        raise CheckpointError(f"{transformer.folder / 'config.json'}: {exc}") from exc
    check_keys(transformer, state_shapes(dit), tolerated=unused_checkpoint_key)

    try:
        umt5_shapes = state_shapes(build_umt5(text_encoder.config))
    except Exception as exc:
        raise CheckpointError(
            f"{text_encoder.folder / 'config.json'}: cannot build UMT5 ({exc})"
        ) from exc
    check_keys(text_encoder, umt5_shapes, aliases=UMT5_TIED)

    try:
        dcae_shapes = state_shapes(build_dcae(dcae.config))
    except Exception as exc:
        raise CheckpointError(
            f"{dcae.folder / 'config.json'}: cannot build AutoencoderDC ({exc})"
        ) from exc
    check_keys(dcae, dcae_shapes)

    # Only the config is read here; keys and shapes are checked by check_keys, whose errors
    # name the weights file (infer_vocoder_config would blame config.json for a missing key).
    try:
        vcfg = VocoderConfig.from_json_dict(vocoder.config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{vocoder.folder / 'config.json'}: {exc}") from exc
    check_keys(vocoder, state_shapes(build_vocoder(vcfg)))
    return OpenCheckpoint(root, transformer, text_encoder, dcae, vocoder, tcfg, ccfg)
