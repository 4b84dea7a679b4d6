"""Child processes of an installation: started, read line by line, stopped at once on cancel.

The daemon never imports torch or huggingface_hub: the hub is reached from
``python -m lofi_daemon.install.hub`` (:func:`run_hub`) and the export runs in a
``python -m lofi_export`` child (:mod:`.export_step`). Either can be killed when the user cancels.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final

from lofi_daemon import errors
from lofi_daemon.errors import CancelledError, LofiError
from lofi_daemon.install.options import InstallOptions
from lofi_daemon.install.progress import CANCELLED_MESSAGE

log = logging.getLogger(__name__)

POLL_SEC: Final = 0.2
STOP_GRACE_SEC: Final = 10.0
STDERR_TAIL_LINES: Final = 20
HUB_MODULE: Final = "lofi_daemon.install.hub"


class Child:
    """A running child process whose output lines are collected by two reader threads.

    stdout lines are queued for :meth:`new_lines` (and kept in :attr:`stdout_lines`); the last
    stderr lines are kept in :attr:`tail` for error messages.
    """

    def __init__(self, cmd: Sequence[str], env: dict[str, str], lock_fd: int | None) -> None:
        log.debug("running %s", " ".join(cmd))
        # The child inherits the install lock, so an orphaned child still holds it.
        pass_fds = (lock_fd,) if lock_fd is not None and os.name != "nt" else ()
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
                pass_fds=pass_fds,
            )
        except OSError as exc:
            raise LofiError(
                errors.SETUP_FAILED,
                f"cannot start {cmd[0]}: {exc.strerror or exc}",
                remedy="Check the Python environment of lofi.nvim (rerun its build step).",
            ) from exc
        self._lines: queue.Queue[str] = queue.Queue()
        self.stdout_lines: list[str] = []
        self.tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
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
            log.debug("child: %s", line)

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.stdout_lines.append(line)
            self._lines.put(line)

    def new_lines(self) -> list[str]:
        """The stdout lines read since the last call."""
        out: list[str] = []
        with contextlib.suppress(queue.Empty):
            while True:
                out.append(self._lines.get_nowait())
        return out

    def wait(self, cancel: threading.Event, tick: Callable[[], None]) -> int:
        """Wait for the exit, calling ``tick`` every poll and once after the output is read.

        Raises:
            CancelledError: ``cancel`` was set; the child has been stopped.
        """
        try:
            while self.proc.poll() is None:
                tick()
                if cancel.wait(POLL_SEC):
                    self.stop()
                    raise CancelledError(CANCELLED_MESSAGE)
            for thread in self._threads:
                thread.join()
            tick()
            return self.proc.returncode
        finally:
            self.stop()

    def stop(self) -> None:
        """Terminate the child (kill it after a grace period) and reap it."""
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_GRACE_SEC)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def child_env(options: InstallOptions) -> dict[str, str]:
    """The environment of a child: unbuffered, no hub progress bars or telemetry."""
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    if options.endpoint:
        env["HF_ENDPOINT"] = options.endpoint.rstrip("/")
    return env


def run_hub(
    options: InstallOptions,
    args: list[str],
    *,
    cancel: threading.Event | None = None,
    tick: Callable[[], None] = lambda: None,
    lock_fd: int | None = None,
    resumable: bool = False,
) -> dict[str, Any]:
    """Run ``python -m lofi_daemon.install.hub ARGS`` and return its JSON answer.

    ``resumable``: part of the download is on disk, so the remedy may promise a resume.

    Raises:
        LofiError: MODEL_DOWNLOAD_FAILED when the child reports a failure or no answer: one line
            (the hub's reason, no traceback) and a remedy naming the offline route.
        CancelledError: ``cancel`` was set.
    """
    child = Child([sys.executable, "-m", HUB_MODULE, *args], child_env(options), lock_fd=lock_fd)
    child.wait(cancel or threading.Event(), tick)
    answer: Any = None
    lines = [line for line in child.stdout_lines if line.strip()]
    with contextlib.suppress(IndexError, json.JSONDecodeError):
        answer = json.loads(lines[-1])
    if not isinstance(answer, dict):
        last = [line.strip() for line in child.tail if line.strip()]
        answer = {
            "ok": False,
            "error": last[-1] if last else f"exit status {child.proc.returncode}",
        }
    if not answer.get("ok"):
        action = "read the file list of" if args[0] == "probe" else "download"
        error = " ".join(str(answer.get("error")).split())
        raise LofiError(
            errors.MODEL_DOWNLOAD_FAILED,
            f"cannot {action} {options.repo_id} from {options.hub_url()}: {error}",
            remedy=hub_remedy(resumable, options),
        )
    return answer


def hub_remedy(resumable: bool, options: InstallOptions | None = None) -> str:
    """What to do when the hub fails: retry (resuming only if something was downloaded) or go
    offline with a checkpoint folder copied by other means."""
    spec = (options or InstallOptions()).spec
    retry = "run the setup again" + ("; the download resumes where it stopped" if resumable else "")
    return (
        f"Check the network and {retry}. Offline: copy the checkpoint folder ({spec.repo_id}) "
        f"and run lofi-daemon setup {spec.name} --checkpoint DIR (in Neovim: :Lofi setup "
        f"{spec.name} checkpoint=DIR)."
    )


def revision_args(revision: str | None) -> list[str]:
    return ["--revision", revision] if revision else []
