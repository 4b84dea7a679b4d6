"""``lofi-export onnx``: an official-layout checkpoint → a model directory for the runtime.

The model directory is assembled in a hidden sibling folder (``lofi_daemon.fsutil.staging_dir``)
and moved into place (``replace_dir``) only when every graph, the tokenizer, the mel front-end
tables and the manifest are written; an interrupted or failed export leaves nothing at
``MODELS_DIR``.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.export import Dim

from lofi_daemon.fsutil import remove_tree, replace_dir, staging_dir

from .checkpoint import TensorSource
from .components import UMT5_TIED, build_dcae, build_transformer, build_umt5, build_vocoder
from .errors import ExportError
from .graphs import (
    GRAPH_NAMES,
    PREFIX,
    ConditionEncoderGraph,
    DcaeDecoderGraph,
    DcaeEncoderGraph,
    DenoiserGraph,
    TextEncoderGraph,
    VocoderGraph,
)
from .lora import Lora, LoraRequest
from .manifest_writer import write_manifest
from .modules.vocoder import infer_vocoder_config
from .onnx_writer import INLINE_LIMIT_BYTES, ExportedGraph, WeightLookup, export_graph
from .opened_checkpoint import OpenCheckpoint, open_checkpoint
from .precision import fp16_graph_set
from .progress import ProgressFn, graph_event, graph_start_event, start_event
from .variant import export_variant

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16")


def _lookup(source: TensorSource, lora: Lora | None = None) -> WeightLookup:
    """Checkpoint weights by graph initializer name; with ``lora``, merged into the Linears."""

    def weights(name: str, shape: tuple[int, ...]) -> np.ndarray:
        key = name.removeprefix(PREFIX)
        if lora is None:
            return source.numpy(key)
        return lora.merged(key, source.numpy(key))

    return weights


def export_models(
    checkpoint_dir: Path,
    models_dir: Path,
    *,
    precision: str | None = None,
    force: bool = False,
    inline_limit: int = INLINE_LIMIT_BYTES,
    progress: ProgressFn | None = None,
    lora: LoraRequest | None = None,
) -> Path:
    """Export every graph of ``checkpoint_dir`` into ``models_dir`` (atomically).

    With ``lora`` the LoRA is merged into the transformer's weights (:mod:`.lora`) and recorded
    in the manifest; with ``lora.base`` too, only the graphs it changes are exported and the
    other files are hard-linked from that model directory (:mod:`.variant`).

    ``progress`` receives the ``start`` event once the checkpoint is validated and one ``graph``
    event per graph file written (see :mod:`.progress`); the caller reports ``done``/``error``.

    ``precision`` (default fp32; with ``lora.base``, the base's) ``"fp16"`` writes fp16 weights and matrix products with fp32 islands
    (:mod:`.precision`); each graph is exported in fp32 first, then converted.

    Raises:
        ExportError: the checkpoint is invalid, ``models_dir`` is a non-empty folder and
            ``force`` is false, or a graph cannot be exported or written.
    """
    if precision is not None and precision not in PRECISIONS:
        raise ExportError(
            f"unsupported precision {precision!r}; supported: {', '.join(PRECISIONS)}"
        )
    ckpt = open_checkpoint(checkpoint_dir)
    if models_dir.exists() and any(models_dir.iterdir()) and not force:
        raise ExportError(
            f"{models_dir}: folder exists and is not empty (use --force to replace it)"
        )
    merged = lora.read(ckpt.transformer.shapes()) if lora is not None else None
    if merged is not None and lora is not None and lora.base is not None:
        return export_variant(
            ckpt,
            models_dir,
            lora.base,
            merged,
            export_graphs=export_all_graphs,
            precision=precision,
            inline_limit=inline_limit,
            progress=progress,
        )
    precision = precision or "fp32"
    notify = progress or (lambda _event: None)
    total = len(GRAPH_NAMES)
    written = 0

    def on_graph(graph: ExportedGraph) -> None:
        nonlocal written
        written += 1
        notify(graph_event(graph.name, graph.path.name, written, total))

    def on_graph_start(name: str) -> None:
        notify(graph_start_event(name, f"{name}.onnx", written + 1, total))

    staging = staging_dir(models_dir)
    try:
        notify(start_event(total))
        scratch = staging / ".fp32" if precision == "fp16" else staging
        scratch.mkdir(exist_ok=True)
        graphs = export_all_graphs(
            ckpt,
            scratch,
            inline_limit=inline_limit,
            on_graph=on_graph,
            on_graph_start=on_graph_start,
            lora=merged,
        )
        if scratch != staging:
            graphs = fp16_graph_set(graphs, staging)
            remove_tree(scratch)
        shutil.copyfile(ckpt.text_encoder.folder / "tokenizer.json", staging / "tokenizer.json")
        _write_mel_frontend(ckpt, staging)
        write_manifest(
            staging, ckpt, graphs, precision=precision, lora=merged.record() if merged else None
        )
        replace_dir(staging, models_dir)
    except BaseException:
        remove_tree(staging)
        raise
    log.info("model directory ready: %s", models_dir)
    return models_dir


def export_all_graphs(
    ckpt: OpenCheckpoint,
    out: Path,
    *,
    inline_limit: int = INLINE_LIMIT_BYTES,
    only: tuple[str, ...] | None = None,
    on_graph: Callable[[ExportedGraph], None] | None = None,
    on_graph_start: Callable[[str], None] | None = None,
    lora: Lora | None = None,
) -> list[ExportedGraph]:
    """Export the graphs of :data:`.graphs.GRAPH_NAMES` (or those in ``only``) into ``out``.

    ``lora``: merged into the transformer weights of the condition encoder and the denoiser.

    ``on_graph_start`` is called with a graph's name before it is built and traced, ``on_graph``
    after its file (and its external data) is written.
    """
    batch = Dim("batch")
    graphs: list[ExportedGraph] = []

    def want(name: str) -> bool:
        return only is None or name in only

    def begin(name: str) -> bool:
        """``want(name)``, announcing the graph when it is about to be exported."""
        if not want(name):
            return False
        if on_graph_start is not None:
            on_graph_start(name)
        return True

    def add(graph: ExportedGraph) -> None:
        graphs.append(graph)
        if on_graph is not None:
            on_graph(graph)

    dit_source = TensorSource(ckpt.transformer)
    tcfg, ccfg = ckpt.transformer_config, ckpt.conformer_config
    if begin("text_encoder"):
        umt5 = build_umt5(ckpt.text_encoder.config)
        layers = len(umt5.encoder.block)
        text_len = Dim("text_len")
        ids = torch.ones(2, 5, dtype=torch.int64, device="meta")
        add(
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
    dit = build_transformer(tcfg, ccfg)  # on the meta device: quick
    if begin("condition_encoder"):
        text_len, lyric_len = Dim("text_len"), Dim("lyric_len")
        add(
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
                weights=_lookup(dit_source, lora),
                inline_limit=inline_limit,
            )
        )
    if begin("denoiser"):
        frames, cond_len = Dim("frames", min=4), Dim("cond_len")
        add(
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
                weights=_lookup(dit_source, lora),
                inline_limit=inline_limit,
            )
        )
    dcae_source = TensorSource(ckpt.dcae)
    if want("dcae_decoder") or want("dcae_encoder"):
        dcae = build_dcae(ckpt.dcae.config)
        latent_channels = int(ckpt.dcae.config.get("latent_channels", 8))
        if begin("dcae_decoder"):
            add(
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
        if begin("dcae_encoder"):
            mel_blocks = Dim("mel_blocks", min=4)
            add(
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
    if begin("vocoder"):
        vcfg = infer_vocoder_config(ckpt.vocoder.config, ckpt.vocoder.shapes())
        vocoder = build_vocoder(vcfg).folded()
        add(
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
