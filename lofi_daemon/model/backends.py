"""The backends lofi.nvim can run, and where each one's models live.

``ace-step`` is ACE-Step v1 (3.5 B, 27 guided steps); ``ace-step-1.5`` is ACE-Step 1.5 turbo
(2 B, 8 CFG-free steps). Each is installed into its own model directory, side by side:
``<models root>/<backend name>`` where the root is the parent of the v1 directory
(``$LOFI_MODELS_DIR`` or ``<user cache>/lofi.nvim/ace-step``). ``$LOFI_MODELS_DIR_ACE_STEP_1_5``
overrides the 1.5 directory on its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from lofi_daemon.model import layout, turbo_layout
from lofi_daemon.paths import default_models_dir


@dataclass(frozen=True)
class BackendInfo:
    name: str
    title: str
    repo_id: str
    min_duration_sec: float
    max_duration_sec: float
    sample_rate: int
    env_var: str  # overrides this backend's model directory


V1: Final = BackendInfo(
    "ace-step", "ACE-Step v1 3.5B", layout.REPO_ID, 5.0, 240.0, 48000, "LOFI_MODELS_DIR"
)
TURBO: Final = BackendInfo(
    turbo_layout.BACKEND,
    "ACE-Step 1.5 turbo",
    turbo_layout.REPO_ID,
    turbo_layout.MIN_DURATION_SEC,
    turbo_layout.MAX_DURATION_SEC,
    turbo_layout.SAMPLE_RATE,
    "LOFI_MODELS_DIR_ACE_STEP_1_5",
)
BACKENDS: Final = {b.name: b for b in (V1, TURBO)}
NAMES: Final = tuple(BACKENDS)
DEFAULT_BACKEND: Final = V1.name


def backend_models_dir(name: str, v1_models_dir: Path | None = None) -> Path:
    """The model directory of backend ``name``, given the v1 one (default: its default)."""
    info = BACKENDS[name]
    v1_dir = Path(v1_models_dir) if v1_models_dir is not None else default_models_dir()
    if info is V1:
        return v1_dir
    override = os.environ.get(info.env_var)
    if override:
        return Path(override).expanduser()
    return v1_dir.parent / info.name
