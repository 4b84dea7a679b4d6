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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from lofi_daemon.model import layout
from lofi_daemon.paths import default_models_dir

REPO_ID: Final = layout.REPO_ID
DEFAULT_ENDPOINT: Final = "https://huggingface.co"

#: The files the export needs: config and weights of the four components, the UMT5 tokenizer.
ALLOW_PATTERNS: Final = tuple(
    [f"{c.folder}/config.json" for c in layout.COMPONENTS]
    + [f"{c.folder}/{c.weights}" for c in layout.COMPONENTS]
    + [f"{layout.TEXT_ENCODER.folder}/{name}" for name in layout.TOKENIZER_FILES]
)
#: Without these a checkpoint folder (or a hub revision) cannot be exported.
REQUIRED_FILES: Final = tuple(
    [f"{c.folder}/config.json" for c in layout.COMPONENTS]
    + [f"{c.folder}/{c.weights}" for c in layout.COMPONENTS]
    + [f"{layout.TEXT_ENCODER.folder}/tokenizer.json"]
)


@dataclass(frozen=True)
class InstallOptions:
    """What to install and where.

    Attributes:
        models_dir: the model directory to create or replace.
        checkpoint: a local checkpoint folder (official layout); ``None`` downloads ``repo_id``.
        assume_yes: consent to the download without asking (``--yes``).
        force: reinstall from the hub even when a valid installation is present.
        keep_download: keep ``<models>.download/`` after a successful install.
        repo_id: the hub repository.
        revision: a branch, tag or commit of ``repo_id`` (default: the main branch).
        endpoint: the hub's URL (default: ``$HF_ENDPOINT``, else huggingface.co).
        exporter: the command that runs ``lofi-export`` (default: this interpreter's
            ``-m lofi_export``); it is given
            ``--log-level INFO onnx CHECKPOINT OUT --force --progress json`` and must report its
            progress as :mod:`lofi_daemon.install.export_step` describes.
    """

    models_dir: Path = field(default_factory=default_models_dir)
    checkpoint: Path | None = None
    assume_yes: bool = False
    force: bool = False
    keep_download: bool = False
    repo_id: str = REPO_ID
    revision: str | None = None
    endpoint: str | None = None
    exporter: tuple[str, ...] | None = None

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
