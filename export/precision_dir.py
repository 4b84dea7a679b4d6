"""``lofi-export to-fp16 FP32_DIR OUT``: the fp16 set of an exported fp32 model directory.

No checkpoint needed: each graph of the fp32 directory is converted (:func:`.precision.
convert_to_fp16`; the graphs of :data:`.precision.FP32_GRAPHS` are copied), the other files are
copied, and the manifest is rewritten with ``precision: fp16``, an fp16 ``model_version`` (so
tracks of both sets never share a cache entry) and the new files' sizes and sha256. Both
backends' directories work. The result appears at ``OUT`` only when complete.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from lofi_daemon.fsutil import remove_tree, replace_dir, staging_dir, write_json_atomic
from lofi_daemon.model import turbo_layout
from lofi_daemon.model.manifest import MANIFEST_NAME, sha256_file

from .errors import ExportError
from .precision import FP32_GRAPHS, convert_to_fp16

log = logging.getLogger(__name__)

V1_PREFIX = "ace-step-v1-"


def fp16_model_version(raw: dict[str, Any]) -> str:
    """The fp16 set's ``model_version`` for the fp32 manifest ``raw`` (as the exporters name it)."""
    version = str(raw.get("model_version", ""))
    if raw.get("backend") == turbo_layout.BACKEND:
        stem = f"{turbo_layout.BACKEND}-{turbo_layout.VARIANT}-"
        if not version.startswith(stem):
            raise ExportError(f"unexpected model_version {version!r}")
        return f"{stem}fp16-{version.removeprefix(stem)}"
    if not version.startswith(V1_PREFIX + "fp32-"):
        raise ExportError(f"unexpected model_version {version!r}")
    return version.replace(V1_PREFIX + "fp32-", V1_PREFIX + "fp16-", 1)


def _read_manifest(source: Path) -> dict[str, Any]:
    path = source / MANIFEST_NAME
    try:
        raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"{source}: not a model directory ({exc})") from exc
    if raw.get("precision") != "fp32":
        raise ExportError(f"{source}: precision is {raw.get('precision')!r}, not fp32")
    if isinstance(raw.get("lora"), dict) and "base" in raw["lora"]:
        raise ExportError(
            f"{source} is a LoRA variant sharing its base's files; convert the base directory "
            "and export the variant again with --base"
        )
    return raw


def convert_model_dir(source: Path, target: Path, *, force: bool = False) -> Path:
    """Write the fp16 set of the fp32 model directory ``source`` to ``target`` (atomically)."""
    raw = _read_manifest(source)
    if target.exists() and any(target.iterdir()) and not force:
        raise ExportError(f"{target}: folder exists and is not empty (use --force to replace it)")
    graph_files: dict[str, str] = {}
    for name, entry in raw["graphs"].items():
        graph_files[entry["file"]] = name
        if entry.get("external_data"):
            graph_files[entry["external_data"]] = name
    staging = staging_dir(target)
    try:
        for name, entry in raw["graphs"].items():
            if name in FP32_GRAPHS:
                continue
            result = convert_to_fp16(source / entry["file"], staging / entry["file"])
            entry["external_data"] = result.external_data.name if result.external_data else None
        for file in raw["files"]:
            owner = graph_files.get(file)
            if owner is None or owner in FP32_GRAPHS:
                shutil.copyfile(source / file, staging / file)
        raw["precision"] = "fp16"
        raw["model_version"] = fp16_model_version(raw)
        raw["files"] = {
            path.name: {"sha256": sha256_file(path), "size": path.stat().st_size}
            for path in sorted(staging.iterdir())
            if path.is_file() and path.name != MANIFEST_NAME
        }
        write_json_atomic(staging / MANIFEST_NAME, raw)
        replace_dir(staging, target)
    except BaseException:
        remove_tree(staging)
        raise
    log.info("fp16 model directory ready: %s", target)
    return target
