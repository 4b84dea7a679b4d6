"""Install the ACE-Step v1 backend: download the checkpoint, export it to ONNX, verify, install.

``run_setup`` is the whole job. It is safe to call from a worker thread: progress goes to a
callback, a :class:`threading.Event` cancels it, and consent for the download comes from a callback.

The daemon process never imports torch or huggingface_hub. The hub is reached from a child
process (``python -m lofi_daemon.install.installer probe|download``), which can be killed at once on cancel,
and the export runs in a ``python -m lofi_export`` child. The folders next to the model directory::

    <models>.download/       the checkpoint as downloaded (kept until the install succeeds;
                             huggingface_hub resumes partial files from here)
    .<models>.setup/         staging: the export goes here and is verified here
    .<models>.lock           one setup at a time per model directory
    <models>/                appears (by a rename) only once every sha256 has been checked

A model directory either does not exist or is complete, so the runtime's readiness check
(``manifest.load_manifest``) never sees a half-finished install.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import logging
import math
import os
import queue
import shutil
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from lofi_daemon import errors
from lofi_daemon.errors import CancelledError, LofiError
from lofi_daemon.model import layout
from lofi_daemon.model.manifest import Manifest, load_manifest, verify_hashes
from lofi_daemon.paths import default_models_dir

LOG = logging.getLogger(__name__)

REPO_ID: Final = layout.REPO_ID
#: The files the export needs: config and weights of the four components, the UMT5 tokenizer.
ALLOW_PATTERNS: Final = tuple(
    [f"{c.folder}/config.json" for c in layout.COMPONENTS]
    + [f"{c.folder}/{c.weights}" for c in layout.COMPONENTS]
    + [f"{layout.TEXT_ENCODER.folder}/{name}" for name in layout.TOKENIZER_FILES]
)
REQUIRED_FILES: Final = tuple(
    [f"{c.folder}/config.json" for c in layout.COMPONENTS]
    + [f"{c.folder}/{c.weights}" for c in layout.COMPONENTS]
    + [f"{layout.TEXT_ENCODER.folder}/tokenizer.json"]
)
#: ``lofi-export onnx`` logs one ``wrote <graph>.onnx`` line per graph.
EXPORTED_GRAPHS: Final = 6
#: The export stores every weight as fp32 (the tiny checkpoint's graphs hold 96 % of its fp32
#: bytes); allow for the graph protobufs, the tokenizer and the mel tables on top.
EXPORT_MARGIN: Final = 1.05
EXPORT_OVERHEAD_BYTES: Final = 256 << 20
POLL_SEC: Final = 0.2
STOP_GRACE_SEC: Final = 10.0
DEFAULT_ENDPOINT: Final = "https://huggingface.co"
INSTALL_DIR_REMEDY: Final = (
    "Free some disk space, or install elsewhere with --models DIR (or $LOFI_MODELS_DIR)."
)

ProgressFn = Callable[[str, int, int, float, str], None]
ConfirmFn = Callable[["SetupPlan"], bool]  # asked with the plan; True = go ahead


@dataclass(frozen=True)
class SetupOptions:
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
            ``-m lofi_export``); it is given ``--log-level INFO onnx CHECKPOINT OUT --force``.
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


@dataclass(frozen=True)
class RemoteFile:
    """One file of the hub repository, as its metadata describes it."""

    path: str
    size: int
    sha256: str | None  # LFS files
    blob_id: str | None  # the git blob id (sha1) of small files


@dataclass(frozen=True)
class SetupPlan:
    """What a setup will do, measured before it starts (nothing is written to disk)."""

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


@dataclass(frozen=True)
class SetupResult:
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


def format_bytes(count: float) -> str:
    """``8.26 GB``-style sizes (decimal units, as download sizes are usually quoted)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.2f} {unit}"
        count /= 1000
    return f"{count:.2f} GB"


# --------------------------------------------------------------------------------------------
# Progress


class _Progress:
    """Forward to the callback; percent never goes back within a phase, repeats are dropped."""

    def __init__(self, callback: ProgressFn | None) -> None:
        self._callback = callback
        self._last: dict[str, tuple[int, float, str]] = {}

    def __call__(self, phase: str, done: int, total: int, message: str) -> None:
        percent = 100.0 if total <= 0 else min(100.0, 100.0 * done / total)
        last = self._last.get(phase)
        if last is not None:
            done, percent = max(done, last[0]), max(percent, last[1])
            if (done, percent, message) == last:
                return
        self._last[phase] = (done, percent, message)
        if self._callback is not None:
            self._callback(phase, done, total, round(percent, 2), message)


# --------------------------------------------------------------------------------------------
# Entry points


def missing_packages(*, download: bool) -> list[str]:
    """The missing packages of the export extra (and huggingface_hub, to download)."""
    from lofi_export import __main__ as export_cli

    missing = list(export_cli.missing_export_packages())
    if download and importlib.util.find_spec("huggingface_hub") is None:
        missing.append("huggingface_hub")
    return missing


def install_hint() -> str:
    from lofi_export.__main__ import INSTALL_HINT

    return INSTALL_HINT


def verify_installation(models_dir: Path, progress: ProgressFn | None = None) -> Manifest:
    """Check an installed model directory file by file (sizes, then every sha256).

    Raises:
        LofiError: MODEL_NOT_FOUND (nothing installed) or MODEL_LOAD_FAILED (a corrupt file).
    """
    manifest = load_manifest(models_dir)
    _verify_files(manifest, _Progress(progress))
    return manifest


def _verify_files(manifest: Manifest, report: _Progress) -> None:
    total = len(manifest.files)
    report("verify", 0, total, f"checking the sha256 of {total} files in {manifest.root}")
    verify_hashes(
        manifest, progress=lambda done, n, name: report("verify", done, n, f"sha256 ok: {name}")
    )


def plan_setup(options: SetupOptions, cancel: threading.Event | None = None) -> SetupPlan:
    """Measure the setup: the files to download (from the hub's metadata) and the export size.

    For a hub install this asks the hub (in a child process); nothing is downloaded except the
    safetensors headers, which give the exact size of the fp32 export.
    """
    if options.checkpoint is not None:
        return _plan_local(options)
    args = ["probe", options.repo_id, *_revision_args(options.revision)]
    probe = _hub_child(options, args, cancel=cancel)
    files = tuple(RemoteFile(**f) for f in probe["files"])
    present = {f.path for f in files}
    missing = [name for name in REQUIRED_FILES if name not in present]
    if missing:
        raise LofiError(
            errors.MODEL_DOWNLOAD_FAILED,
            f"{options.repo_id} at {options.hub_url()} lacks {', '.join(missing)}",
            remedy="Check --revision and the hub repository; lofi.nvim needs the official layout.",
        )
    fp32 = probe.get("weights_fp32_bytes")
    if fp32 is None:  # headers unreadable: assume 16-bit weights, the largest fp32 growth
        fp32 = 2 * sum(f.size for f in files if f.path.endswith(".safetensors"))
    return SetupPlan(
        source="hub",
        repo_id=options.repo_id,
        revision=probe["revision"],
        checkpoint_dir=options.download_dir,
        models_dir=options.models_dir,
        files=files,
        download_bytes=sum(f.size for f in files),
        downloaded_bytes=_bytes_on_disk(options.download_dir, files),
        export_bytes=_export_estimate(int(fp32)),
    )


def run_setup(
    options: SetupOptions,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    confirm: ConfirmFn | None = None,
) -> SetupResult:
    """Download (unless a local checkpoint is given), export, verify and install the backend.

    Args:
        options: what to install and where.
        progress: ``progress(phase, done, total, percent, message)`` with phase ``download``
            (bytes), ``export`` (graphs) or ``verify`` (files); percent never decreases in a phase.
        cancel: set it to stop; the setup stops within a fraction of a second, kills its child
            process and raises :class:`CancelledError`. A rerun resumes the download.
        confirm: asked with the number of bytes still to download, unless
            ``options.assume_yes``; without it (and without ``assume_yes``) a download is refused.

    Returns:
        The installed model directory. It is only created once every file has been verified.

    Raises:
        LofiError: SETUP_FAILED, MODEL_DOWNLOAD_FAILED, MODEL_LOAD_FAILED (a checksum mismatch)
            or GENERATION_CANCELLED; the model directory is then left as it was.
    """
    started = time.monotonic()
    cancel = cancel or threading.Event()
    report = _Progress(progress)
    models_dir = options.models_dir
    models_dir.parent.mkdir(parents=True, exist_ok=True)
    with _setup_lock(options.lock_path, models_dir) as lock_fd:
        if options.checkpoint is None and not options.force:
            existing = _valid_installation(models_dir, report)
            if existing is not None:
                LOG.info("ACE-Step is already installed and verified at %s", models_dir)
                elapsed = time.monotonic() - started
                return SetupResult(models_dir, existing.model_version, True, 0, None, elapsed)
        _preflight(options)
        plan = plan_setup(options, cancel)
        _log_plan(plan)
        check_disk_space(plan, options)
        _consent(plan, options, confirm)
        _check_cancel(cancel)
        fetched = _download(plan, options, report, cancel, lock_fd) if plan.source == "hub" else 0
        _check_cancel(cancel)
        manifest = _export_verify_install(plan, options, report, cancel, lock_fd)
        kept = None
        if plan.source == "hub":
            kept = options.download_dir if options.keep_download else None
            if kept is None:
                _remove_tree(options.download_dir)
    LOG.info("ACE-Step installed at %s (%s)", models_dir, manifest.model_version)
    elapsed = time.monotonic() - started
    return SetupResult(models_dir, manifest.model_version, False, fetched, kept, elapsed)


def _export_verify_install(
    plan: SetupPlan,
    options: SetupOptions,
    report: _Progress,
    cancel: threading.Event,
    lock_fd: int,
) -> Manifest:
    """Export into the staging folder, verify there, then move it into place."""
    staging = options.staging_dir
    _remove_tree(staging)  # what an interrupted run left: the export restarts
    try:
        staged = _export(plan, options, staging / options.models_dir.name, report, cancel, lock_fd)
        _check_cancel(cancel)
        _verify_staged(staged, plan, options, report)
        _check_cancel(cancel)
        _install(staged, options.models_dir)
    finally:
        _remove_tree(staging)
    return load_manifest(options.models_dir)


# --------------------------------------------------------------------------------------------
# Checks before starting


def _valid_installation(models_dir: Path, report: _Progress) -> Manifest | None:
    try:
        manifest = load_manifest(models_dir)
    except LofiError:
        return None
    try:
        _verify_files(manifest, report)
        return manifest
    except LofiError as exc:
        LOG.warning("the installed models are damaged (%s); reinstalling", exc.message)
        return None


def _preflight(options: SetupOptions) -> None:
    _check_replaceable(options.models_dir)
    missing = missing_packages(download=options.checkpoint is None)
    if missing:
        raise LofiError(
            errors.SETUP_FAILED,
            "installing the models needs the export extra (missing: "
            f"{', '.join(missing)}); install it with: {install_hint()}",
            remedy=f"Run: {install_hint()}",
        )


def _check_replaceable(models_dir: Path) -> None:
    """Refuse to replace a folder that is not a (possibly broken) lofi.nvim model directory."""
    if not models_dir.exists():
        return
    if models_dir.is_dir() and (
        (models_dir / "manifest.json").exists() or not any(models_dir.iterdir())
    ):
        return
    raise LofiError(
        errors.SETUP_FAILED,
        f"{models_dir} exists and is not a lofi.nvim model directory; setup will not replace it",
        remedy="Choose a new or empty folder with --models DIR (or $LOFI_MODELS_DIR).",
    )


def _plan_local(options: SetupOptions) -> SetupPlan:
    root = options.checkpoint
    assert root is not None
    missing = [name for name in REQUIRED_FILES if not (root / name).is_file()]
    if missing:
        raise LofiError(
            errors.SETUP_FAILED,
            f"{root} is not an ACE-Step v1 checkpoint (missing {', '.join(missing)})",
            remedy=f"Point --checkpoint at a folder with the four sub-folders of {REPO_ID}.",
        )
    fp32 = sum(_safetensors_fp32_bytes(root / f"{c.folder}/{c.weights}") for c in layout.COMPONENTS)
    return SetupPlan(
        source="local",
        repo_id=options.repo_id,
        revision=None,
        checkpoint_dir=root,
        models_dir=options.models_dir,
        files=(),
        download_bytes=0,
        downloaded_bytes=0,
        export_bytes=_export_estimate(fp32),
    )


def _safetensors_fp32_bytes(path: Path) -> int:
    """The bytes of a safetensors file's tensors once stored as fp32 (read from its header)."""
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100 << 20:
                raise ValueError(f"header of {length} bytes")
            header = json.loads(handle.read(length))
        return 4 * sum(
            math.prod(int(d) for d in tensor["shape"])
            for key, tensor in header.items()
            if key != "__metadata__"
        )
    except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:
        raise LofiError(
            errors.SETUP_FAILED,
            f"{path}: not a readable safetensors file ({exc})",
            remedy="Check the checkpoint folder (a complete copy of the hub repository).",
        ) from exc


def _export_estimate(fp32_bytes: int) -> int:
    return int(fp32_bytes * EXPORT_MARGIN) + EXPORT_OVERHEAD_BYTES


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk_space(plan: SetupPlan, options: SetupOptions) -> None:
    """Refuse to start when the download plus the export do not fit on the disk(s)."""
    needs: dict[int, tuple[Path, int, list[str]]] = {}

    def need(path: Path, count: int, what: str) -> None:
        anchor = _existing_ancestor(path)
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
                remedy=INSTALL_DIR_REMEDY,
                data={"needed_bytes": total, "free_bytes": free, "path": str(where)},
            )


def _log_plan(plan: SetupPlan) -> None:
    if plan.source == "local":
        LOG.info(
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
    LOG.info(
        "%s: %d files, %s to download%s; the ONNX export needs about %s in %s",
        plan.repo_id,
        len(plan.files),
        format_bytes(plan.download_bytes),
        resumed,
        format_bytes(plan.export_bytes),
        plan.models_dir.parent,
    )


def _consent(plan: SetupPlan, options: SetupOptions, confirm: ConfirmFn | None) -> None:
    if plan.source != "hub" or plan.remaining_bytes == 0 or options.assume_yes:
        return
    size = format_bytes(plan.remaining_bytes)
    if confirm is None:
        raise LofiError(
            errors.SETUP_FAILED,
            f"downloading {size} from {options.hub_url()}/{plan.repo_id} needs your consent "
            "and there is no terminal to ask",
            remedy="Rerun with --yes to agree to the download (or use :Lofi setup ace-step).",
            data={"download_bytes": plan.remaining_bytes},
        )
    if not confirm(plan):
        raise LofiError(
            errors.SETUP_FAILED,
            f"the download of {size} was declined; nothing was downloaded",
            remedy="Run the setup again and accept the download, or pass --checkpoint DIR.",
        )


def _check_cancel(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise CancelledError("setup cancelled; run it again to resume")


# --------------------------------------------------------------------------------------------
# Lock


@contextlib.contextmanager
def _setup_lock(path: Path, models_dir: Path) -> Iterator[int]:
    """Hold an exclusive lock on ``path`` (one setup per model directory); yields its descriptor."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            _lock_fd(fd)
        except OSError as exc:
            raise LofiError(
                errors.SETUP_FAILED,
                f"another setup is already installing into {models_dir}",
                remedy="Wait for it to finish (or cancel it), then run the setup again.",
            ) from exc
        yield fd
    finally:
        os.close(fd)


def _lock_fd(fd: int) -> None:
    if os.name == "nt":  # pragma: no cover - exercised on Windows only
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


# --------------------------------------------------------------------------------------------
# Child processes


class _Child:
    """A child process whose stderr lines are collected by a thread, stoppable at any time."""

    def __init__(self, cmd: Sequence[str], env: dict[str, str], lock_fd: int | None) -> None:
        LOG.debug("running %s", " ".join(cmd))
        # The child inherits the setup lock, so an orphaned child still holds it.
        extra = {"pass_fds": (lock_fd,)} if lock_fd is not None and os.name != "nt" else {}
        try:
            self.proc = subprocess.Popen(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                env=env,
                **extra,
            )
        except OSError as exc:
            raise LofiError(
                errors.SETUP_FAILED,
                f"cannot start {cmd[0]}: {exc.strerror or exc}",
                remedy="Check the Python environment of lofi.nvim (rerun its build step).",
            ) from exc
        self.lines: queue.Queue[str] = queue.Queue()
        self.tail: deque[str] = deque(maxlen=20)
        self.stdout = ""
        self._threads = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            self.tail.append(line)
            self.lines.put(line)
            LOG.debug("child: %s", line)

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout.read()

    def new_lines(self) -> list[str]:
        out: list[str] = []
        with contextlib.suppress(queue.Empty):
            while True:
                out.append(self.lines.get_nowait())
        return out

    def wait(self, cancel: threading.Event, tick: Callable[[], None]) -> int:
        """Wait for the exit, calling ``tick`` every poll; on cancel stop it and raise."""
        try:
            while self.proc.poll() is None:
                tick()
                if cancel.wait(POLL_SEC):
                    self.stop()
                    raise CancelledError("setup cancelled; run it again to resume")
            for thread in self._threads:
                thread.join()
            tick()
            return self.proc.returncode
        finally:
            self.stop()

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_GRACE_SEC)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _child_env(options: SetupOptions) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    if options.endpoint:
        env["HF_ENDPOINT"] = options.endpoint.rstrip("/")
    return env


def _revision_args(revision: str | None) -> list[str]:
    return ["--revision", revision] if revision else []


def _hub_child(
    options: SetupOptions,
    args: list[str],
    *,
    cancel: threading.Event | None = None,
    tick: Callable[[], None] = lambda: None,
    lock_fd: int | None = None,
) -> dict[str, Any]:
    """Run ``python -m lofi_daemon.install.installer ARGS`` and return its JSON answer."""
    child = _Child([sys.executable, "-m", __name__, *args], _child_env(options), lock_fd=lock_fd)
    child.wait(cancel or threading.Event(), tick)
    try:
        answer = json.loads(child.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        answer = {
            "ok": False,
            "error": "\n".join(child.tail) or f"exit status {child.proc.returncode}",
        }
    if not answer.get("ok"):
        action = "read the file list of" if args[0] == "probe" else "download"
        raise LofiError(
            errors.MODEL_DOWNLOAD_FAILED,
            f"cannot {action} {options.repo_id} from {options.hub_url()}: {answer.get('error')}",
        )
    return answer


# --------------------------------------------------------------------------------------------
# Download


def _bytes_on_disk(download_dir: Path, files: Sequence[RemoteFile]) -> int:
    """Bytes of ``files`` already in ``download_dir``: finished files plus partial downloads."""
    done = sum(f.size for f in files if _has_size(download_dir / f.path, f.size))
    partial = download_dir / ".cache" / "huggingface" / "download"
    if partial.is_dir():
        for path in partial.rglob("*.incomplete"):
            with contextlib.suppress(OSError):
                done += path.stat().st_size
    return done


def _download(
    plan: SetupPlan,
    options: SetupOptions,
    report: _Progress,
    cancel: threading.Event,
    lock_fd: int,
) -> int:
    """Fetch the plan's files into the download folder (resuming); return the bytes fetched."""
    total = plan.download_bytes
    target = options.download_dir
    before = _bytes_on_disk(target, plan.files)
    complete = all(_has_size(target / f.path, f.size) for f in plan.files)

    def tick() -> None:
        done = min(total, _bytes_on_disk(target, plan.files))
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
        _hub_child(options, args, cancel=cancel, tick=tick, lock_fd=lock_fd)
    wrong = [f.path for f in plan.files if not _has_size(target / f.path, f.size)]
    if wrong:
        raise LofiError(
            errors.MODEL_DOWNLOAD_FAILED,
            f"the download is incomplete ({', '.join(wrong)} missing or of the wrong size)",
        )
    report("download", total, total, f"downloaded {plan.repo_id} ({format_bytes(total)})")
    return max(0, total - before)


def _has_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def _git_blob_id(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _check_download(manifest: Manifest, plan: SetupPlan, options: SetupOptions) -> None:
    """The exporter hashed every source file: compare with the hub's sha256 (or git blob id)."""
    source = manifest.raw.get("source", {}).get("files", {})
    bad: list[str] = []
    for remote in plan.files:
        local = plan.checkpoint_dir / remote.path
        if remote.sha256 is not None:
            recorded = source.get(remote.path, {}).get("sha256")
            ok = (recorded or _sha256(local)) == remote.sha256
        elif remote.blob_id is not None:
            ok = _git_blob_id(local) == remote.blob_id
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


def _sha256(path: Path) -> str:
    from lofi_daemon.model.manifest import sha256_file

    return sha256_file(path)


# --------------------------------------------------------------------------------------------
# Export, verification, installation


def _export(
    plan: SetupPlan,
    options: SetupOptions,
    out: Path,
    report: _Progress,
    cancel: threading.Event,
    lock_fd: int,
) -> Path:
    """Run ``lofi-export onnx`` into ``out`` in a child process, counting its graphs."""
    out.parent.mkdir(parents=True, exist_ok=True)
    exporter = options.exporter or (sys.executable, "-m", "lofi_export")
    cmd = [*exporter, "--log-level", "INFO", "onnx", str(plan.checkpoint_dir), str(out), "--force"]
    written: list[str] = []
    report("export", 0, EXPORTED_GRAPHS, f"exporting {plan.checkpoint_dir} to ONNX")
    child = _Child(cmd, _child_env(options), lock_fd=lock_fd)

    def tick() -> None:
        for line in child.new_lines():
            graph = _wrote_graph(line)
            if graph is not None:
                written.append(graph)
                report(
                    "export",
                    min(len(written), EXPORTED_GRAPHS),
                    EXPORTED_GRAPHS,
                    f"exported {graph} ({len(written)}/{EXPORTED_GRAPHS})",
                )

    code = child.wait(cancel, tick)
    if code != 0:
        detail = "; ".join(line for line in child.tail if "error" in line.lower()) or "\n".join(
            list(child.tail)[-5:]
        )
        if code == 2 and "export extra" in detail:
            raise LofiError(errors.SETUP_FAILED, detail, remedy=f"Run: {install_hint()}")
        raise LofiError(
            errors.SETUP_FAILED,
            f"the ONNX export failed (exit status {code}): {detail or 'no message'}",
            remedy="Read the message above; rerun the setup after fixing the cause.",
        )
    if not (out / "manifest.json").is_file():
        raise LofiError(errors.SETUP_FAILED, f"the export wrote no manifest in {out}")
    report("export", EXPORTED_GRAPHS, EXPORTED_GRAPHS, f"exported {len(written)} graphs")
    return out


def _wrote_graph(line: str) -> str | None:
    """``lofi-export: wrote denoiser.onnx (…)`` → ``denoiser.onnx``."""
    marker = "wrote "
    at = line.find(marker)
    if at < 0:
        return None
    name = line[at + len(marker) :].split(" ", 1)[0]
    return name if name.endswith(".onnx") else None


def _verify_staged(
    staged: Path, plan: SetupPlan, options: SetupOptions, report: _Progress
) -> Manifest:
    manifest = load_manifest(staged)
    if plan.source == "hub":
        _check_download(manifest, plan, options)
    _verify_files(manifest, report)
    return manifest


def _fsync_tree(root: Path) -> None:
    """Flush the staged files to disk before the rename makes them the installation."""
    if os.name == "nt":  # pragma: no cover - directories cannot be opened on Windows
        return
    for path in [*root.iterdir(), root]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _install(staged: Path, models_dir: Path) -> None:
    """Move the verified folder into place; the old installation goes only after that."""
    _fsync_tree(staged)
    old = models_dir.with_name(f".{models_dir.name}.old")
    _remove_tree(old)
    if models_dir.exists():
        os.replace(models_dir, old)
    os.replace(staged, models_dir)
    _remove_tree(old)


def _remove_tree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# The hub child (python -m lofi_daemon.install.installer probe|download): the only code importing
# huggingface_hub. It prints one JSON object on stdout.


def _probe(repo_id: str, revision: str | None) -> dict[str, Any]:
    from huggingface_hub import HfApi
    from huggingface_hub.utils import filter_repo_objects

    api = HfApi()
    info = api.model_info(repo_id, revision=revision, files_metadata=True, timeout=60)
    siblings = list(
        filter_repo_objects(
            info.siblings or [], allow_patterns=list(ALLOW_PATTERNS), key=lambda s: s.rfilename
        )
    )
    files = [
        {
            "path": s.rfilename,
            "size": int(s.lfs.size if s.lfs else s.size or 0),
            "sha256": s.lfs.sha256 if s.lfs else None,
            "blob_id": s.blob_id,
        }
        for s in siblings
    ]
    fp32: int | None = 0
    for s in siblings:
        if not s.rfilename.endswith(".safetensors"):
            continue
        try:
            meta = api.parse_safetensors_file_metadata(repo_id, s.rfilename, revision=info.sha)
        except Exception as exc:  # noqa: BLE001 - the estimate falls back to the file sizes
            print(f"cannot read the header of {s.rfilename}: {exc}", file=sys.stderr)
            fp32 = None
            break
        fp32 += 4 * sum(t.parameter_count for t in meta.tensors.values())
    return {"revision": info.sha, "files": files, "weights_fp32_bytes": fp32}


def _fetch(repo_id: str, revision: str, local_dir: str) -> dict[str, Any]:
    from huggingface_hub import snapshot_download

    snapshot_download(
        repo_id,
        revision=revision,
        local_dir=local_dir,
        allow_patterns=list(ALLOW_PATTERNS),
        max_workers=4,
    )
    return {}


def _hub_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m lofi_daemon.install.installer")
    sub = parser.add_subparsers(dest="command", required=True)
    probe = sub.add_parser("probe")
    probe.add_argument("repo_id")
    probe.add_argument("--revision", default=None)
    fetch = sub.add_parser("download")
    fetch.add_argument("repo_id")
    fetch.add_argument("revision")
    fetch.add_argument("local_dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        if args.command == "probe":
            answer = _probe(args.repo_id, args.revision)
        else:
            answer = _fetch(args.repo_id, args.revision, args.local_dir)
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the parent as JSON
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps({"ok": True, **answer}))
    return 0


if __name__ == "__main__":
    sys.exit(_hub_main(sys.argv[1:]))
