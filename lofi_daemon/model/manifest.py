"""The model directory's ``manifest.json``: what the exporter wrote and what the runtime needs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model import turbo_layout
from lofi_daemon.model.constants import ModelConstants
from lofi_daemon.model.schema import first_error

MANIFEST_NAME = "manifest.json"
SUPPORTED_SCHEMA = 1
REQUIRED_GRAPHS = ("text_encoder", "condition_encoder", "denoiser", "dcae_decoder", "vocoder")
HASH_CHUNK = 16 << 20
V1_REPAIR_REMEDY = "Run :Lofi setup ace-step to repair the installation."
OTHER_BACKEND = turbo_layout.BACKEND  # its manifests say so; v1 ones have no "backend" key


@dataclass(frozen=True)
class GraphInfo:
    name: str
    file: str
    external_data: str | None
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]


@dataclass(frozen=True)
class Manifest:
    root: Path
    model_version: str
    precision: str
    graphs: dict[str, GraphInfo]
    constants: ModelConstants
    defaults: dict[str, Any]
    files: dict[str, dict[str, Any]]
    tokenizer_file: str
    raw: dict[str, Any]

    def path(self, name: str) -> Path:
        return self.root / name

    def graph_path(self, graph: str) -> Path:
        return self.root / self.graphs[graph].file


def _invalid(root: Path, detail: str) -> LofiError:
    return LofiError(
        errors.MODEL_LOAD_FAILED,
        f"{root / MANIFEST_NAME}: {detail}",
        remedy="Run :Lofi setup ace-step (or lofi-daemon setup ace-step) to reinstall the models.",
    )


def _constants(root: Path, data: Any) -> ModelConstants:
    try:
        return ModelConstants.from_json(data)
    except (TypeError, ValueError) as exc:
        raise _invalid(root, str(exc)) from exc


def load_manifest(root: Path) -> Manifest:
    """Read and check ``root/manifest.json`` (structure, graphs present, files with the right size).

    The structure is checked against ``manifest.schema.json`` (see :mod:`.schema`), so a manifest
    with a wrong-typed field fails here with MODEL_LOAD_FAILED, not later inside a generation.
    """
    path = root / MANIFEST_NAME
    if not root.is_dir() or not path.is_file():
        raise LofiError(
            errors.MODEL_NOT_FOUND,
            f"no models installed at {root} (missing {MANIFEST_NAME})",
            remedy="Run :Lofi setup ace-step (or lofi-daemon setup ace-step), or pass --models DIR.",
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError as exc:
        raise _invalid(root, "unreadable (JSON nested too deeply)") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _invalid(root, f"unreadable ({exc})") from exc
    if isinstance(raw, dict) and raw.get("backend") == OTHER_BACKEND:
        # A 1.5 export has the same schema_version; say what it is instead of a schema error.
        raise LofiError(
            errors.MODEL_LOAD_FAILED,
            f"{root} holds {OTHER_BACKEND} models, not ace-step (v1)",
            remedy="Run :Lofi setup ace-step to install ACE-Step v1 into its own directory, or "
            f"use the backend {OTHER_BACKEND} for this one.",
        )
    if not isinstance(raw, dict) or raw.get("schema_version") != SUPPORTED_SCHEMA:
        raise _invalid(
            root,
            f"unsupported manifest (schema_version {raw.get('schema_version')!r})"
            if isinstance(raw, dict)
            else "not a JSON object",
        )
    # The typed constants first: their parser names the broken field most precisely.
    constants = _constants(root, raw["constants"]) if "constants" in raw else None
    problem = first_error(raw)
    if problem is not None:
        raise _invalid(root, f"does not match the manifest schema ({problem})")
    try:
        graphs = {
            name: GraphInfo(
                name, g["file"], g.get("external_data"), list(g["inputs"]), list(g["outputs"])
            )
            for name, g in raw["graphs"].items()
        }
        manifest = Manifest(
            root=root,
            model_version=str(raw["model_version"]),
            precision=str(raw["precision"]),
            graphs=graphs,
            constants=constants or _constants(root, raw["constants"]),
            defaults=dict(raw.get("defaults", {})),
            files=dict(raw["files"]),
            tokenizer_file=str(raw["tokenizer"]["file"]),
            raw=raw,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise _invalid(root, f"missing or malformed field {exc}") from exc
    missing = [g for g in REQUIRED_GRAPHS if g not in graphs]
    if missing:
        raise _invalid(root, f"graph(s) missing: {', '.join(missing)}")
    check_files_present(root, manifest.files)
    return manifest


def check_files_present(
    root: Path, files: Mapping[str, Any], remedy: str = V1_REPAIR_REMEDY
) -> None:
    """Every file in a manifest's ``files`` exists under ``root`` with its recorded size (cheap;
    see :func:`verify_hashes`). Both backends' loaders use it, each with its own ``remedy``."""
    for name, info in files.items():
        file = root / name
        if not file.is_file():
            raise LofiError(errors.MODEL_NOT_FOUND, f"model file missing: {file}", remedy=remedy)
        size = file.stat().st_size
        if "size" in info and size != int(info["size"]):
            raise LofiError(
                errors.MODEL_LOAD_FAILED,
                f"model file {file} has {size} bytes, the manifest says {info['size']}",
                remedy=remedy,
            )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_hashes(manifest: Manifest, progress: Any = None) -> None:
    """Check the sha256 of every file against the manifest; raise MODEL_LOAD_FAILED on a mismatch."""
    items = sorted(manifest.files.items())
    for index, (name, info) in enumerate(items):
        actual = sha256_file(manifest.root / name)
        if actual != info.get("sha256"):
            raise LofiError(
                errors.MODEL_LOAD_FAILED,
                f"checksum mismatch for {manifest.root / name}",
                remedy=V1_REPAIR_REMEDY,
            )
        if progress is not None:
            progress(index + 1, len(items), name)
