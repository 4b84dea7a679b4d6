"""Write ``manifest.json``: graphs with their I/O, runtime constants, defaults, provenance, hashes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from lofi_daemon.fsutil import write_json_atomic
from lofi_daemon.model import layout
from lofi_daemon.model.manifest import MANIFEST_NAME, sha256_file
from lofi_daemon.pipeline.params import GenerationParams

from .graphs import GRAPH_NAMES
from .onnx_writer import OPSET, ExportedGraph, IOSpec
from .opened_checkpoint import OpenCheckpoint

MANIFEST_SCHEMA_VERSION = 1


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def _io(specs: Iterable[IOSpec]) -> list[dict[str, Any]]:
    return [{"name": s.name, "dtype": s.dtype, "shape": list(s.dims)} for s in specs]


def _source_files(ckpt: OpenCheckpoint) -> dict[str, dict[str, Any]]:
    files: dict[str, dict[str, Any]] = {}
    for component in (ckpt.transformer, ckpt.text_encoder, ckpt.dcae, ckpt.vocoder):
        names = ["config.json", component.layout.weights]
        if component is ckpt.text_encoder:
            names += [n for n in layout.TOKENIZER_FILES if (component.folder / n).is_file()]
        for name in names:
            path = component.folder / name
            files[f"{component.layout.folder}/{name}"] = {
                "sha256": sha256_file(path),
                "size": path.stat().st_size,
            }
    return files


def build_constants(ckpt: OpenCheckpoint) -> dict[str, Any]:
    tcfg = ckpt.transformer_config
    umt5_layers = int(ckpt.text_encoder.config.get("num_layers", 12))
    return {
        "sample_rate_model": layout.SAMPLE_RATE_MODEL,
        "sample_rate_output": layout.SAMPLE_RATE_OUTPUT,
        "samples_per_latent_frame": layout.SAMPLES_PER_LATENT_FRAME,
        "latent_frames_per_second": layout.SAMPLE_RATE_MODEL / layout.SAMPLES_PER_LATENT_FRAME,
        "mel_frames_per_latent_frame": layout.MEL_FRAMES_PER_LATENT_FRAME,
        "vocoder_hop_length": layout.SAMPLES_PER_LATENT_FRAME // layout.MEL_FRAMES_PER_LATENT_FRAME,
        "latent_channels": tcfg.in_channels,
        "latent_height": tcfg.patch_size[0],
        "dcae_scale": layout.DCAE_SCALE,
        "dcae_shift": layout.DCAE_SHIFT,
        "mel_min": layout.MEL_MIN,
        "mel_max": layout.MEL_MAX,
        "text_max_tokens": layout.TEXT_MAX_TOKENS,
        "text_hidden_size": tcfg.text_embedding_dim,
        "speaker_embedding_dim": tcfg.speaker_embedding_dim,
        "text_encoder_layers": umt5_layers,
        "conformer_blocks": ckpt.conformer_config.num_blocks,
        "denoiser_layers": tcfg.num_layers,
        "scheduler_shift": 3.0,
        "num_train_timesteps": 1000,
        "erg": {
            "scale": layout.ERG_SCALE,
            "tag_layers": list(range(*layout.ERG_TAG_LAYERS)),
            "lyric_layers": list(range(*layout.ERG_LYRIC_LAYERS)),
            "diffusion_layers": list(range(*layout.ERG_DIFFUSION_LAYERS)),
        },
    }


def source_files(ckpt: OpenCheckpoint) -> dict[str, dict[str, Any]]:
    """The manifest's ``source.files``: sha256 and size of every checkpoint file the export reads."""
    return _source_files(ckpt)


def graph_entry(graph: ExportedGraph) -> dict[str, Any]:
    return {
        "file": graph.path.name,
        "external_data": graph.external_data.name if graph.external_data else None,
        "inputs": _io(graph.inputs),
        "outputs": _io(graph.outputs),
    }


def write_manifest(
    out: Path,
    ckpt: OpenCheckpoint,
    graphs: list[ExportedGraph],
    *,
    precision: str,
    lora: dict[str, Any] | None = None,
    base_graphs: dict[str, Any] | None = None,
    known_files: dict[str, dict[str, Any]] | None = None,
    source: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write ``out/manifest.json`` and return it. Every other file in ``out`` must be final.

    ``lora``: the merged LoRA's record (:meth:`.lora.Lora.record`); it also changes
    ``model_version``. ``base_graphs``: entries of graphs not exported here (a LoRA variant's
    files linked from its base). ``known_files``: file entries already hashed (those linked
    files). ``source``: :func:`source_files`, when the caller has it already.
    """
    source = source if source is not None else _source_files(ckpt)
    digest = hashlib.sha256(
        json.dumps({k: v["sha256"] for k, v in source.items()}, sort_keys=True).encode()
    )
    if lora is not None:  # the track ids hash model_version: a variant must not share the base's
        digest.update(json.dumps(lora, sort_keys=True).encode())
    source_digest = digest.hexdigest()
    defaults = GenerationParams(prompt="-").to_dict()
    defaults.pop("prompt")
    defaults.pop("seed")
    known = known_files or {}
    files = {
        path.name: known.get(path.name)
        or {"sha256": sha256_file(path), "size": path.stat().st_size}
        for path in sorted(out.iterdir())
        if path.is_file() and path.name != MANIFEST_NAME
    }
    entries = {**(base_graphs or {}), **{g.name: graph_entry(g) for g in graphs}}
    manifest: dict[str, Any] = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "model": "ace-step-v1",
        "model_version": f"ace-step-v1-{precision}-{source_digest[:12]}",
        "precision": precision,
        "graphs": {name: entries[name] for name in GRAPH_NAMES if name in entries},
        "tokenizer": {"file": "tokenizer.json", "pad_id": 0, "eos_id": 1},
        "mel_frontend": {"file": "mel_frontend.npz", "n_fft": 2048, "hop_length": 512},
        "constants": build_constants(ckpt),
        "defaults": defaults,
        "source": {"repo_id": layout.REPO_ID, "files": source},
        "exporter": {
            "lofi_export": _version("lofi-nvim"),
            "torch": _version("torch"),
            "transformers": _version("transformers"),
            "diffusers": _version("diffusers"),
            "onnx": _version("onnx"),
            "onnxscript": _version("onnxscript"),
            "opset": OPSET,
        },
        "files": files,
    }
    if lora is not None:
        manifest["lora"] = lora
    write_json_atomic(out / MANIFEST_NAME, manifest)
    return manifest
