"""ONNX Runtime sessions of one model directory: which stay resident, which provider ran.

The text and condition encoders are created for one generation and dropped; the denoiser as the
residency policy decides (:mod:`lofi_daemon.pipeline.residency`); the DCAE decoder and the vocoder
stay resident between generations.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.pipeline import placement as node_placement
from lofi_daemon.pipeline import providers as provider_choice


class GraphRunner:
    """Runs one session; inference errors become MODEL_INFERENCE_FAILED. Dropping it frees the session."""

    def __init__(self, graph: str, session: ort.InferenceSession) -> None:
        self.graph = graph
        self.session = session

    def __call__(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return list(self.session.run(None, feeds))
        except Exception as exc:
            raise LofiError(
                errors.MODEL_INFERENCE_FAILED,
                f"{self.graph} failed: {errors.first_line(exc, 300)}",
            ) from exc

    def first(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The graph's first output."""
        return self(feeds)[0]


class SessionPool:
    """Creates sessions on the requested providers and keeps the resident ones.

    With ``provider="auto"`` a provider that fails to start is dropped for the rest of the pool's
    life (one warning, then CPU); an explicit provider is strict.
    """

    def __init__(self, provider: str = "auto", threads: int | None = None) -> None:
        self.provider = provider
        self.threads = threads
        self._providers = provider_choice.requested_providers(provider)
        self._resident: dict[str, ort.InferenceSession] = {}
        self._used: set[str] = set()
        self._load_times: dict[str, float] = {}
        self._lock = threading.Lock()  # guards what other threads read

    def providers_in_use(self) -> list[str]:
        """Providers that actually ran (safe to call from another thread during a generation)."""
        with self._lock:
            return sorted(self._used) or list(self._providers)

    def load_times(self) -> dict[str, float]:
        """Graph name → wall seconds of its most recent session creation (the
        ``InferenceSession`` constructor), resident or not; safe to call from another thread."""
        with self._lock:
            return dict(self._load_times)

    def runner(self, graph: str, path: Path, *, resident: bool = False) -> GraphRunner:
        """A runner for ``graph`` (file ``path``): the resident session, or a new one.

        A resident session is created once and kept; asking for ``graph`` non-resident while it
        is resident reuses the resident session (never two copies of one graph in memory).
        """
        kept = self._resident.get(graph)
        if kept is not None:
            return GraphRunner(graph, kept)
        session = self._create(graph, path)
        if resident:
            with self._lock:
                self._resident[graph] = session
        return GraphRunner(graph, session)

    def is_resident(self, graph: str) -> bool:
        return graph in self._resident

    def resident_graphs(self) -> list[str]:
        """The graphs with a resident session, in load order (safe from another thread)."""
        with self._lock:
            return list(self._resident)

    def drop(self, graph: str) -> bool:
        """Forget the resident session of ``graph`` (freed once no runner holds it); True when
        there was one."""
        with self._lock:
            return self._resident.pop(graph, None) is not None

    def clear(self) -> None:
        """Drop the resident sessions and forget which providers ran."""
        with self._lock:
            self._resident.clear()
            self._used.clear()

    def _create(self, graph: str, path: Path) -> ort.InferenceSession:
        started = time.perf_counter()
        session = provider_choice.create_session(
            path, self._providers, self.threads, strict=self.provider != "auto"
        )
        elapsed = time.perf_counter() - started
        node_placement.check_session(graph, session)
        got = session.get_providers()
        if self._providers[0] not in got:
            self._providers = [got[0]]  # the preferred provider failed once: stop retrying it
        with self._lock:
            self._used.update(got[:1])
            self._load_times[graph] = elapsed
        return session
