"""The plan of an installation, measured before anything is written: what to download, how much
disk the export needs, and whether it fits.

For a hub install the file list comes from the hub child's ``probe`` (metadata and safetensors
headers only); for a local checkpoint the headers are read here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.install.child import revision_args, run_hub
from lofi_daemon.install.options import InstallOptions
from lofi_daemon.install.progress import format_bytes
from lofi_daemon.model.backends import BACKENDS

log = logging.getLogger(__name__)

#: The export stores every weight as fp32 (the tiny checkpoint's graphs hold 96 % of its fp32
#: bytes), plus the tensors a backend copies into fp32 arrays (1.5: ``embed_tokens.npy``); allow
#: for the graph protobufs, the tokenizer and the mel tables or silence latent on top.
EXPORT_MARGIN: Final = 1.05
EXPORT_OVERHEAD_BYTES: Final = 256 << 20
#: A safetensors header larger than this is not believed (the safetensors library refuses
#: headers over 100 MB).
MAX_HEADER_BYTES: Final = 100 << 20
INSTALL_DIR_REMEDY: Final = (
    "Free some disk space, or install elsewhere with --models DIR (or $LOFI_MODELS_DIR)."
)


def install_dir_remedy(backend: str) -> str:
    env_var = BACKENDS[backend].env_var
    return INSTALL_DIR_REMEDY.replace("$LOFI_MODELS_DIR", f"${env_var}")


@dataclass(frozen=True)
class RemoteFile:
    """One file of the hub repository, as its metadata describes it."""

    path: str
    size: int
    sha256: str | None  # LFS files
    blob_id: str | None  # the git blob id (sha1) of small files


@dataclass(frozen=True)
class InstallPlan:
    """What an installation will do, measured before it starts (nothing is written to disk)."""

    source: str  # "hub" or "local"
    repo_id: str
    revision: str | None
    checkpoint_dir: Path
    models_dir: Path
    files: tuple[RemoteFile, ...]
    download_bytes: int
    downloaded_bytes: int
    export_bytes: int

    @property
    def remaining_bytes(self) -> int:
        return max(0, self.download_bytes - self.downloaded_bytes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "repo_id": self.repo_id,
            "revision": self.revision,
            "checkpoint_dir": str(self.checkpoint_dir),
            "models_dir": str(self.models_dir),
            "download_bytes": self.download_bytes,
            "downloaded_bytes": self.downloaded_bytes,
            "remaining_bytes": self.remaining_bytes,
            "export_bytes": self.export_bytes,
        }


def plan_install(options: InstallOptions, cancel: threading.Event | None = None) -> InstallPlan:
    """Measure the installation: the files to download (from the hub's metadata), the export size.

    For a hub install this asks the hub (in a child process); nothing is downloaded except the
    safetensors headers, which give the exact size of the fp32 export.

    Raises:
        LofiError: SETUP_FAILED (a local folder that is not a checkpoint) or
            MODEL_DOWNLOAD_FAILED (the hub cannot be read, or lacks a needed file).
    """
    if options.checkpoint is not None:
        return plan_local(options, options.checkpoint)
    spec = options.spec
    args = ["probe", options.repo_id, *revision_args(options.revision), "--backend", spec.name]
    probe = run_hub(options, args, cancel=cancel)
    files = tuple(RemoteFile(**f) for f in probe["files"])
    present = {f.path for f in files}
    missing = [name for name in spec.required_files if name not in present]
    if missing:
        raise LofiError(
            errors.MODEL_DOWNLOAD_FAILED,
            f"{options.repo_id} at {options.hub_url()} lacks {', '.join(missing)}",
            remedy="Check --revision and the hub repository; lofi.nvim needs the official layout.",
        )
    fp32 = probe.get("weights_fp32_bytes")
    copied = probe.get("copied_fp32_bytes") or 0
    if fp32 is None:  # headers unreadable: assume 16-bit weights, the largest fp32 growth
        fp32 = 2 * sum(f.size for f in files if f.path.endswith(".safetensors"))
        # ... and a copied tensor as large as its whole file
        holders = {file for file, _ in spec.copied_tensors}
        copied = 2 * sum(f.size for f in files if f.path in holders)
    return InstallPlan(
        source="hub",
        repo_id=options.repo_id,
        revision=probe["revision"],
        checkpoint_dir=options.download_dir,
        models_dir=options.models_dir,
        files=files,
        download_bytes=sum(f.size for f in files),
        downloaded_bytes=bytes_on_disk(options.download_dir, files),
        export_bytes=export_estimate(int(fp32), int(copied)),
    )


def plan_local(options: InstallOptions, root: Path) -> InstallPlan:
    """The plan for exporting the checkpoint folder ``root`` (nothing to download)."""
    spec = options.spec
    missing = [name for name in spec.required_files if not (root / name).is_file()]
    if missing:
        raise LofiError(
            errors.SETUP_FAILED,
            f"{root} is not an {spec.title} checkpoint (missing {', '.join(missing)})",
            remedy=spec.checkpoint_remedy(),
        )
    fp32 = sum(safetensors_fp32_bytes(root / name) for name in spec.weights)
    copied = sum(tensor_fp32_bytes(root / file, tensor) for file, tensor in spec.copied_tensors)
    return InstallPlan(
        source="local",
        repo_id=options.repo_id,
        revision=None,
        checkpoint_dir=root,
        models_dir=options.models_dir,
        files=(),
        download_bytes=0,
        downloaded_bytes=0,
        export_bytes=export_estimate(fp32, copied),
    )


def _fp32_sizes(path: Path) -> dict[str, int]:
    """The bytes of each tensor of a safetensors file once stored as fp32 (read from its header).

    The file starts with the header's length (little-endian u64), then the header: JSON mapping
    each tensor name to its dtype, shape and offsets, plus an optional ``__metadata__`` entry.
    """
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > MAX_HEADER_BYTES:
                raise ValueError(f"header of {length} bytes")
            header = json.loads(handle.read(length))
        return {
            key: 4 * math.prod(int(d) for d in tensor["shape"])
            for key, tensor in header.items()
            if key != "__metadata__"
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError, struct.error) as exc:
        raise LofiError(
            errors.SETUP_FAILED,
            f"{path}: not a readable safetensors file ({exc})",
            remedy="Check the checkpoint folder (a complete copy of the hub repository).",
        ) from exc


def safetensors_fp32_bytes(path: Path) -> int:
    """The bytes of a safetensors file's tensors once stored as fp32 (read from its header)."""
    return sum(_fp32_sizes(path).values())


def tensor_fp32_bytes(path: Path, tensor: str) -> int:
    """The fp32 bytes of one tensor of a safetensors file (0 when the file lacks it)."""
    return _fp32_sizes(path).get(tensor, 0)


def export_estimate(fp32_bytes: int, copied_bytes: int = 0) -> int:
    """The disk the ONNX export of ``fp32_bytes`` of weights needs, plus ``copied_bytes`` of
    tensors it also writes as fp32 arrays."""
    return int(fp32_bytes * EXPORT_MARGIN) + copied_bytes + EXPORT_OVERHEAD_BYTES


def has_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def bytes_on_disk(download_dir: Path, files: Sequence[RemoteFile]) -> int:
    """Bytes of ``files`` already in ``download_dir``: finished files plus partial downloads.

    huggingface_hub keeps a partial download of ``local_dir`` as
    ``local_dir/.cache/huggingface/download/**/*.incomplete`` and resumes it from there.
    """
    done = sum(f.size for f in files if has_size(download_dir / f.path, f.size))
    partial = download_dir / ".cache" / "huggingface" / "download"
    if partial.is_dir():
        for path in partial.rglob("*.incomplete"):
            with contextlib.suppress(OSError):
                done += path.stat().st_size
    return done


def existing_ancestor(path: Path) -> Path:
    """``path`` itself, or its nearest parent that exists (where a new folder would go)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk_space(plan: InstallPlan, options: InstallOptions) -> None:
    """Refuse to start when the download plus the export do not fit on the disk(s).

    Raises:
        LofiError: SETUP_FAILED, with ``needed_bytes``, ``free_bytes`` and ``path`` as data.
    """
    needs: dict[int, tuple[Path, int, list[str]]] = {}

    def need(path: Path, count: int, what: str) -> None:
        anchor = existing_ancestor(path)
        device = anchor.stat().st_dev
        where, total, parts = needs.get(device, (anchor, 0, []))
        needs[device] = (where, total + count, [*parts, f"{format_bytes(count)} {what}"])

    if plan.source == "hub":
        need(options.download_dir, plan.remaining_bytes, "to download")
    need(options.staging_dir, plan.export_bytes, "for the ONNX export")
    for where, total, parts in needs.values():
        free = shutil.disk_usage(where).free
        if free < total:
            raise LofiError(
                errors.SETUP_FAILED,
                f"not enough free disk space on {where}: the setup needs {format_bytes(total)} "
                f"({' + '.join(parts)}), {format_bytes(free)} is free",
                remedy=install_dir_remedy(options.backend),
                data={"needed_bytes": total, "free_bytes": free, "path": str(where)},
            )


def log_plan(plan: InstallPlan) -> None:
    if plan.source == "local":
        log.info(
            "exporting %s to %s (about %s)",
            plan.checkpoint_dir,
            plan.models_dir,
            format_bytes(plan.export_bytes),
        )
        return
    resumed = (
        f", {format_bytes(plan.downloaded_bytes)} already downloaded"
        if plan.downloaded_bytes
        else ""
    )
    log.info(
        "%s: %d files, %s to download%s; the ONNX export needs about %s in %s",
        plan.repo_id,
        len(plan.files),
        format_bytes(plan.download_bytes),
        resumed,
        format_bytes(plan.export_bytes),
        plan.models_dir.parent,
    )
