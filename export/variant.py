"""A LoRA variant of an exported model directory: only the graphs the LoRA changes are exported.

``lofi-export onnx CK OUT --lora DIR --base BASE`` writes a complete model directory at ``OUT``:
the condition encoder and/or denoiser with the LoRA merged (whichever it touches), every other
file hard-linked from ``BASE`` (copied where the file system refuses hard links), and a manifest
that lists them all, records the LoRA and the base, and has its own ``model_version``. ``BASE``
must have been exported from the very files of ``CK`` (the sha256s in its ``source.files``), so
the linked graphs and the new ones come from one checkpoint.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lofi_daemon.errors import LofiError
from lofi_daemon.fsutil import remove_tree, replace_dir, staging_dir
from lofi_daemon.model.manifest import Manifest, load_manifest

from .errors import ExportError
from .lora import Lora
from .manifest_writer import source_files, write_manifest
from .onnx_writer import INLINE_LIMIT_BYTES, ExportedGraph
from .opened_checkpoint import OpenCheckpoint
from .precision import fp16_graph_set
from .progress import ProgressFn, graph_event, graph_start_event, start_event

log = logging.getLogger(__name__)

#: :func:`.export_models.export_all_graphs`' signature.
ExportGraphs = Callable[..., list[ExportedGraph]]


def _base_manifest(base: Path) -> Manifest:
    try:
        manifest = load_manifest(base)
    except LofiError as exc:
        raise ExportError(f"--base {base}: {exc.message}") from exc
    if "lora" in manifest.raw:
        raise ExportError(f"--base {base}: is itself a LoRA variant; give the base model directory")
    return manifest


def share_files(base: Manifest, out: Path, names: list[str]) -> str:
    """Hard-link ``names`` from ``base`` into ``out``; copy them all if a link fails.

    Returns ``"hardlink"`` or ``"copy"``.
    """
    try:
        for name in names:
            os.link(base.root / name, out / name)
        return "hardlink"
    except OSError as exc:
        log.warning("cannot hard-link from %s (%s); copying the files instead", base.root, exc)
    for name in names:
        target = out / name
        target.unlink(missing_ok=True)
        shutil.copyfile(base.root / name, target)
    return "copy"


def export_variant(
    ckpt: OpenCheckpoint,
    models_dir: Path,
    base_dir: Path,
    lora: Lora,
    *,
    export_graphs: ExportGraphs,
    precision: str | None = None,
    inline_limit: int = INLINE_LIMIT_BYTES,
    progress: ProgressFn | None = None,
) -> Path:
    """Write the variant of ``base_dir`` with ``lora`` merged at ``models_dir`` (atomically).

    ``export_graphs`` is :func:`.export_models.export_all_graphs` (passed in, so that this
    module does not import the one that dispatches to it).

    Raises:
        ExportError: ``base_dir`` is no (base) model directory, or was exported from other files
            than ``ckpt``; or an export or write fails.
    """
    base = _base_manifest(base_dir)
    if precision is not None and precision != base.precision:
        raise ExportError(
            f"--precision {precision} differs from the base directory's ({base.precision}); "
            "a variant shares the base's graphs, so it has the base's precision"
        )
    source = source_files(ckpt)
    recorded = base.raw.get("source", {}).get("files", {})
    if {k: v.get("sha256") for k, v in recorded.items()} != {
        k: v["sha256"] for k, v in source.items()
    }:
        raise ExportError(
            f"--base {base_dir} was exported from other checkpoint files than {ckpt.root}; "
            "give the checkpoint the base model was installed from"
        )
    changed = lora.graphs()
    own = {base.graphs[g].file for g in changed} | {
        base.graphs[g].external_data for g in changed if base.graphs[g].external_data
    }
    shared = sorted(name for name in base.files if name not in own)
    notify = progress or (lambda _event: None)
    total, written = len(changed), 0

    def on_graph(graph: ExportedGraph) -> None:
        nonlocal written
        written += 1
        notify(graph_event(graph.name, graph.path.name, written, total))

    staging = staging_dir(models_dir)
    try:
        notify(start_event(total))
        how = share_files(base, staging, shared)
        scratch = staging / ".fp32" if base.precision == "fp16" else staging
        scratch.mkdir(exist_ok=True)
        graphs = export_graphs(
            ckpt,
            scratch,
            inline_limit=inline_limit,
            only=changed,
            on_graph=on_graph,
            on_graph_start=lambda name: notify(
                graph_start_event(name, f"{name}.onnx", written + 1, total)
            ),
            lora=lora,
        )
        if scratch != staging:
            graphs = fp16_graph_set(graphs, staging)
            remove_tree(scratch)
        record: dict[str, Any] = {
            **lora.record(),
            "base": {"model_version": base.model_version, "files": how},
        }
        write_manifest(
            staging,
            ckpt,
            graphs,
            precision=base.precision,
            lora=record,
            base_graphs={n: base.raw["graphs"][n] for n in base.graphs if n not in changed},
            known_files={name: base.files[name] for name in shared},
            source=source,
        )
        replace_dir(staging, models_dir)
    except BaseException:
        remove_tree(staging)
        raise
    log.info("LoRA variant ready: %s (%s from %s)", models_dir, how, base_dir)
    return models_dir
