"""What a model installation does and where: its options and the folders beside the model directory.

An installation of ``<models>`` uses these siblings::

    <models>.download/       the checkpoint as downloaded (kept until the install succeeds;
                             huggingface_hub resumes partial files from here)
    .<models>.setup/         staging: the export goes here and is verified here
    .<models>.lock           one installation at a time per model directory
    <models>/                appears (by a rename) only once every sha256 has been checked

A model directory therefore either does not exist or is complete, so the runtime's readiness
check (``lofi_daemon.model.manifest.load_manifest``) never sees a half-finished install.

The staging folder has a fixed name (rather than a fresh temporary one) so that the next run
finds and removes what a killed run left there.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.install.backend_spec import V1_SPEC, BackendSpec, backend_spec
from lofi_daemon.model.backends import DEFAULT_BACKEND
from lofi_daemon.paths import default_models_dir

REPO_ID: Final = V1_SPEC.repo_id
DEFAULT_ENDPOINT: Final = "https://huggingface.co"

#: The v1 files the export needs: config and weights of the four components, the UMT5 tokenizer
#: (each backend's own lists are in :mod:`.backend_spec`).
ALLOW_PATTERNS: Final = V1_SPEC.allow_patterns
#: Without these a v1 checkpoint folder (or a hub revision) cannot be exported.
REQUIRED_FILES: Final = V1_SPEC.required_files


#: ``setup --precision`` values.
PRECISION_CHOICES: Final = ("auto", "fp32", "fp16")


def resolve_precision(choice: str, providers: Sequence[str] | None = None) -> str:
    """``auto`` → ``fp16`` when CUDA really runs here (``providers``: the working providers,
    probed when not given), else ``fp32``; an explicit ``fp32``/``fp16`` is returned as is."""
    if choice != "auto":
        return choice
    if providers is None:
        # Imported here: probing loads onnxruntime, which the setup CLI does not need otherwise.
        from lofi_daemon.pipeline.providers import working_providers

        providers = working_providers()
    return "fp16" if "CUDAExecutionProvider" in providers else "fp32"


@dataclass(frozen=True)
class InstallOptions:
    """What to install and where.

    Attributes:
        models_dir: the model directory to create or replace (the backend's own directory:
            ``lofi_daemon.model.backends.backend_models_dir``).
        checkpoint: a local checkpoint folder (official layout); ``None`` downloads ``repo_id``.
        assume_yes: consent to the download without asking (``--yes``).
        force: reinstall from the hub even when a valid installation is present.
        keep_download: keep ``<models>.download/`` after a successful install.
        repo_id: the hub repository (default: the backend's).
        revision: a branch, tag or commit of ``repo_id`` (default: the main branch).
        endpoint: the hub's URL (default: ``$HF_ENDPOINT``, else huggingface.co).
        exporter: the command that runs ``lofi-export`` (default: this interpreter's
            ``-m lofi_export``); it is given
            ``--log-level INFO onnx CHECKPOINT OUT --force --progress json`` and must report its
            progress as :mod:`lofi_daemon.install.export_step` describes.
        backend: the backend to install (``ace-step`` or ``ace-step-1.5``).
        precision: the graph set to export: ``fp32``, ``fp16`` (fp16 weights and matrix
            products with fp32 islands: about half the disk, for GPUs) or ``auto`` (fp16 when a
            CUDA GPU works here, else fp32; :func:`resolve_precision`).
    """

    models_dir: Path = field(default_factory=default_models_dir)
    checkpoint: Path | None = None
    assume_yes: bool = False
    force: bool = False
    keep_download: bool = False
    repo_id: str = ""
    revision: str | None = None
    endpoint: str | None = None
    exporter: tuple[str, ...] | None = None
    backend: str = DEFAULT_BACKEND
    precision: str = "auto"

    def __post_init__(self) -> None:
        spec = backend_spec(self.backend)  # refuses an unknown backend
        if self.precision not in PRECISION_CHOICES:
            raise LofiError(
                errors.INVALID_PARAMETER,
                f"unknown precision {self.precision!r}; use one of {', '.join(PRECISION_CHOICES)}",
            )
        if not self.repo_id:
            object.__setattr__(self, "repo_id", spec.repo_id)

    def export_precision(self) -> str:
        """``fp32`` or ``fp16``: ``precision`` with ``auto`` resolved on this machine."""
        return resolve_precision(self.precision)

    @property
    def spec(self) -> BackendSpec:
        return backend_spec(self.backend)

    @property
    def download_dir(self) -> Path:
        return self.models_dir.with_name(self.models_dir.name + ".download")

    @property
    def staging_dir(self) -> Path:
        return self.models_dir.with_name(f".{self.models_dir.name}.setup")

    @property
    def lock_path(self) -> Path:
        return self.models_dir.with_name(f".{self.models_dir.name}.lock")

    def hub_url(self) -> str:
        return (self.endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
