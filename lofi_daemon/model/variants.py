"""Named LoRA variants installed beside a base model: ``<models_dir>/variants/<NAME>/``.

Each variant folder is a complete model directory (a manifest with a ``lora`` entry, the merged
graphs, the base's other files hard-linked), so an engine opens it like any model directory.
``lofi-daemon setup ace-step --lora ...`` creates them (``lofi_daemon.install.variant``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model.manifest import MANIFEST_NAME

VARIANTS_FOLDER: Final = "variants"
#: The LoRA file upstream loads (``acestep/pipeline_ace_step.py: ACEStepPipeline.load_lora``).
LORA_FILE: Final = "pytorch_lora_weights.safetensors"
NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")


def check_variant_name(name: str) -> str:
    """``name`` if it can name a variant folder, else INVALID_PARAMETER."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or name in (".", ".."):
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"invalid variant name {name!r}: use 1-64 letters, digits, '.', '_' or '-' "
            "(not '.' or '..')",
            remedy="Pick another name with --lora-name NAME.",
        )
    return name


def variants_root(models_dir: Path) -> Path:
    return models_dir / VARIANTS_FOLDER


def variant_path(models_dir: Path, name: str) -> Path:
    """Where variant ``name`` lives (checked name; the folder need not exist)."""
    return variants_root(models_dir) / check_variant_name(name)


def variant_dir(models_dir: Path, name: str) -> Path:
    """The model directory of the installed variant ``name``.

    Raises:
        LofiError: INVALID_PARAMETER for a bad name, BACKEND_NOT_INSTALLED when it is not
            installed (the remedy names the setup command and the installed variants).
    """
    path = variant_path(models_dir, name)
    if not (path / MANIFEST_NAME).is_file():
        names = [v["name"] for v in list_variants(models_dir)]
        known = f" (installed: {', '.join(names)})" if names else " (none installed)"
        raise LofiError(
            errors.BACKEND_NOT_INSTALLED,
            f"no variant {name!r} in {variants_root(models_dir)}{known}",
            remedy=(
                f"Install it: lofi-daemon setup ace-step --lora DIR_OR_HUB_REPO --lora-name {name}"
            ),
        )
    return path


def _lora_record(path: Path) -> dict[str, Any] | None:
    try:
        raw = json.loads((path / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    lora = raw.get("lora") if isinstance(raw, dict) else None
    return lora if isinstance(lora, dict) else None


def list_variants(models_dir: Path) -> list[dict[str, Any]]:
    """The installed variants, by name: ``name``, ``lora`` (its source), ``weight``, ``path``.

    Folders without a readable manifest carrying a ``lora`` entry are skipped (an interrupted
    setup leaves only hidden folders, which are skipped too).
    """
    root = variants_root(models_dir)
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.iterdir()):
        if not path.is_dir() or path.name.startswith(".") or not NAME_PATTERN.fullmatch(path.name):
            continue
        lora = _lora_record(path)
        if lora is None:
            continue
        found.append(
            {
                "name": path.name,
                "lora": lora.get("source"),
                "weight": lora.get("weight"),
                "path": str(path),
            }
        )
    return found
