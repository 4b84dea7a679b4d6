"""Verification of a model directory: every file's size, then every sha256, against the manifest.

An installed directory is verified before it is left alone (:func:`installed_manifest`) and
by ``lofi-daemon setup BACKEND --verify``; a new export is verified in the staging folder before
it replaces anything (:func:`verify_staged`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lofi_daemon.errors import LofiError
from lofi_daemon.install.backend_spec import V1_SPEC
from lofi_daemon.install.download import check_download
from lofi_daemon.install.installed import (
    ModelManifest,
    load_model_manifest,
    verify_manifest_hashes,
)
from lofi_daemon.install.options import InstallOptions
from lofi_daemon.install.plan import InstallPlan
from lofi_daemon.install.progress import ProgressFn, Reporter
from lofi_daemon.model.backends import DEFAULT_BACKEND
from lofi_daemon.model.manifest import sha256_file

log = logging.getLogger(__name__)


def verify_installation(
    models_dir: Path, progress: ProgressFn | None = None, backend: str = DEFAULT_BACKEND
) -> ModelManifest:
    """Check an installed model directory of ``backend`` file by file (sizes, then every sha256).

    Raises:
        LofiError: MODEL_NOT_FOUND (nothing installed) or MODEL_LOAD_FAILED (a corrupt file, or
            another backend's models).
    """
    manifest = load_model_manifest(models_dir, backend)
    verify_files(manifest, Reporter(progress), backend)
    return manifest


def verify_files(manifest: ModelManifest, report: Reporter, backend: str = DEFAULT_BACKEND) -> None:
    """Check the sha256 of every file of ``manifest``, reporting phase ``verify``."""
    total = len(manifest.files)
    report("verify", 0, total, f"checking the sha256 of {total} files in {manifest.root}")
    verify_manifest_hashes(
        manifest,
        backend,
        progress=lambda done, n, name: report("verify", done, n, f"sha256 ok: {name}"),
    )


def installed_manifest(
    models_dir: Path, report: Reporter, backend: str = DEFAULT_BACKEND
) -> ModelManifest | None:
    """The manifest of a complete, verified installation at ``models_dir``, else None."""
    try:
        manifest = load_model_manifest(models_dir, backend)
    except LofiError:
        return None
    try:
        verify_files(manifest, report, backend)
        return manifest
    except LofiError as exc:
        log.warning("the installed models are damaged (%s); reinstalling", exc.message)
        return None


def checkpoint_files(checkpoint: Path, allow_patterns: tuple[str, ...] | None = None) -> set[str]:
    """The files of ``checkpoint`` an export reads (the keys of the manifest's ``source.files``)."""
    names = V1_SPEC.allow_patterns if allow_patterns is None else allow_patterns
    return {name for name in names if (checkpoint / name).is_file()}


def same_checkpoint(
    checkpoint: Path, recorded: Mapping[str, Any], allow_patterns: tuple[str, ...] | None = None
) -> bool:
    """Whether ``checkpoint`` holds exactly the files ``recorded`` (sizes first, then sha256)."""
    if not isinstance(recorded, Mapping) or set(recorded) != checkpoint_files(
        checkpoint, allow_patterns
    ):
        return False
    try:
        if any((checkpoint / n).stat().st_size != info.get("size") for n, info in recorded.items()):
            return False
        return all(
            sha256_file(checkpoint / n) == info.get("sha256") for n, info in recorded.items()
        )
    except (OSError, AttributeError):
        return False


def verify_staged(
    staged: Path, plan: InstallPlan, options: InstallOptions, report: Reporter
) -> ModelManifest:
    """Verify a fresh export (and, for a hub install, the download it was made from).

    Raises:
        LofiError: MODEL_DOWNLOAD_FAILED (a downloaded file differs from the hub) or
            MODEL_LOAD_FAILED (an exported file differs from its manifest).
    """
    manifest = load_model_manifest(staged, options.backend)
    if plan.source == "hub":
        check_download(manifest, plan, options)
    verify_files(manifest, report, options.backend)
    return manifest
