"""Where lofi.nvim keeps its files (platformdirs), each overridable by an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "lofi.nvim"
BACKEND = "ace-step"


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def default_models_dir() -> Path:
    """The installed ONNX models: ``$LOFI_MODELS_DIR`` or ``<user cache>/lofi.nvim/ace-step``."""
    return _env_path("LOFI_MODELS_DIR") or Path(platformdirs.user_cache_dir(APP)) / BACKEND


def default_cache_dir() -> Path:
    """Generated tracks: ``$LOFI_CACHE_DIR`` or ``<user cache>/lofi.nvim/tracks``."""
    return _env_path("LOFI_CACHE_DIR") or Path(platformdirs.user_cache_dir(APP)) / "tracks"


def default_log_dir() -> Path:
    return _env_path("LOFI_LOG_DIR") or Path(platformdirs.user_log_dir(APP))
