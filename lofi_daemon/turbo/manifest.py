"""The 1.5 turbo model directory's ``manifest.json``: graphs, arrays, tokenizer and constants.

The exporter (``lofi-export onnx`` on a 1.5 checkpoint) writes it with ``"backend":
"ace-step-1.5"``; names come from :mod:`lofi_daemon.model.turbo_layout`. Loading checks what a
generation needs before any model runs: the backend, the schema version, the four graphs, the
three arrays and the tokenizer listed, every listed file present with its recorded size, and the
typed :class:`TurboConstants`. A v1 (``ace-step``) directory is refused with a message that says so.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model import turbo_layout
from lofi_daemon.model.manifest import MANIFEST_NAME, GraphInfo, check_files_present

SUPPORTED_SCHEMA = 1
SETUP_REMEDY = "Run :Lofi setup ace-step-1.5 (or lofi-daemon setup ace-step-1.5)"
REPAIR_REMEDY = "Run :Lofi setup ace-step-1.5 to repair the installation."


@dataclass(frozen=True)
class TurboConstants:
    """The fixed numbers of one exported 1.5 turbo model (manifest ``constants``)."""

    sample_rate: int
    samples_per_latent_frame: int
    latent_channels: int
    patch_size: int
    hidden_size: int
    text_hidden_size: int
    vocab_size: int
    text_max_tokens: int
    lyric_max_tokens: int
    timbre_frames: int
    silence_frames: int
    min_duration_sec: float
    max_duration_sec: float

    @classmethod
    def from_json(cls, data: Any) -> TurboConstants:
        """Parse ``constants``; TypeError/ValueError name the bad field.

        Unknown fields are ignored (a newer exporter may add some); counts must be positive
        whole numbers, durations finite and positive.
        """
        if not isinstance(data, Mapping):
            raise TypeError("constants: not an object")
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            where = f"constants.{field.name}"
            if field.name not in data:
                raise ValueError(f"{where} is missing")
            values[field.name] = _positive(where, data[field.name], hints[field.name] is int)
        constants = cls(**values)
        if constants.min_duration_sec > constants.max_duration_sec:
            raise ValueError("constants.min_duration_sec is above constants.max_duration_sec")
        return constants

    def latent_frames(self, duration_sec: float) -> int:
        """Latent frames for ``duration_sec``, as upstream: ``int(round(d, 1)·48000) // 1920``,
        at least 128 (``create_target_wavs``, ``_prepare_target_latents_and_wavs``)."""
        samples = int(round(duration_sec, 1) * self.sample_rate)
        return max(turbo_layout.MIN_LATENT_FRAMES, samples // self.samples_per_latent_frame)


def _positive(where: str, value: Any, whole: bool) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{where} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{where} must be positive and finite, got {value!r}")
    if whole:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{where} must be a whole number, got {value!r}")
        return int(value)
    return float(value)


@dataclass(frozen=True)
class TurboManifest:
    root: Path
    model_version: str
    precision: str
    graphs: dict[str, GraphInfo]
    arrays: dict[str, str]  # array name -> file
    tokenizer_file: str
    constants: TurboConstants
    defaults: dict[str, Any]
    files: dict[str, dict[str, Any]]
    raw: dict[str, Any]

    def path(self, name: str) -> Path:
        return self.root / name

    def graph_path(self, graph: str) -> Path:
        return self.root / self.graphs[graph].file

    def array_path(self, array: str) -> Path:
        return self.root / self.arrays[array]


def _invalid(root: Path, detail: str) -> LofiError:
    return LofiError(
        errors.MODEL_LOAD_FAILED,
        f"{root / MANIFEST_NAME}: {detail}",
        remedy=f"{SETUP_REMEDY} to reinstall the models.",
    )


def _read(root: Path) -> dict[str, Any]:
    path = root / MANIFEST_NAME
    if not root.is_dir() or not path.is_file():
        raise LofiError(
            errors.MODEL_NOT_FOUND,
            f"no ACE-Step 1.5 models installed at {root} (missing {MANIFEST_NAME})",
            remedy=f"{SETUP_REMEDY}, or pass --models DIR.",
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError as exc:
        raise _invalid(root, "unreadable (JSON nested too deeply)") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _invalid(root, f"unreadable ({exc})") from exc
    if not isinstance(raw, dict):
        raise _invalid(root, "not a JSON object")
    backend = raw.get("backend")
    if backend != turbo_layout.BACKEND:
        held = "ace-step (v1)" if backend in (None, "ace-step") else repr(backend)
        raise LofiError(
            errors.MODEL_LOAD_FAILED,
            f"{root} holds {held} models, not {turbo_layout.BACKEND}",
            remedy=f"{SETUP_REMEDY} to install ACE-Step 1.5 into its own directory, or point "
            "this backend at an ACE-Step 1.5 model directory.",
        )
    if raw.get("schema_version") != SUPPORTED_SCHEMA:
        raise _invalid(root, f"unsupported manifest (schema_version {raw.get('schema_version')!r})")
    return raw


def _entries(root: Path, raw: dict[str, Any], key: str, names: tuple[str, ...]) -> dict[str, Any]:
    section = raw.get(key)
    if not isinstance(section, dict):
        raise _invalid(root, f"{key} is missing or not an object")
    missing = [n for n in names if not isinstance(section.get(n), dict)]
    if missing:
        raise _invalid(root, f"{key} missing: {', '.join(missing)}")
    for name in names:
        if not isinstance(section[name].get("file"), str) or not section[name]["file"]:
            raise _invalid(root, f"{key}.{name}.file is missing or not a string")
    return section


def load_turbo_manifest(root: Path) -> TurboManifest:
    """Read and check ``root/manifest.json`` of a 1.5 turbo model directory.

    Raises:
        LofiError: MODEL_NOT_FOUND (nothing installed, a listed file missing) or
            MODEL_LOAD_FAILED (unreadable, another backend's directory, a field missing or
            malformed, a file with the wrong size).
    """
    root = Path(root)
    raw = _read(root)
    try:
        constants = TurboConstants.from_json(raw.get("constants"))
    except (TypeError, ValueError) as exc:
        raise _invalid(root, str(exc)) from exc
    graphs_raw = _entries(root, raw, "graphs", turbo_layout.GRAPHS)
    arrays_raw = _entries(root, raw, "arrays", turbo_layout.ARRAYS)
    tokenizer = raw.get("tokenizer")
    if not isinstance(tokenizer, dict) or not isinstance(tokenizer.get("file"), str):
        raise _invalid(root, "tokenizer.file is missing or not a string")
    files = raw.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, dict) for v in files.values()):
        raise _invalid(root, "files is missing or not an object of objects")
    model_version = raw.get("model_version")
    if not isinstance(model_version, str) or not model_version:
        raise _invalid(root, "model_version is missing or not a string")
    defaults = raw.get("defaults", {})
    try:
        graphs = {
            name: GraphInfo(
                name, g["file"], g.get("external_data"), list(g["inputs"]), list(g["outputs"])
            )
            for name, g in graphs_raw.items()
        }
        manifest = TurboManifest(
            root=root,
            model_version=model_version,
            precision=str(raw.get("precision", "fp32")),
            graphs=graphs,
            arrays={name: str(a["file"]) for name, a in arrays_raw.items()},
            tokenizer_file=str(tokenizer["file"]),
            constants=constants,
            defaults=dict(defaults) if isinstance(defaults, dict) else {},
            files=dict(files),
            raw=raw,
        )
    except (KeyError, TypeError) as exc:
        raise _invalid(root, f"missing or malformed graph field {exc}") from exc
    needed = [
        *(g.file for g in graphs.values()),
        *(g.external_data for g in graphs.values() if g.external_data),
        *manifest.arrays.values(),
        manifest.tokenizer_file,
    ]
    unlisted = [name for name in needed if name not in manifest.files]
    if unlisted:
        raise _invalid(root, f"files does not list {', '.join(sorted(unlisted))}")
    check_files_present(root, manifest.files, REPAIR_REMEDY)
    return manifest
