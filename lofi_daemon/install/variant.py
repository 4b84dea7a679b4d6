"""Install a LoRA as a named variant beside the installed base model (docs/lora.md).

``lofi-daemon setup ace-step --lora DIR_OR_HUB_REPO [--lora-weight W] [--lora-name NAME]``:

1. the base model must be installed at ``<models>``; its checkpoint must still be on disk (the
   kept download ``<models>.download/`` or ``--checkpoint DIR``); nothing is downloaded again;
2. a hub repository id fetches only its ``pytorch_lora_weights.safetensors`` (after the same
   consent as the base download) into ``<models>/variants/.<NAME>.download/``;
3. the exporter runs with ``--lora FILE --lora-weight W --base <models>``: it exports only the
   graphs the LoRA changes and hard-links the others from the base (``lofi_export.variant``);
4. the staged variant is verified (every sha256) and renamed to ``<models>/variants/<NAME>/``.

An engine opened on that folder generates with the LoRA merged (:mod:`lofi_daemon.model.variants`).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from lofi_daemon import errors, fsutil
from lofi_daemon.errors import LofiError
from lofi_daemon.install.child import run_hub
from lofi_daemon.install.consent import ConfirmFn, ask_consent
from lofi_daemon.install.export_step import export_checkpoint
from lofi_daemon.install.extra import INSTALL_HINT, missing_packages
from lofi_daemon.install.lock import install_lock
from lofi_daemon.install.options import REQUIRED_FILES, InstallOptions
from lofi_daemon.install.plan import InstallPlan, RemoteFile
from lofi_daemon.install.progress import ProgressFn, Reporter, check_cancel
from lofi_daemon.install.verify import verify_files
from lofi_daemon.model.manifest import Manifest, load_manifest, sha256_file
from lofi_daemon.model.variants import LORA_FILE, check_variant_name, variant_path

log = logging.getLogger(__name__)

HUB_REPO: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
NO_CHECKPOINT_REMEDY: Final = (
    "Pass the checkpoint the base was installed from with --checkpoint DIR, or reinstall the base "
    "keeping its download: lofi-daemon setup ace-step --force --keep-download"
)


@dataclass(frozen=True)
class VariantOptions:
    """A LoRA variant to install; ``base`` says where the base model and its checkpoint are."""

    lora: str
    weight: float = 1.0
    name: str | None = None
    base: InstallOptions = field(default_factory=InstallOptions)


@dataclass(frozen=True)
class VariantResult:
    name: str
    models_dir: Path
    model_version: str
    already_installed: bool
    downloaded_bytes: int
    elapsed_sec: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "models_dir": str(self.models_dir),
            "model_version": self.model_version,
            "already_installed": self.already_installed,
            "downloaded_bytes": self.downloaded_bytes,
            "elapsed_sec": round(self.elapsed_sec, 3),
        }


def default_name(lora: str) -> str:
    """The variant name a LoRA gets without ``--lora-name``: its folder or repository name."""
    path = Path(lora)
    stem = path.parent.name if path.name == LORA_FILE else path.name
    stem = path.stem if stem.endswith(".safetensors") else stem
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip(".-")[:64]
    return name or "lora"


def _base(options: InstallOptions) -> Manifest:
    try:
        manifest = load_manifest(options.models_dir)
    except LofiError as exc:
        raise LofiError(
            errors.SETUP_FAILED,
            f"a LoRA variant is built beside an installed base model: {exc.message}",
            remedy="Install the base first: lofi-daemon setup ace-step --keep-download",
        ) from exc
    if "lora" in manifest.raw:
        raise LofiError(
            errors.SETUP_FAILED,
            f"{options.models_dir} is a LoRA variant, not a base model directory",
            remedy="Pass the base model directory with --models DIR.",
        )
    return manifest


def base_checkpoint(options: InstallOptions) -> Path:
    """``--checkpoint`` or the kept download of the base; SETUP_FAILED when neither is there."""
    for candidate in (options.checkpoint, options.download_dir):
        if candidate is None:
            continue
        missing = [f for f in REQUIRED_FILES if not (candidate / f).is_file()]
        if not missing:
            return candidate
        if candidate == options.checkpoint:
            raise LofiError(
                errors.SETUP_FAILED,
                f"{candidate} is not a complete checkpoint (missing {missing[0]})",
                remedy=NO_CHECKPOINT_REMEDY,
            )
    raise LofiError(
        errors.SETUP_FAILED,
        f"the base model's checkpoint is not on disk (no {options.download_dir}); a LoRA variant "
        "is exported from it",
        remedy=NO_CHECKPOINT_REMEDY,
    )


def _installed(target: Path, sha256: str | None, weight: float) -> Manifest | None:
    """The variant at ``target`` if it holds this LoRA file and weight; None if nothing is there.

    Raises:
        LofiError: SETUP_FAILED when another LoRA or weight is installed under that name.
    """
    try:
        manifest = load_manifest(target)
    except LofiError:
        return None
    lora = manifest.raw.get("lora", {})
    if lora.get("sha256") == sha256 and lora.get("weight") == weight:
        return manifest
    raise LofiError(
        errors.SETUP_FAILED,
        f"a variant {target.name!r} is installed from another LoRA or weight "
        f"({lora.get('source')}, weight {lora.get('weight')})",
        remedy="Choose another name with --lora-name NAME, or replace it with --force.",
    )


def run_variant_install(
    options: VariantOptions,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    confirm: ConfirmFn | None = None,
) -> VariantResult:
    """Install ``options.lora`` as a variant of the base at ``options.base.models_dir``.

    Raises:
        LofiError: INVALID_PARAMETER (bad name, weight or LoRA location), SETUP_FAILED (no
            base, no checkpoint, a failed export, another variant under that name),
            MODEL_DOWNLOAD_FAILED or GENERATION_CANCELLED; nothing is left half-written.
    """
    started = time.monotonic()
    cancel = cancel or threading.Event()
    report = Reporter(progress)
    base_opts = options.base
    if not base_opts.spec.lora:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"--lora is an option of ace-step (v1) only; {base_opts.backend} has no LoRA variants",
            remedy=f"Leave out --lora, --lora-weight and --lora-name for {base_opts.backend}.",
        )
    name = check_variant_name(options.name or default_name(options.lora))
    if not -1e3 < options.weight < 1e3:  # also refuses NaN
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"--lora-weight must be a number between -1000 and 1000, not {options.weight}",
        )
    base = _base(base_opts)
    checkpoint = base_checkpoint(base_opts)
    missing = missing_packages(download=False)
    if missing:
        raise LofiError(
            errors.SETUP_FAILED,
            f"a LoRA variant needs the export extra (missing: {', '.join(missing)})",
            remedy=f"Run: {INSTALL_HINT}",
        )
    target = variant_path(base_opts.models_dir, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    lora_dl = target.with_name(f".{name}.download")
    fetched = 0
    with install_lock(target.with_name(f".{name}.lock"), target) as lock_fd:
        local = Path(options.lora).expanduser()
        if local.exists():
            lora_path, source = local.resolve(), str(local.resolve())
            file = lora_path if lora_path.is_file() else lora_path / LORA_FILE
            if not file.is_file():
                raise LofiError(
                    errors.INVALID_PARAMETER,
                    f"--lora {options.lora}: the folder holds no {LORA_FILE}",
                    remedy=f"Give the folder that holds {LORA_FILE}, or the file itself.",
                )
            sha: str | None = sha256_file(file)
            plan = None
        elif HUB_REPO.fullmatch(options.lora):
            plan = _hub_plan(options.lora, base_opts, lora_dl, target)
            lora_path, source, sha = lora_dl / LORA_FILE, options.lora, plan.files[0].sha256
        else:
            raise LofiError(
                errors.INVALID_PARAMETER,
                f"--lora {options.lora}: no such folder or file, and not a hub repository id",
                remedy="Give a folder holding pytorch_lora_weights.safetensors, or OWNER/NAME.",
            )
        existing = None if base_opts.force else _installed(target, sha, options.weight)
        if existing is not None:
            log.info("LoRA variant %s is already installed at %s", name, target)
            elapsed = time.monotonic() - started
            return VariantResult(name, target, existing.model_version, True, 0, elapsed)
        if plan is not None:
            fetched = _download(plan, base_opts, lora_dl, report, cancel, lock_fd, confirm)
        check_cancel(cancel)
        manifest = _export(
            checkpoint, target, base, options, lora_path, source, report, cancel, lock_fd
        )
        fsutil.remove_tree(lora_dl)
    log.info("LoRA variant %s installed at %s (%s)", name, target, manifest.model_version)
    return VariantResult(
        name, target, manifest.model_version, False, fetched, time.monotonic() - started
    )


def _hub_plan(repo: str, base: InstallOptions, folder: Path, target: Path) -> InstallPlan:
    answer = run_hub(replace(base, repo_id=repo), ["lora-probe", repo])
    info = answer.get("file") or {}
    remote = RemoteFile(
        LORA_FILE, int(info.get("size") or 0), info.get("sha256"), info.get("blob_id")
    )
    have = folder / LORA_FILE
    done = have.stat().st_size if have.is_file() else 0
    return InstallPlan(
        "hub", repo, answer.get("revision"), folder, target, (remote,), remote.size, done, 0
    )


def _download(
    plan: InstallPlan,
    base: InstallOptions,
    folder: Path,
    report: Reporter,
    cancel: threading.Event,
    lock_fd: int,
    confirm: ConfirmFn | None,
) -> int:
    """Fetch the LoRA file after consent; check its size and sha256."""
    hub = replace(base, repo_id=plan.repo_id)
    ask_consent(plan, hub, confirm)
    size = plan.files[0].size
    report("download", 0, size, f"downloading {LORA_FILE} of {plan.repo_id}")
    folder.mkdir(parents=True, exist_ok=True)
    args = ["lora-download", plan.repo_id, str(plan.revision), str(folder)]
    run_hub(hub, args, cancel=cancel, lock_fd=lock_fd)
    file = folder / LORA_FILE
    expected = plan.files[0].sha256
    if not file.is_file() or (expected is not None and sha256_file(file) != expected):
        fsutil.remove_tree(folder)
        raise LofiError(
            errors.MODEL_DOWNLOAD_FAILED,
            f"the downloaded {LORA_FILE} of {plan.repo_id} is missing or differs from the hub's "
            "checksum (deleted)",
            remedy="Run the setup again.",
        )
    report("download", size, size, f"downloaded {LORA_FILE} of {plan.repo_id}")
    return size


def _export(
    checkpoint: Path,
    target: Path,
    base: Manifest,
    options: VariantOptions,
    lora: Path,
    source: str,
    report: Reporter,
    cancel: threading.Event,
    lock_fd: int,
) -> Manifest:
    """Export the variant into a staging folder, verify it there, then move it into place."""
    staging = target.with_name(f".{target.name}.setup")
    fsutil.remove_tree(staging)
    extra = [
        "--lora",
        str(lora),
        "--lora-weight",
        repr(float(options.weight)),
        "--lora-source",
        source,
        "--base",
        str(base.root),
    ]
    try:
        out = staging / target.name
        export_checkpoint(checkpoint, out, options.base, report, cancel, lock_fd, extra)
        check_cancel(cancel)
        verify_files(load_manifest(out), report)
        check_cancel(cancel)
        fsutil.replace_dir(out, target)
    finally:
        fsutil.remove_tree(staging)
    return load_manifest(target)
