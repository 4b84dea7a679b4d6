"""ONNX Runtime sessions of one model directory: which stay resident, which provider ran.

The text and condition encoders are created for one generation and dropped; the denoiser too,
unless ``keep_loaded``; the DCAE decoder and the vocoder stay resident between generations.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
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
        self._lock = threading.Lock()  # guards what providers_in_use() reads

    def providers_in_use(self) -> list[str]:
        """Providers that actually ran (safe to call from another thread during a generation)."""
        with self._lock:
            return sorted(self._used) or list(self._providers)

    def runner(self, graph: str, path: Path, *, resident: bool = False) -> GraphRunner:
        """A runner for ``graph`` (file ``path``): the resident session, or a new one."""
        if not resident:
            return GraphRunner(graph, self._create(path))
        if graph not in self._resident:
            self._resident[graph] = self._create(path)
        return GraphRunner(graph, self._resident[graph])

    def clear(self) -> None:
        """Drop the resident sessions and forget which providers ran."""
        self._resident.clear()
        with self._lock:
            self._used.clear()

    def _create(self, path: Path) -> ort.InferenceSession:
        session = provider_choice.create_session(
            path, self._providers, self.threads, strict=self.provider != "auto"
        )
        got = session.get_providers()
        if self._providers[0] not in got:
            self._providers = [got[0]]  # the preferred provider failed once: stop retrying it
        with self._lock:
            self._used.update(got[:1])
        return session
