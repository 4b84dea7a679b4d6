"""Test helpers for the daemon: a fake engine that writes real audio, and JSON-RPC clients for an
in-process server and for a ``lofi-daemon serve`` subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
import soundfile as sf

from lofi_daemon import errors
from lofi_daemon.cli.serve import ServeConfig
from lofi_daemon.errors import CancelledError, LofiError
from lofi_daemon.pipeline.engine import GenerationResult
from lofi_daemon.pipeline.params import GenerationParams, seconds_to_frames
from lofi_daemon.pipeline.source import SourceAudio
from lofi_daemon.service.cache import TrackCache
from lofi_daemon.service.server import DaemonServer

REPO_ROOT = Path(__file__).resolve().parents[1]
TESTS_DIR = Path(__file__).resolve().parent
FAKE_SETTINGS = "fake-engine.json"
SAMPLE_RATE = 48000
SUBTYPES = {"pcm16": "PCM_16", "float": "FLOAT"}


@dataclass(frozen=True)
class FakeProgress:
    phase: str
    step: int
    total: int
    percent: float
    eta_sec: float | None


FakeResult = GenerationResult  # the fake engine returns the real result type


@dataclass
class FakeEngine:
    """Implements the Engine API: progress per work unit, cancel between units, a real file.

    ``pause_at`` makes the engine stop after that many units until ``resume`` is set (the
    ``paused`` event tells the test it got there), which makes "while running" deterministic.
    """

    state: str = "ready"
    version: str = "fake-ace-step-1"
    step_delay: float = 0.0
    decode_windows: int = 2
    fail_with: int | None = None
    pause_at: int | None = None
    noisy: bool = False
    calls: list[GenerationParams] = field(default_factory=list)
    sources: list[SourceAudio | None] = field(default_factory=list)
    paused: threading.Event = field(default_factory=threading.Event)
    resume: threading.Event = field(default_factory=threading.Event)
    cancelled_at: int | None = None
    cancel_requested_at: int | None = None
    closed: bool = False

    @property
    def model_version(self) -> str:
        if self.state == "not_installed":
            raise LofiError(errors.MODEL_NOT_FOUND, "no manifest")
        return self.version

    def status(self) -> dict[str, Any]:
        return {
            "status": self.state,
            "message": {"ready": "ok", "not_installed": "no models in the test folder"}.get(
                self.state, "broken model file"
            ),
            "model_version": self.version if self.state == "ready" else None,
            "providers": ["CPUExecutionProvider"] if self.state == "ready" else [],
        }

    def close(self) -> None:
        self.closed = True

    def generate(
        self,
        params: GenerationParams,
        out_path: Path,
        *,
        progress: Callable[[FakeProgress], None] | None = None,
        cancel: threading.Event | None = None,
        source: SourceAudio | None = None,
    ) -> FakeResult:
        self.calls.append(params)
        self.sources.append(source)
        if self.noisy:
            print("stray print from the engine")
            os.write(1, b"stray native write\n")
        if self.fail_with is not None:
            raise LofiError(self.fail_with, "the transformer file is corrupt")
        seed = params.seed if params.seed is not None else 1234
        total = 1 + params.infer_steps + self.decode_windows
        started = time.monotonic()
        for unit in range(total):
            if cancel is not None and cancel.is_set():
                self.cancelled_at = unit
                raise CancelledError()
            if self.step_delay:
                time.sleep(self.step_delay)
            if self.pause_at is not None and unit + 1 == self.pause_at:
                self.paused.set()
                self.resume.wait(timeout=30)
                if cancel is not None and cancel.is_set():
                    self.cancel_requested_at = unit + 1
            phase = (
                "encode" if unit == 0 else "diffusion" if unit <= params.infer_steps else "decode"
            )
            if progress is not None:
                done = unit + 1
                progress(FakeProgress(phase, done, total + 1, 100.0 * done / (total + 1), 0.1))
        audio = self._audio(params.duration_sec, seed)
        latents = self._latents(params.duration_sec, seed)
        if params.task == "extend" and source is not None and source.latents is not None:
            latents, audio = self._extended(params, source.latents, seed)
            params = replace(params, duration_sec=len(audio) / SAMPLE_RATE)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_path.with_name(f".{out_path.name}.partial")
        subtype = {"wav": SUBTYPES[params.wav_subtype], "flac": "PCM_16", "ogg": "VORBIS"}
        sf.write(
            tmp, audio, SAMPLE_RATE, subtype=subtype[params.format], format=params.format.upper()
        )
        os.replace(tmp, out_path)
        if progress is not None:
            progress(FakeProgress("decode", total + 1, total + 1, 100.0, 0.0))
        elapsed = time.monotonic() - started
        return FakeResult(
            path=out_path,
            duration_sec=len(audio) / SAMPLE_RATE,
            sample_rate=SAMPLE_RATE,
            channels=2,
            seed=seed,
            params=params,
            model_version=self.version,
            timings={"encode": 0.0, "diffusion": elapsed, "decode": 0.0, "total": elapsed},
            providers=["CPUExecutionProvider"],
            latents=latents,
        )

    def _extended(
        self, params: GenerationParams, source: np.ndarray, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """An extend of saved latents as the real engine shapes it: the source frames with
        ``extend_left``/``extend_right`` frames around them, and audio of as many frames
        (``frames·4096`` samples at 44.1 kHz, at 48 kHz)."""
        rng = np.random.default_rng(seed)
        left, right = (
            seconds_to_frames(params.extend_left),
            seconds_to_frames(params.extend_right),
        )
        pad = (source.shape[0], source.shape[1], source.shape[2])
        latents = np.concatenate(
            [
                rng.standard_normal((*pad, left), dtype=np.float32),
                source.astype(np.float32),
                rng.standard_normal((*pad, right), dtype=np.float32),
            ],
            axis=-1,
        )
        frames = latents.shape[-1]
        audio = self._audio(frames * 4096 / 44100, seed)
        return latents, audio

    @staticmethod
    def _latents(duration_sec: float, seed: int) -> np.ndarray:
        frames = max(1, int(duration_sec * 44100 / 4096))
        return np.random.default_rng(seed).standard_normal((1, 8, 16, frames), dtype=np.float32)

    @staticmethod
    def _audio(duration_sec: float, seed: int) -> np.ndarray:
        frames = round(duration_sec * SAMPLE_RATE)
        rng = np.random.default_rng(seed)
        t = np.arange(frames, dtype=np.float32) / SAMPLE_RATE
        tone = 0.2 * np.sin(2 * np.pi * (220 + rng.integers(0, 220)) * t)
        return np.stack([tone, tone * 0.8], axis=1).astype(np.float32)


def fake_engine_factory(config: ServeConfig) -> FakeEngine:
    """Engine factory for subprocesses: ``<models>/fake-engine.json`` holds the FakeEngine
    settings; without it the engine reports the models as not installed."""
    settings_file = config.models_dir / FAKE_SETTINGS
    if not settings_file.is_file():
        return FakeEngine(state="not_installed")
    return FakeEngine(**json.loads(settings_file.read_text(encoding="utf-8")))


def write_fake_models(models_dir: Path, **settings: Any) -> Path:
    models_dir.mkdir(parents=True, exist_ok=True)
    (models_dir / FAKE_SETTINGS).write_text(json.dumps(settings), encoding="utf-8")
    return models_dir


# -- clients ---------------------------------------------------------------------------------


class RpcClient:
    """Reads every stdout line on a thread and keeps all messages in arrival order."""

    def __init__(self, stdin: IO[bytes], stdout: IO[bytes]) -> None:
        self._stdin = stdin
        self._next_id = 0
        self._cond = threading.Condition()
        self.messages: list[dict[str, Any]] = []
        self.bad_lines: list[bytes] = []
        self.eof = False
        self._reader = threading.Thread(target=self._read, args=(stdout,), daemon=True)
        self._reader.start()

    def _read(self, stdout: IO[bytes]) -> None:
        for line in iter(stdout.readline, b""):
            try:
                message = json.loads(line.decode("utf-8"))
            except ValueError:
                message = None
            with self._cond:
                if isinstance(message, dict):
                    self.messages.append(message)
                else:
                    self.bad_lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self.eof = True
            self._cond.notify_all()

    def send_line(self, data: bytes) -> None:
        self._stdin.write(data if data.endswith(b"\n") else data + b"\n")
        self._stdin.flush()

    def send(self, message: Any) -> None:
        self.send_line(json.dumps(message).encode("utf-8"))

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def request(self, method: str, params: Any = None, *, request_id: Any = None) -> Any:
        """Send a request and return its id (without waiting)."""
        request_id = self.new_id() if request_id is None else request_id
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        return request_id

    def notify(self, method: str, params: Any = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)

    def call(self, method: str, params: Any = None, *, timeout: float = 15.0) -> dict[str, Any]:
        """Send a request and return its whole response message."""
        return self.response(self.request(method, params), timeout=timeout)

    def result(self, method: str, params: Any = None, *, timeout: float = 15.0) -> Any:
        reply = self.call(method, params, timeout=timeout)
        assert "error" not in reply, reply
        return reply["result"]

    def response(self, request_id: Any, *, timeout: float = 15.0) -> dict[str, Any]:
        return self.wait_for(lambda m: "method" not in m and m.get("id") == request_id, timeout)

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15.0
    ) -> dict[str, Any]:
        """The first message (from the start) that matches ``predicate``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for message in self.messages:
                    if predicate(message):
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.eof:
                    raise AssertionError(
                        f"no matching message within {timeout}s; got {self.messages[-5:]}"
                    )
                self._cond.wait(remaining)

    def wait_event(self, method: str, track_id: str, timeout: float = 15.0) -> dict[str, Any]:
        message = self.wait_for(
            lambda m: m.get("method") == method and m["params"].get("track_id") == track_id,
            timeout,
        )
        return message["params"]

    def terminal(self, track_id: str, timeout: float = 15.0) -> dict[str, Any]:
        """The terminal notification (complete, error or cancelled) of a track."""
        ends = ("generation_complete", "generation_error", "generation_cancelled")
        return self.wait_for(
            lambda m: m.get("method") in ends and m["params"].get("track_id") == track_id, timeout
        )

    def events(self, track_id: str, method: str | None = None) -> list[dict[str, Any]]:
        with self._cond:
            return [
                m
                for m in self.messages
                if "method" in m
                and m["params"].get("track_id") == track_id
                and (method is None or m["method"] == method)
            ]

    def index(self, message: dict[str, Any]) -> int:
        with self._cond:
            return next(i for i, m in enumerate(self.messages) if m is message)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._stdin.close()

    def wait_eof(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self.eof:
                remaining = deadline - time.monotonic()
                assert remaining > 0, "stdout did not close"
                self._cond.wait(remaining)


class InProcessDaemon:
    """A :class:`DaemonServer` on a thread, talking over OS pipes."""

    def __init__(self, engine: Any, cache: TrackCache, **kwargs: Any) -> None:
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        self._server_out = os.fdopen(out_w, "wb")
        self.server = DaemonServer(
            engine, cache, stdin=os.fdopen(in_r, "rb"), stdout=self._server_out, **kwargs
        )
        self.exit_code: int | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self.client = RpcClient(os.fdopen(in_w, "wb"), os.fdopen(out_r, "rb"))

    def _run(self) -> None:
        try:
            self.exit_code = self.server.run()
        finally:
            self._server_out.close()

    def stop(self, timeout: float = 15.0) -> int | None:
        """Close the daemon's input and wait for it to end; once it has, also for the client to
        have read everything it wrote (so a test that looks at the messages next sees them all)."""
        self.client.close()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.client.wait_eof(timeout)
        return self.exit_code


# -- subprocess ------------------------------------------------------------------------------

_FAKE_SERVE_CODE = (
    "import sys; sys.path.insert(0, {tests!r}); "
    "from daemon_doubles import fake_engine_factory; from lofi_daemon.cli.serve import serve_main; "
    "sys.exit(serve_main(sys.argv[1:], engine_factory=fake_engine_factory))"
)


def serve_command(*args: str, fake_engine: bool = False) -> list[str]:
    """The command line of ``lofi-daemon serve``: ``python -m lofi_daemon serve`` runs the same
    ``main()`` as the console script, without needing the package installed. ``fake_engine``
    runs ``serve_main`` with :class:`FakeEngine` instead of the real engine."""
    if fake_engine:
        return [sys.executable, "-c", _FAKE_SERVE_CODE.format(tests=str(TESTS_DIR)), *args]
    return [sys.executable, "-m", "lofi_daemon", "serve", *args]


class DaemonProcess:
    """A daemon subprocess with a client attached; stderr goes to ``stderr_path``."""

    def __init__(
        self,
        args: list[str],
        *,
        stderr_path: Path,
        fake_engine: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        env = {**os.environ, **(env or {})}
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])]
        )
        self._stderr = open(stderr_path, "wb")  # noqa: SIM115 - closed in wait()
        self.stderr_path = stderr_path
        self.proc = subprocess.Popen(
            serve_command(*args, fake_engine=fake_engine),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=REPO_ROOT,
            env=env,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.client = RpcClient(self.proc.stdin, self.proc.stdout)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._stderr.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")
