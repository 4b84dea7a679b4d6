"""Install a backend: download the checkpoint, export it to ONNX, verify, install.

The backend (``ace-step`` or ``ace-step-1.5``, :mod:`.backend_spec`) decides the hub repository,
the files fetched and the manifest checked; each installs into its own model directory, so
both can be installed side by side.

:func:`run_install` is the whole job, in this order: lock the model directory
(:mod:`.lock`), leave a verified installation alone (:mod:`.verify`), check the export extra
(:mod:`.extra`), measure the plan and the disk (:mod:`.plan`), ask for consent (:mod:`.consent`),
download (:mod:`.download`, through the hub child :mod:`.hub`), export (:mod:`.export_step`),
verify the staged export and move it into place (:mod:`lofi_daemon.fsutil`). The folders it uses
are described in :mod:`.options`.

It is safe to call from a worker thread: progress goes to a callback, a
:class:`threading.Event` cancels it, and consent for the download comes from a callback.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lofi_daemon import errors, fsutil
from lofi_daemon.errors import LofiError
from lofi_daemon.install.consent import ConfirmFn, ask_consent
from lofi_daemon.install.download import download
from lofi_daemon.install.export_step import export_checkpoint
from lofi_daemon.install.extra import INSTALL_HINT, missing_packages
from lofi_daemon.install.installed import ModelManifest, load_model_manifest, manifest_backend
from lofi_daemon.install.lock import install_lock
from lofi_daemon.install.options import REPO_ID, InstallOptions
from lofi_daemon.install.plan import InstallPlan, check_disk_space, log_plan, plan_install
from lofi_daemon.install.progress import ProgressFn, Reporter, check_cancel
from lofi_daemon.install.verify import installed_manifest, same_checkpoint, verify_staged
from lofi_daemon.model.backends import BACKENDS
from lofi_daemon.model.manifest import MANIFEST_NAME

__all__ = ["REPO_ID", "InstallResult", "run_install"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InstallResult:
    """What :func:`run_install` did."""

    models_dir: Path
    model_version: str
    already_installed: bool
    downloaded_bytes: int  # fetched by this run
    download_dir: Path | None  # the kept checkpoint download, if any
    elapsed_sec: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "models_dir": str(self.models_dir),
            "model_version": self.model_version,
            "already_installed": self.already_installed,
            "downloaded_bytes": self.downloaded_bytes,
            "download_dir": str(self.download_dir) if self.download_dir else None,
            "elapsed_sec": round(self.elapsed_sec, 3),
        }


def run_install(
    options: InstallOptions,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    confirm: ConfirmFn | None = None,
) -> InstallResult:
    """Download (unless a local checkpoint is given), export, verify and install the backend.

    Args:
        options: what to install and where.
        progress: ``progress(phase, done, total, percent, message)`` with phase ``download``
            (bytes), ``export`` (graphs) or ``verify`` (files); percent never decreases in a phase.
        cancel: set it to stop; the install stops within a fraction of a second, kills its child
            process and raises :class:`CancelledError`. A rerun resumes the download.
        confirm: asked with the plan (the bytes still to download) unless
            ``options.assume_yes``; without it (and without ``assume_yes``) a download is refused.

    Returns:
        The installed model directory. It is only created once every file has been verified.
        Without ``options.force`` a verified installation is left alone (``already_installed``):
        any one for a hub install, one exported from the same files for a local checkpoint.

    Raises:
        LofiError: SETUP_FAILED, MODEL_DOWNLOAD_FAILED, MODEL_LOAD_FAILED (a checksum mismatch)
            or GENERATION_CANCELLED; the model directory is then left as it was.
    """
    started = time.monotonic()
    cancel = cancel or threading.Event()
    report = Reporter(progress)
    models_dir = options.models_dir
    models_dir.parent.mkdir(parents=True, exist_ok=True)
    with install_lock(options.lock_path, models_dir) as lock_fd:
        if not options.force:
            existing = _current_installation(options, report)
            if existing is not None:
                elapsed = time.monotonic() - started
                return InstallResult(models_dir, existing.model_version, True, 0, None, elapsed)
        _preflight(options)
        plan = plan_install(options, cancel)
        log_plan(plan)
        check_disk_space(plan, options)
        ask_consent(plan, options, confirm)
        check_cancel(cancel)
        fetched = download(plan, options, report, cancel, lock_fd) if plan.source == "hub" else 0
        check_cancel(cancel)
        manifest = _export_verify_install(plan, options, report, cancel, lock_fd)
        kept = None
        if plan.source == "hub":
            kept = options.download_dir if options.keep_download else None
            if kept is None:
                fsutil.remove_tree(options.download_dir)
    log.info("%s installed at %s (%s)", options.spec.title, models_dir, manifest.model_version)
    elapsed = time.monotonic() - started
    return InstallResult(models_dir, manifest.model_version, False, fetched, kept, elapsed)


def _current_installation(options: InstallOptions, report: Reporter) -> ModelManifest | None:
    """The verified installation to leave alone, or None when the setup has work to do.

    From the hub, any verified installation will do. From a local checkpoint, only one exported
    from the same files (the manifest records the sha256 of every checkpoint file it read). An
    explicit precision (not ``auto``) must also be the installed one.
    """
    if options.checkpoint is not None:
        try:
            raw = load_model_manifest(options.models_dir, options.backend).raw
        except LofiError:
            return None
        source = raw.get("source")
        recorded = source.get("files") if isinstance(source, dict) else None
        if recorded is None:  # the export did not record its checkpoint: export again
            return None
        if not same_checkpoint(options.checkpoint, recorded, options.spec.allow_patterns):
            return None
    existing = installed_manifest(options.models_dir, report, options.backend)
    if existing is not None and options.precision not in ("auto", existing.precision):
        log.info(
            "the installed models are %s, %s was asked for: exporting again",
            existing.precision,
            options.precision,
        )
        return None
    if existing is not None:
        where = f" from {options.checkpoint}" if options.checkpoint is not None else ""
        log.info(
            "%s is already installed%s and verified at %s",
            options.spec.title,
            where,
            options.models_dir,
        )
    return existing


def _export_verify_install(
    plan: InstallPlan,
    options: InstallOptions,
    report: Reporter,
    cancel: threading.Event,
    lock_fd: int,
) -> ModelManifest:
    """Export into the staging folder, verify there, then move it into place."""
    staging = options.staging_dir
    fsutil.remove_tree(staging)  # what an interrupted run left: the export restarts
    try:
        out = staging / options.models_dir.name
        staged = export_checkpoint(plan.checkpoint_dir, out, options, report, cancel, lock_fd)
        check_cancel(cancel)
        verify_staged(staged, plan, options, report)
        check_cancel(cancel)
        fsutil.replace_dir(staged, options.models_dir)
    finally:
        fsutil.remove_tree(staging)
    return load_model_manifest(options.models_dir, options.backend)


def _preflight(options: InstallOptions) -> None:
    """Refuse early: a folder that is not ours (or another backend's), or the export extra
    missing."""
    _check_replaceable(options.models_dir, options.backend)
    missing = missing_packages(download=options.checkpoint is None)
    if missing:
        raise LofiError(
            errors.SETUP_FAILED,
            "installing the models needs the export extra (missing: "
            f"{', '.join(missing)}); install it with: {INSTALL_HINT}",
            remedy=f"Run: {INSTALL_HINT}",
        )


def _check_replaceable(models_dir: Path, backend: str) -> None:
    """Refuse to replace a folder that is not a (possibly broken) lofi.nvim model directory of
    ``backend``: another backend's models stay where they are."""
    if not models_dir.exists():
        return
    env_var = BACKENDS[backend].env_var
    if models_dir.is_dir() and (models_dir / MANIFEST_NAME).exists():
        other = _installed_backend(models_dir)
        if other is None or other == backend:
            return
        raise LofiError(
            errors.SETUP_FAILED,
            f"{models_dir} holds the {other} models; setup of {backend} will not replace them",
            remedy=f"Install {backend} into its own folder: leave out --models (or ${env_var}), "
            "or choose a new or empty folder.",
        )
    if models_dir.is_dir() and not any(models_dir.iterdir()):
        return
    raise LofiError(
        errors.SETUP_FAILED,
        f"{models_dir} exists and is not a lofi.nvim model directory; setup will not replace it",
        remedy=f"Choose a new or empty folder with --models DIR (or ${env_var}).",
    )


def _installed_backend(models_dir: Path) -> str | None:
    """The backend named by the manifest in ``models_dir``; None when it cannot be read (a
    broken installation, which setup may repair)."""
    try:
        raw = json.loads((models_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    return manifest_backend(raw) if isinstance(raw, dict) else None
