"""The manifest of an installed (or staged) model directory, read the way its backend reads it.

The installer needs little of a manifest: the model version, the file list with sizes and
sha256, and the raw JSON (for the checkpoint's ``source.files``). :func:`load_model_manifest`
returns that for either backend: v1 through :func:`lofi_daemon.model.manifest.load_manifest`,
1.5 through :func:`lofi_daemon.turbo.manifest.load_turbo_manifest` (imported lazily). Each
refuses the other backend's directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model.backends import V1
from lofi_daemon.model.manifest import load_manifest, sha256_file


class ModelManifest(Protocol):
    """What the installer reads from a manifest (v1's ``Manifest`` has these fields)."""

    @property
    def root(self) -> Path: ...

    @property
    def model_version(self) -> str: ...

    @property
    def precision(self) -> str: ...

    @property
    def files(self) -> dict[str, dict[str, Any]]: ...

    @property
    def raw(self) -> dict[str, Any]: ...


def manifest_backend(raw: dict[str, Any]) -> str:
    """The backend a manifest belongs to (v1 manifests have no ``backend`` field)."""
    value = raw.get("backend", V1.name)
    return value if isinstance(value, str) else repr(value)


def load_model_manifest(root: Path, backend: str) -> ModelManifest:
    """Read and check the manifest of ``root`` as backend ``backend``'s runtime does.

    Raises:
        LofiError: MODEL_NOT_FOUND (no manifest, a listed file missing) or MODEL_LOAD_FAILED
            (unreadable, another backend's models, a file of the wrong size).
    """
    if backend == V1.name:
        return load_manifest(root)
    # Imported here: the turbo runtime is only needed once a 1.5 directory is read.
    from lofi_daemon.turbo.manifest import load_turbo_manifest

    return load_turbo_manifest(root)


def verify_manifest_hashes(
    manifest: ModelManifest,
    backend: str,
    progress: Callable[[int, int, str], None] | None = None,
) -> None:
    """Check the sha256 of every file of ``manifest``.

    Raises:
        LofiError: MODEL_LOAD_FAILED naming the first file that differs.
    """
    items = sorted(manifest.files.items())
    for index, (name, info) in enumerate(items):
        if sha256_file(manifest.root / name) != info.get("sha256"):
            raise LofiError(
                errors.MODEL_LOAD_FAILED,
                f"checksum mismatch for {manifest.root / name}",
                remedy=f"Run :Lofi setup {backend} to repair the installation.",
            )
        if progress is not None:
            progress(index + 1, len(items), name)
