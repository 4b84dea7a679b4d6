"""The download: fetch the plan's files from the hub (in the hub child), then check them.

A download resumes what an earlier, interrupted one left in ``<models>.download/``. Its files are
checked twice: by size as soon as the child ends, and by checksum once the exporter has hashed
them (:func:`check_download`), so each file is read only once more.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.install.child import hub_remedy, run_hub
from lofi_daemon.install.installed import ModelManifest
from lofi_daemon.install.options import InstallOptions
from lofi_daemon.install.plan import InstallPlan, bytes_on_disk, has_size
from lofi_daemon.install.progress import Reporter, format_bytes
from lofi_daemon.model.manifest import sha256_file


def download(
    plan: InstallPlan,
    options: InstallOptions,
    report: Reporter,
    cancel: threading.Event,
    lock_fd: int | None,
) -> int:
    """Fetch the plan's files into the download folder (resuming); return the bytes fetched.

    Progress is the bytes on disk, polled while the child runs.

    Raises:
        LofiError: MODEL_DOWNLOAD_FAILED (the hub failed, or a file has the wrong size).
        CancelledError: ``cancel`` was set; the partial files stay for the next run.
    """
    total = plan.download_bytes
    target = options.download_dir
    before = bytes_on_disk(target, plan.files)
    complete = all(has_size(target / f.path, f.size) for f in plan.files)

    def tick() -> None:
        done = min(total, bytes_on_disk(target, plan.files))
        report(
            "download",
            done,
            total,
            f"downloading {plan.repo_id}: {format_bytes(done)} of {format_bytes(total)}",
        )

    tick()
    if not complete:
        target.mkdir(parents=True, exist_ok=True)
        args = ["download", plan.repo_id, str(plan.revision), str(target)]
        args += ["--backend", options.backend]
        try:
            run_hub(options, args, cancel=cancel, tick=tick, lock_fd=lock_fd)
        except LofiError as exc:
            if bytes_on_disk(target, plan.files) > 0:  # a rerun resumes: say so
                raise LofiError(exc.code, exc.message, remedy=hub_remedy(True, options)) from exc
            raise
    wrong = [f.path for f in plan.files if not has_size(target / f.path, f.size)]
    if wrong:
        shown = ", ".join(wrong[:3]) + (f" and {len(wrong) - 3} more" if len(wrong) > 3 else "")
        raise LofiError(
            errors.MODEL_DOWNLOAD_FAILED,
            f"the download is incomplete: {shown} missing or of the wrong size",
            remedy=hub_remedy(bytes_on_disk(target, plan.files) > 0, options),
        )
    report("download", total, total, f"downloaded {plan.repo_id} ({format_bytes(total)})")
    return max(0, total - before)


def git_blob_id(path: Path) -> str:
    """The id git gives the file's content: sha1 of ``blob <size>\\0`` followed by the bytes."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def check_download(manifest: ModelManifest, plan: InstallPlan, options: InstallOptions) -> None:
    """Compare the downloaded files with the hub's sha256 (LFS files) or git blob id (others).

    The exporter records the sha256 of every source file in the manifest (``source.files``);
    those are used where present. A file that differs is deleted, so the next run fetches it
    again.

    Raises:
        LofiError: MODEL_DOWNLOAD_FAILED naming the files that differ.
    """
    source = manifest.raw.get("source", {}).get("files", {})
    bad: list[str] = []
    for remote in plan.files:
        local = plan.checkpoint_dir / remote.path
        if remote.sha256 is not None:
            recorded = source.get(remote.path, {}).get("sha256")
            ok = (recorded or sha256_file(local)) == remote.sha256
        elif remote.blob_id is not None:
            ok = git_blob_id(local) == remote.blob_id
        else:
            continue
        if not ok:
            bad.append(remote.path)
            local.unlink(missing_ok=True)
    if bad:
        raise LofiError(
            errors.MODEL_DOWNLOAD_FAILED,
            f"downloaded file(s) differ from the hub's checksum: {', '.join(bad)} "
            f"(deleted from {options.download_dir})",
            remedy="Run the setup again to download them again.",
        )
