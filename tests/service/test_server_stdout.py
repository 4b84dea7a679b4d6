"""A client that stops reading: the daemon's stdout pipe fills, and a termination signal still
stops the daemon (issue 10, item 23). A real ``lofi-daemon serve`` subprocess with the fake
engine; the test never reads its stdout until the daemon has exited."""

from __future__ import annotations

import array
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import IO

import pytest
from daemon_checks import GEN
from daemon_doubles import REPO_ROOT, serve_command, write_fake_models

HANG_GUARD_SEC = 30.0  # not a timing assertion: only how long a hang may take to show


def pending_bytes(stream: IO[bytes]) -> int:
    """Bytes written into a pipe and not read yet."""
    count = array.array("i", [0])
    fcntl.ioctl(stream.fileno(), termios.FIONREAD, count)
    return count[0]


def flood(stdin: IO[bytes], lines: list[bytes]) -> None:
    """Write requests until the daemon stops reading them (or exits)."""
    with contextlib.suppress(OSError, ValueError):
        for line in lines:
            stdin.write(line)
            stdin.flush()


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="pipe fill level (FIONREAD, F_GETPIPE_SZ)"
)
def test_sigterm_stops_a_daemon_whose_stdout_nobody_reads(tmp_path: Path) -> None:
    models = write_fake_models(tmp_path / "models", step_delay=0.05)
    cache = tmp_path / "cache"
    log_file = tmp_path / "daemon.log"
    args = ["--models", str(models), "--cache-dir", str(cache), "--log-file", str(log_file)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.Popen(
        serve_command(*args, fake_engine=True),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=REPO_ROOT,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        # a long generation (its progress keeps the worker writing), then a flood of pings
        generate = {"jsonrpc": "2.0", "id": 0, "method": "generate"}
        lines = [json.dumps({**generate, "params": {**GEN, "infer_steps": 200}}).encode() + b"\n"]
        lines += [b'{"jsonrpc": "2.0", "id": %d, "method": "ping"}\n' % n for n in range(1, 20000)]
        writer = threading.Thread(target=flood, args=(proc.stdin, lines), daemon=True)
        writer.start()
        capacity = fcntl.fcntl(proc.stdout.fileno(), fcntl.F_GETPIPE_SZ)
        deadline = time.monotonic() + HANG_GUARD_SEC
        while pending_bytes(proc.stdout) < capacity - 4096:  # the daemon's writes now block
            assert proc.poll() is None, "the daemon exited early"
            assert time.monotonic() < deadline, "stdout never filled up"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(HANG_GUARD_SEC)
        except subprocess.TimeoutExpired:
            pytest.fail("SIGTERM did not stop a daemon whose stdout is full")
        assert code == 0
        # every complete line is one JSON message; a message cut short at the exit may end it
        lines_out = proc.stdout.read().split(b"\n")
        assert all(json.loads(line)["jsonrpc"] == "2.0" for line in lines_out[:-1])
        assert list(cache.iterdir()) == []  # the cancelled generation left no file behind
        log_text = log_file.read_text(encoding="utf-8")
        assert "stopping (signal)" in log_text and "stdout is not being read" in log_text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        with contextlib.suppress(OSError):
            proc.stdin.close()
