"""Which session stays loaded between generations: the residency policy (``keep_loaded``).

The big graph — the v1 ``denoiser``, the 1.5 ``dit`` — costs seconds to tens of seconds to load,
so reloading it for every track is what makes back-to-back generations and the radio slow. The
policy (docs/residency.md) per engine:

- ``false``: load, run, drop (the graph lives for one generation).
- ``true``: keep it loaded from its first use until the engine is closed or reloaded.
- ``auto`` (the daemon's default): keep it after a generation while the free memory where the
  sessions live (:mod:`.memory`: host RAM, or device memory for CUDA), measured then with the
  graph still loaded, covers the *working set of the next generation*; drop it after
  ``idle_timeout_sec`` without a generation, or before another graph is loaded when the free
  memory does not cover that graph plus the headroom. An unknown free memory never fits.

Estimates (in bytes, from the files on disk, no session inspected):

- a graph's size: its ``.onnx`` file plus its external-data file (onnxruntime holds the weights
  in memory once, so this is close to what the session needs for its initialisers);
- the working set of the next generation: the sizes of every graph of the model folder that is
  not resident now (the encoders it loads and drops) plus ``headroom_bytes`` (default 1 GiB) for
  activations and the allocator's slack.

The decoder graphs (v1 ``dcae_decoder`` and ``vocoder``, 1.5 ``vae_decoder``) stay resident
under every mode as before; the policy only decides about the ``kept`` graph.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.pipeline.memory import MemoryProbe, gib, probe_for

if TYPE_CHECKING:  # the settings part is imported by the command line, without onnxruntime
    from lofi_daemon.pipeline.sessions import GraphRunner, SessionPool

KEEP_LOADED_MODES: Final = ("auto", "true", "false")
DEFAULT_IDLE_TIMEOUT_SEC: Final = 600.0
DEFAULT_HEADROOM_BYTES: Final = 1024**3

#: ``schedule(delay_sec, callback) -> cancel``: runs ``callback`` once after ``delay_sec``.
Scheduler = Callable[[float, Callable[[], None]], Callable[[], None]]


def keep_loaded_mode(value: object) -> str:
    """``keep_loaded`` as one of :data:`KEEP_LOADED_MODES` (a bool is ``true``/``false``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.lower() in KEEP_LOADED_MODES:
        return value.lower()
    raise LofiError(
        errors.INVALID_PARAMETER,
        f"keep_loaded must be one of {', '.join(KEEP_LOADED_MODES)} (or a boolean), not {value!r}",
    )


@dataclass(frozen=True)
class ResidencyConfig:
    """The policy's settings (module doc)."""

    mode: str = "auto"
    idle_timeout_sec: float = DEFAULT_IDLE_TIMEOUT_SEC
    headroom_bytes: int = DEFAULT_HEADROOM_BYTES

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", keep_loaded_mode(self.mode))
        if not self.idle_timeout_sec > 0:
            raise LofiError(
                errors.INVALID_PARAMETER,
                f"the idle unload time must be above 0 seconds, not {self.idle_timeout_sec}",
            )
        if self.headroom_bytes < 0:
            raise LofiError(errors.INVALID_PARAMETER, "the memory headroom cannot be negative")

    @classmethod
    def of(cls, value: object) -> ResidencyConfig:
        """``value`` itself when a config, else a config of mode ``value`` (bool or string)."""
        return value if isinstance(value, ResidencyConfig) else cls(mode=keep_loaded_mode(value))


class GraphFiles(Protocol):
    """What a manifest (v1 or 1.5) tells about its graphs."""

    @property
    def root(self) -> Path: ...

    @property
    def graphs(self) -> Mapping[str, Any]: ...

    def graph_path(self, graph: str) -> Path: ...


def graph_bytes(manifest: GraphFiles, graph: str) -> int:
    """The graph's ``.onnx`` plus its external data on disk (0 for a file that is missing)."""
    files = [manifest.graph_path(graph)]
    external = getattr(manifest.graphs[graph], "external_data", None)
    if external:
        files.append(manifest.root / external)
    return sum(f.stat().st_size for f in files if f.is_file())


def thread_timer(delay: float, callback: Callable[[], None]) -> Callable[[], None]:
    """The default :data:`Scheduler`: a daemon ``threading.Timer``."""
    timer = threading.Timer(delay, callback)
    timer.daemon = True
    timer.start()
    return timer.cancel


class Residency:
    """The policy over one engine's :class:`SessionPool`; the engine calls it under its own
    generation lock (every method but :meth:`status`, which any thread may call).

    Args:
        pool: the engine's sessions.
        config: mode, idle timeout, headroom.
        kept: the graph the policy decides about (``denoiser``, ``dit``).
        on_idle: called by the timer when the idle timeout may have passed; the engine takes
            its lock (skipping when a generation runs) and calls :meth:`drop_if_idle`.
        probe: free memory (default: chosen from the provider that ran, :func:`probe_for`).
        clock: monotonic seconds.
        schedule: the idle timer (default :func:`thread_timer`).
    """

    def __init__(
        self,
        pool: SessionPool,
        config: ResidencyConfig,
        kept: str,
        on_idle: Callable[[], None],
        *,
        probe: MemoryProbe | None = None,
        clock: Callable[[], float] = time.monotonic,
        schedule: Scheduler = thread_timer,
    ) -> None:
        self.pool = pool
        self.config = config
        self.kept = kept
        self._on_idle = on_idle
        self._probe = probe
        self._clock = clock
        self._schedule = schedule
        self._cancel_timer: Callable[[], None] | None = None
        self._lock = threading.Lock()  # guards what status() reads
        self._bytes: dict[str, int] = {}  # resident graph -> estimated size
        self._sizes: dict[str, int] = {}  # every graph of the folder -> size, at the last load
        self._reason = ""  # why `kept` is resident
        self._last_used: float | None = None
        self._last_drop: dict[str, str] | None = None

    # -- during a generation -------------------------------------------------------------------
    def runner(self, graph: str, manifest: GraphFiles, *, resident: bool = False) -> GraphRunner:
        """A runner for ``graph``; ``resident`` for the graphs that always stay (decoders).

        Before a session is created under ``auto``, the kept graph is dropped when the free
        memory does not cover the new graph plus the headroom.
        """
        if not self.pool.is_resident(graph):
            size = graph_bytes(manifest, graph)
            self._make_room(graph, size)
            if resident:
                with self._lock:
                    self._bytes[graph] = size
        return self.pool.runner(graph, manifest.graph_path(graph), resident=resident)

    def kept_runner(self, manifest: GraphFiles) -> GraphRunner:
        """The runner of the kept graph: resident for this generation unless mode ``false``."""
        if self.config.mode == "false":
            return self.runner(self.kept, manifest)
        loaded = self.pool.is_resident(self.kept)
        runner = self.runner(self.kept, manifest, resident=True)
        if not loaded:
            self._sizes = {g: graph_bytes(manifest, g) for g in manifest.graphs}
        with self._lock:
            self._reason = "in use by the running generation"
            self._last_used = None
        self._cancel()
        return runner

    def after_generation(self) -> None:
        """Keep or drop the kept graph after a generation (whether it succeeded or not)."""
        if not self.pool.is_resident(self.kept):
            return
        if self.config.mode == "true":
            with self._lock:
                self._reason = "keep_loaded = true"
            return
        needs = self.working_set()
        free = self._free()
        if free is None or free < needs:
            shown = "unknown" if free is None else gib(free)
            self.drop(f"does not fit: {shown} free, the next generation needs {gib(needs)}")
            return
        with self._lock:
            self._reason = f"fits: {gib(free)} free, the next generation needs {gib(needs)}"
            self._last_used = self._clock()
        self._arm(self.config.idle_timeout_sec)

    def working_set(self) -> int:
        """The next generation's estimated working set: every graph not resident now (kept
        aside) plus the headroom."""
        loaded = set(self.pool.resident_graphs()) | {self.kept}
        transient = sum(size for g, size in self._sizes.items() if g not in loaded)
        return transient + self.config.headroom_bytes

    def drop_if_idle(self) -> None:
        """Drop the kept graph when idle for the timeout, else re-arm the timer (auto only)."""
        if self.config.mode != "auto" or not self.pool.is_resident(self.kept):
            return
        last = self._last_used
        if last is None:  # a generation is using it
            return
        left = last + self.config.idle_timeout_sec - self._clock()
        if left <= 0:
            self.drop(f"idle {self.config.idle_timeout_sec:g} s")
        else:
            self._arm(left)

    def drop(self, reason: str) -> None:
        """Drop the kept graph's session and remember why."""
        if self.pool.drop(self.kept):
            with self._lock:
                self._last_drop = {"graph": self.kept, "reason": reason}
                self._bytes.pop(self.kept, None)
                self._last_used = None
        self._cancel()

    def clear(self) -> None:
        """Drop every session (engine reload or close)."""
        self._cancel()
        self.pool.clear()
        with self._lock:
            self._bytes.clear()
            self._last_used = None

    # -- status --------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """``{"mode", "idle_unload_sec", "resident": [...], "last_drop"}`` (docs/residency.md)."""
        now = self._clock()
        with self._lock:
            resident = []
            for graph in self.pool.resident_graphs():
                entry: dict[str, Any] = {"graph": graph, "bytes": self._bytes.get(graph)}
                if graph == self.kept:
                    entry["reason"] = self._reason
                    if self.config.mode == "auto" and self._last_used is not None:
                        left = self._last_used + self.config.idle_timeout_sec - now
                        entry["idle_drop_in_s"] = max(0, round(left))
                else:
                    entry["reason"] = "always resident (decoder)"
                resident.append(entry)
            return {
                "mode": self.config.mode,
                "idle_unload_sec": self.config.idle_timeout_sec,
                "resident": resident,
                "last_drop": dict(self._last_drop) if self._last_drop else None,
            }

    # -- internals -----------------------------------------------------------------------------
    def _free(self) -> int | None:
        probe = self._probe or probe_for(self.pool.providers_in_use())
        return probe.free_bytes()

    def _make_room(self, graph: str, size: int) -> None:
        if self.config.mode != "auto" or graph == self.kept:
            return
        if not self.pool.is_resident(self.kept):
            return
        needs = size + self.config.headroom_bytes
        free = self._free()
        if free is None or free < needs:
            shown = "unknown" if free is None else gib(free)
            self.drop(f"memory short: {shown} free, loading {graph} needs {gib(needs)}")

    def _arm(self, delay: float) -> None:
        self._cancel()
        self._cancel_timer = self._schedule(delay, self._on_idle)

    def _cancel(self) -> None:
        if self._cancel_timer is not None:
            self._cancel_timer()
            self._cancel_timer = None
