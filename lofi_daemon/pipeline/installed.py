"""A model directory as an engine sees it: its manifest, read once and read again when the files
change on disk, and the ``status`` answer built from it. Both backends' engines use it
(:class:`lofi_daemon.pipeline.engine.Engine`, :class:`lofi_daemon.turbo.engine.TurboEngine`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model.manifest import MANIFEST_NAME

#: ``(name, inode, size, mtime_ns)`` of a file, or None when it is gone.
FileStamp = tuple[str, int, int, int] | None
#: ``(manifest.json, the listed files)``.
Fingerprint = tuple[FileStamp, tuple[FileStamp, ...]]


class InstalledManifest(Protocol):
    @property
    def files(self) -> Mapping[str, Any]: ...

    @property
    def model_version(self) -> str: ...

    @property
    def precision(self) -> str: ...


M = TypeVar("M", bound=InstalledManifest)


def _stamp(path: Path) -> FileStamp:
    try:
        st = path.stat()
    except OSError:
        return None
    return (path.name, st.st_ino, st.st_size, st.st_mtime_ns)


def disk_fingerprint(models_dir: Path, manifest: InstalledManifest | None) -> Fingerprint:
    """What changes when the installation is replaced, deleted or damaged on disk."""
    names = () if manifest is None else sorted(manifest.files)
    return (_stamp(models_dir / MANIFEST_NAME), tuple(_stamp(models_dir / n) for n in names))


class ModelDirectory(Generic[M]):
    """The manifest of ``root`` as ``load`` reads it, cached until the files change on disk."""

    def __init__(self, root: Path, load: Callable[[Path], M]) -> None:
        self.root = Path(root)
        self._load = load
        self._manifest: M | None = None
        self._fingerprint: Fingerprint | None = None  # the disk state _manifest was read from

    @property
    def manifest(self) -> M:
        if self._manifest is None:
            before = disk_fingerprint(self.root, None)
            manifest = self._load(self.root)
            self._manifest = manifest
            self._fingerprint = disk_fingerprint(self.root, manifest)
            if self._fingerprint[0] != before[0]:  # the manifest changed while being read
                self._fingerprint = None
        return self._manifest

    def changed(self) -> bool:
        """Forget the cached manifest if the files changed on disk (cheap: stats only); True when
        they did, so the engine drops what it built from them before its next run."""
        if self._manifest is None:
            return False
        if disk_fingerprint(self.root, self._manifest) == self._fingerprint:
            return False
        self.forget()
        return True

    def forget(self) -> None:
        self._manifest = None
        self._fingerprint = None

    def status(self, providers: list[str]) -> dict[str, Any]:
        """``ready`` with the model version, else ``not_installed`` or ``error`` with the reason
        (the files are re-checked each time)."""
        self.changed()
        try:
            manifest = self.manifest
        except LofiError as exc:
            state = "not_installed" if exc.code == errors.MODEL_NOT_FOUND else "error"
            return {
                "status": state,
                "message": exc.message,
                "remedy": exc.remedy,
                "model_version": None,
                "precision": None,
                "providers": providers,
            }
        return {
            "status": "ready",
            "message": "ready",
            "model_version": manifest.model_version,
            "precision": manifest.precision,
            "providers": providers,
        }
