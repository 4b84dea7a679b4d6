"""``lofi-export onnx`` for an ACE-Step 1.5 checkpoint: the turbo model directory.

Layout read: :mod:`lofi_daemon.model.turbo_layout` (``acestep-v15-turbo``, ``vae``,
``Qwen3-Embedding-0.6B``). Written, all float32 at batch 1: the four graphs of :mod:`.graphs`,
three ``.npy`` arrays (the Qwen3 token embedding, the silence latent transposed to
``[15000, C]`` and the timbre vector of that silence), ``tokenizer.json`` and ``manifest.json``.

Like the v1 export (``export_models.py``) the directory is assembled in a hidden sibling
(``staging_dir``) and moved into place (``replace_dir``) only when complete, so a failed or
interrupted export leaves nothing at ``MODELS_DIR``. Weights are streamed one tensor at a time
from the safetensors files (``onnx_writer.export_graph``); the only module holding real weights
is the timbre encoder, for the one ``silence_timbre`` vector.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lofi_daemon.fsutil import remove_tree, replace_dir, staging_dir, write_json_atomic
from lofi_daemon.model import layout, turbo_layout
from lofi_daemon.model.manifest import MANIFEST_NAME, sha256_file

from ..checkpoint import Component, TensorSource, open_component
from ..errors import CheckpointError, ExportError
from ..manifest_writer import graph_entry
from ..onnx_writer import INLINE_LIMIT_BYTES, ExportedGraph
from ..precision import fp16_graph_set
from ..progress import ProgressFn, graph_event, graph_start_event, start_event
from . import graphs as turbo_graphs

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
PRECISIONS = ("fp32", "fp16")
EMBED_TOKENS_KEY = "embed_tokens.weight"


@dataclass
class TurboCheckpoint:
    """The three validated folders of a 1.5 checkpoint and the silence latent ``[1, C, 15000]``."""

    root: Path
    dit: Component
    vae: Component
    text: Component
    silence_latent: torch.Tensor

    @property
    def latent_channels(self) -> int:
        return int(self.silence_latent.shape[1])


def _component(root: Path, folder: turbo_layout.Folder) -> Component:
    """Open one folder (config.json and safetensors header); errors name the file at fault."""
    path = root / folder.name
    if not path.is_dir():
        raise CheckpointError(
            f"{path}: missing folder (an ACE-Step 1.5 checkpoint has "
            f"{', '.join(f.name for f in turbo_layout.FOLDERS)})"
        )
    return open_component(root, layout.ComponentLayout(folder.name, folder.name, folder.weights))


def _load_silence_latent(path: Path) -> torch.Tensor:
    """``silence_latent.pt``: a float tensor ``[1, C, 15000]`` (upstream transposes it on load)."""
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged archive
        raise CheckpointError(f"{path}: cannot read ({exc})") from exc
    frames = turbo_layout.SILENCE_LATENT_FRAMES
    if (
        not isinstance(value, torch.Tensor)
        or not value.is_floating_point()
        or value.dim() != 3
        or value.shape[0] != 1
        or value.shape[2] != frames
    ):
        shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise CheckpointError(f"{path}: expected a float tensor [1, C, {frames}], found {shape}")
    return value.to(torch.float32)


def open_turbo_checkpoint(root: Path) -> TurboCheckpoint:
    """Open and validate a 1.5 checkpoint (files, configs, keys and shapes) before any export work.

    Raises:
        CheckpointError: one line naming the folder, file, key or shape at fault.
    """
    if not root.is_dir():
        raise CheckpointError(f"{root}: checkpoint folder does not exist")
    dit = _component(root, turbo_layout.DIT)
    vae = _component(root, turbo_layout.VAE)
    text = _component(root, turbo_layout.TEXT_ENCODER)
    for relative in turbo_layout.REQUIRED_FILES:
        if not (root / relative).is_file():
            raise CheckpointError(f"{root / relative}: missing file")
    silence = _load_silence_latent(root / turbo_layout.DIT.name / "silence_latent.pt")
    ckpt = TurboCheckpoint(root, dit, vae, text, silence)
    turbo_graphs.check_checkpoint(ckpt.dit, ckpt.vae, ckpt.text, ckpt.latent_channels)
    return ckpt


def model_version(ckpt: TurboCheckpoint, precision: str = "fp32") -> str:
    """``ace-step-1.5-turbo-<12 hex>`` (``-fp16-`` before the digest for an fp16 set): sha256 of
    the DiT config.json and safetensors header."""
    digest = hashlib.sha256((ckpt.dit.folder / "config.json").read_bytes())
    with ckpt.dit.weights_path.open("rb") as handle:
        prefix = handle.read(8)
        (length,) = struct.unpack("<Q", prefix)
        digest.update(prefix + handle.read(length))
    tag = "" if precision == "fp32" else f"-{precision}"
    return f"{turbo_layout.BACKEND}-{turbo_layout.VARIANT}{tag}-{digest.hexdigest()[:12]}"


def export_turbo(
    checkpoint_dir: Path,
    models_dir: Path,
    *,
    precision: str = "fp32",
    force: bool = False,
    inline_limit: int = INLINE_LIMIT_BYTES,
    progress: ProgressFn | None = None,
) -> Path:
    """Export the 1.5 checkpoint at ``checkpoint_dir`` into ``models_dir`` (atomically).

    ``progress`` receives ``start`` once the checkpoint is validated, then ``graph_start`` and
    ``graph`` for each of the four graphs (:mod:`..progress`); the caller reports done/error.

    Raises:
        ExportError: the checkpoint is invalid, ``models_dir`` is a non-empty folder and
            ``force`` is false, or a graph cannot be exported or written.
    """
    if precision not in PRECISIONS:
        raise ExportError(
            f"unsupported precision {precision!r}; supported: {', '.join(PRECISIONS)}"
        )
    ckpt = open_turbo_checkpoint(checkpoint_dir)
    if models_dir.exists() and not models_dir.is_dir():
        raise ExportError(f"{models_dir}: exists and is not a folder")
    if models_dir.exists() and any(models_dir.iterdir()) and not force:
        raise ExportError(
            f"{models_dir}: folder exists and is not empty (use --force to replace it)"
        )
    notify = progress or (lambda _event: None)
    total = len(turbo_layout.GRAPHS)
    written = 0

    def on_graph_start(name: str) -> None:
        notify(graph_start_event(name, f"{name}.onnx", written + 1, total))

    def on_graph(graph: ExportedGraph) -> None:
        nonlocal written
        written += 1
        notify(graph_event(graph.name, graph.path.name, written, total))

    staging = staging_dir(models_dir)
    try:
        notify(start_event(total))
        scratch = staging / ".fp32" if precision == "fp16" else staging
        scratch.mkdir(exist_ok=True)
        graphs = turbo_graphs.export_turbo_graphs(
            ckpt.dit,
            ckpt.vae,
            ckpt.text,
            scratch,
            inline_limit=inline_limit,
            on_graph=on_graph,
            on_graph_start=on_graph_start,
        )
        if scratch != staging:
            graphs = fp16_graph_set(graphs, staging)
            remove_tree(scratch)
        _write_arrays(ckpt, staging)
        shutil.copyfile(
            ckpt.text.folder / turbo_layout.TOKENIZER_FILE, staging / turbo_layout.TOKENIZER_FILE
        )
        write_turbo_manifest(staging, ckpt, graphs, precision)
        replace_dir(staging, models_dir)
    except BaseException:
        remove_tree(staging)
        raise
    log.info("model directory ready: %s", models_dir)
    return models_dir


def _save(path: Path, array: np.ndarray) -> None:
    np.save(path, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)


def _write_arrays(ckpt: TurboCheckpoint, out: Path) -> None:
    """``embed_tokens.npy`` [V, Dt], ``silence_latent.npy`` [15000, C], ``silence_timbre.npy``."""
    embed = TensorSource(ckpt.text).numpy(EMBED_TOKENS_KEY)
    _save(out / f"{turbo_layout.ARRAY_EMBED_TOKENS}.npy", embed)
    del embed
    silence = ckpt.silence_latent[0].transpose(0, 1).contiguous()  # [15000, C]
    _save(out / f"{turbo_layout.ARRAY_SILENCE_LATENT}.npy", silence.numpy())
    timbre = turbo_graphs.silence_timbre(ckpt.dit, silence[None, : turbo_layout.TIMBRE_FRAMES])
    _save(out / f"{turbo_layout.ARRAY_SILENCE_TIMBRE}.npy", timbre)
    log.info("wrote the embedding, silence latent and silence timbre arrays")


def _constants(ckpt: TurboCheckpoint) -> dict[str, Any]:
    embed = ckpt.text.tensors[EMBED_TOKENS_KEY].shape
    return {
        "sample_rate": turbo_layout.SAMPLE_RATE,
        "samples_per_latent_frame": turbo_layout.SAMPLES_PER_LATENT_FRAME,
        "latent_channels": ckpt.latent_channels,
        "patch_size": turbo_layout.PATCH_SIZE,
        "hidden_size": int(ckpt.dit.config["hidden_size"]),
        "text_hidden_size": int(embed[1]),
        "vocab_size": int(embed[0]),
        "text_max_tokens": turbo_layout.TEXT_MAX_TOKENS,
        "lyric_max_tokens": turbo_layout.LYRIC_MAX_TOKENS,
        "timbre_frames": turbo_layout.TIMBRE_FRAMES,
        "silence_frames": turbo_layout.SILENCE_LATENT_FRAMES,
        "min_duration_sec": turbo_layout.MIN_DURATION_SEC,
        "max_duration_sec": turbo_layout.MAX_DURATION_SEC,
    }


def write_turbo_manifest(
    out: Path, ckpt: TurboCheckpoint, graphs: list[ExportedGraph], precision: str = "fp32"
) -> dict[str, Any]:
    """Write ``out/manifest.json`` (every other file in ``out`` must be final) and return it."""
    entries = {g.name: graph_entry(g) for g in graphs}
    missing = [name for name in turbo_layout.GRAPHS if name not in entries]
    if missing:
        raise ExportError(f"internal: graphs not exported: {', '.join(missing)}")
    files = {
        path.name: {"size": path.stat().st_size, "sha256": sha256_file(path)}
        for path in sorted(out.iterdir())
        if path.is_file() and path.name != MANIFEST_NAME
    }
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "backend": turbo_layout.BACKEND,
        "variant": turbo_layout.VARIANT,
        "model_version": model_version(ckpt, precision),
        "precision": precision,
        "graphs": {name: entries[name] for name in turbo_layout.GRAPHS},
        "arrays": {name: {"file": f"{name}.npy"} for name in turbo_layout.ARRAYS},
        "tokenizer": {"file": turbo_layout.TOKENIZER_FILE},
        "constants": _constants(ckpt),
        "defaults": {
            "shift": turbo_layout.DEFAULT_SHIFT,
            "steps": turbo_layout.TURBO_STEPS,
            "vocal_language": "unknown",
        },
        "files": files,
    }
    write_json_atomic(out / MANIFEST_NAME, manifest)
    log.debug("manifest: %s", json.dumps(manifest["constants"]))
    return manifest
