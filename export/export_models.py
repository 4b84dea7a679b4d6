"""``lofi-export onnx``: an official-layout checkpoint → a model directory for the runtime.

The model directory is assembled in a temporary sibling folder and renamed into place only when
every graph, the tokenizer, the mel front-end tables and the manifest are written; an interrupted or
failed export leaves nothing at ``MODELS_DIR``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.export import Dim

from lofi_daemon.model import layout

from .checkpoint import Component, TensorSource, check_keys, open_component
from .components import (
    UMT5_TIED,
    build_dcae,
    build_transformer,
    build_umt5,
    build_vocoder,
    state_shapes,
)
from .errors import CheckpointError, ExportError
from .graphs import (
    PREFIX,
    ConditionEncoderGraph,
    DcaeDecoderGraph,
    DcaeEncoderGraph,
    DenoiserGraph,
    TextEncoderGraph,
    VocoderGraph,
)
from .manifest_writer import write_manifest
from .modules.conformer import ConformerConfig
from .modules.transformer import TransformerConfig, unused_checkpoint_key
from .modules.vocoder import VocoderConfig, infer_vocoder_config
from .onnx_writer import INLINE_LIMIT_BYTES, ExportedGraph, export_graph

LOG = logging.getLogger(__name__)

PRECISIONS = ("fp32",)


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
    """Open and fully validate a checkpoint folder (keys, shapes, dtypes) before any export work."""
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


def _lookup(source: TensorSource):
    def weights(name: str, shape: tuple[int, ...]) -> np.ndarray:
        key = name.removeprefix(PREFIX)
        return source.numpy(key)

    return weights


def export_models(
    checkpoint_dir: Path,
    models_dir: Path,
    *,
    precision: str = "fp32",
    force: bool = False,
    inline_limit: int = INLINE_LIMIT_BYTES,
) -> Path:
    """Export every graph of ``checkpoint_dir`` into ``models_dir`` (atomically)."""
    if precision not in PRECISIONS:
        raise ExportError(
            f"unsupported precision {precision!r}; supported: {', '.join(PRECISIONS)}"
        )
    ckpt = open_checkpoint(checkpoint_dir)
    if models_dir.exists() and any(models_dir.iterdir()) and not force:
        raise ExportError(
            f"{models_dir}: folder exists and is not empty (use --force to replace it)"
        )
    models_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{models_dir.name}.", suffix=".partial", dir=models_dir.parent)
    )
    staging.chmod(0o755)
    try:
        graphs = export_all_graphs(ckpt, staging, inline_limit=inline_limit)
        shutil.copyfile(ckpt.text_encoder.folder / "tokenizer.json", staging / "tokenizer.json")
        _write_mel_frontend(ckpt, staging)
        write_manifest(staging, ckpt, graphs, precision=precision)
        if models_dir.exists():
            old = models_dir.with_name(models_dir.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            models_dir.rename(old)
            staging.rename(models_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(models_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    LOG.info("model directory ready: %s", models_dir)
    return models_dir


def export_all_graphs(
    ckpt: OpenCheckpoint,
    out: Path,
    *,
    inline_limit: int = INLINE_LIMIT_BYTES,
    only: tuple[str, ...] | None = None,
) -> list[ExportedGraph]:
    """Export each graph of the split (spec §18) into ``out``."""
    batch = Dim("batch")
    graphs: list[ExportedGraph] = []

    def want(name: str) -> bool:
        return only is None or name in only

    dit_source = TensorSource(ckpt.transformer)
    tcfg, ccfg = ckpt.transformer_config, ckpt.conformer_config
    if want("text_encoder"):
        umt5 = build_umt5(ckpt.text_encoder.config)
        layers = len(umt5.encoder.block)
        text_len = Dim("text_len")
        ids = torch.ones(2, 5, dtype=torch.int64, device="meta")
        graphs.append(
            export_graph(
                TextEncoderGraph(umt5),
                (ids, ids.clone(), torch.ones(2, layers, device="meta")),
                path=out / "text_encoder.onnx",
                input_names=["input_ids", "attention_mask", "q_scale"],
                output_names=["last_hidden_state"],
                dynamic_shapes=({0: batch, 1: text_len}, {0: batch, 1: text_len}, {0: batch}),
                weights=_lookup(TensorSource(ckpt.text_encoder, aliases=UMT5_TIED)),
                inline_limit=inline_limit,
            )
        )
    dit = build_transformer(tcfg, ccfg)
    if want("condition_encoder"):
        text_len, lyric_len = Dim("text_len"), Dim("lyric_len")
        graphs.append(
            export_graph(
                ConditionEncoderGraph(dit),
                (
                    torch.ones(2, 5, tcfg.text_embedding_dim, device="meta"),
                    torch.ones(2, 5, dtype=torch.int64, device="meta"),
                    torch.ones(2, tcfg.speaker_embedding_dim, device="meta"),
                    torch.ones(2, 7, dtype=torch.int64, device="meta"),
                    torch.ones(2, 7, dtype=torch.int64, device="meta"),
                    torch.ones(2, ccfg.num_blocks, device="meta"),
                ),
                path=out / "condition_encoder.onnx",
                input_names=[
                    "text_hidden",
                    "text_mask",
                    "speaker",
                    "lyric_ids",
                    "lyric_mask",
                    "lyric_q_scale",
                ],
                output_names=["cond", "cond_mask"],
                dynamic_shapes=(
                    {0: batch, 1: text_len},
                    {0: batch, 1: text_len},
                    {0: batch},
                    {0: batch, 1: lyric_len},
                    {0: batch, 1: lyric_len},
                    {0: batch},
                ),
                weights=_lookup(dit_source),
                inline_limit=inline_limit,
            )
        )
    if want("denoiser"):
        frames, cond_len = Dim("frames", min=4), Dim("cond_len")
        graphs.append(
            export_graph(
                DenoiserGraph(dit),
                (
                    torch.ones(2, tcfg.in_channels, tcfg.patch_size[0], 11, device="meta"),
                    torch.ones(2, device="meta"),
                    torch.ones(2, 13, tcfg.inner_dim, device="meta"),
                    torch.ones(2, 13, device="meta"),
                    torch.ones(2, tcfg.num_layers, device="meta"),
                ),
                path=out / "denoiser.onnx",
                input_names=["latents", "timestep", "cond", "cond_mask", "q_scale"],
                output_names=["velocity"],
                dynamic_shapes=(
                    {0: batch, 3: frames},
                    {0: batch},
                    {0: batch, 1: cond_len},
                    {0: batch, 1: cond_len},
                    {0: batch},
                ),
                weights=_lookup(dit_source),
                inline_limit=inline_limit,
            )
        )
    dcae_source = TensorSource(ckpt.dcae)
    if want("dcae_decoder") or want("dcae_encoder"):
        dcae = build_dcae(ckpt.dcae.config)
        latent_channels = int(ckpt.dcae.config.get("latent_channels", 8))
        if want("dcae_decoder"):
            graphs.append(
                export_graph(
                    DcaeDecoderGraph(dcae),
                    (torch.ones(2, latent_channels, 16, 11, device="meta"),),
                    path=out / "dcae_decoder.onnx",
                    input_names=["latents"],
                    output_names=["mel"],
                    dynamic_shapes=({0: batch, 3: Dim("frames", min=4)},),
                    weights=_lookup(dcae_source),
                    inline_limit=inline_limit,
                )
            )
        if want("dcae_encoder"):
            mel_blocks = Dim("mel_blocks", min=4)
            graphs.append(
                export_graph(
                    DcaeEncoderGraph(dcae),
                    (torch.ones(2, 2, 128, 88, device="meta"),),
                    path=out / "dcae_encoder.onnx",
                    input_names=["mel"],
                    output_names=["latents"],
                    dynamic_shapes=({0: batch, 3: 8 * mel_blocks},),
                    output_dims={"latents": {3: "mel_blocks"}},
                    weights=_lookup(dcae_source),
                    inline_limit=inline_limit,
                )
            )
    if want("vocoder"):
        vcfg = infer_vocoder_config(ckpt.vocoder.config, ckpt.vocoder.shapes())
        vocoder = build_vocoder(vcfg).folded()
        graphs.append(
            export_graph(
                VocoderGraph(vocoder),
                (torch.ones(2, vcfg.input_channels, 24, device="meta"),),
                path=out / "vocoder.onnx",
                input_names=["mel"],
                output_names=["waveform"],
                dynamic_shapes=({0: batch, 2: Dim("mel_frames", min=2)},),
                weights=_lookup(TensorSource(ckpt.vocoder)),
                inline_limit=inline_limit,
            )
        )
    return graphs


def _write_mel_frontend(ckpt: OpenCheckpoint, out: Path) -> None:
    """The encode path's STFT window and mel filterbank, as stored (16-bit) in the checkpoint."""
    source = TensorSource(ckpt.vocoder)
    np.savez(
        out / "mel_frontend.npz",
        window=source.numpy("mel_transform.spectrogram.window").astype(np.float32),
        filterbank=source.numpy("mel_transform.mel_scale.fb").astype(np.float32),
    )
