"""One engine per backend, which backend a request runs on, and ``backends.list``'s entries.

The daemon starts with the v1 engine (``lofi-daemon serve`` builds it); the engine of every other
backend (:data:`lofi_daemon.model.backends.BACKENDS`) is made on first use over its own model
folder (:func:`~lofi_daemon.model.backends.backend_models_dir`, beside the v1 one) with the v1
engine's provider, threads and residency policy (``keep_loaded``), and kept. Making an engine loads nothing: the
engines read their model folder when asked for their status or a generation.

A request without a ``backend`` runs on the configured one (``serve --backend``), else on the
only backend whose models are ready, else on ``ace-step``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model import backends
from lofi_daemon.paths import default_models_dir
from lofi_daemon.pipeline.backend_params import check_backend_name
from lofi_daemon.pipeline.params import accepted_fields
from lofi_daemon.service.job_types import GenerationEngine
from lofi_daemon.service.sources import SOURCE_PARAMS

log = logging.getLogger(__name__)

#: ``generate`` params beside the GenerationParams fields, per backend (``backends.list``).
EXTRA_PARAMS: Final[dict[str, tuple[str, ...]]] = {
    backends.V1.name: ("priority", *SOURCE_PARAMS, "variant"),
    backends.TURBO.name: ("priority", "metadata"),
}

#: Makes the engine of a backend (its name, its model folder, the v1 engine to copy settings from).
EngineFactory = Callable[[str, Path, GenerationEngine], GenerationEngine]


def default_factory(name: str, folder: Path, base: GenerationEngine) -> GenerationEngine:
    """The engine of ``name`` over ``folder``, with ``base``'s provider, threads and residency."""
    if name != backends.TURBO.name:
        raise LofiError(errors.INVALID_BACKEND, f"no engine for the backend {name!r}")
    from lofi_daemon.turbo.engine import TurboEngine  # its import stays out of `serve`'s start

    return TurboEngine(
        folder,
        provider=getattr(base, "provider", "auto"),
        threads=getattr(base, "threads", None),
        keep_loaded=getattr(base, "keep_loaded", False),
    )


def residency_of(engines: list[tuple[str, GenerationEngine]]) -> dict[str, dict[str, Any]]:
    """Name → ``engine.residency_status()`` for the engines that have one (never raises)."""
    shown: dict[str, dict[str, Any]] = {}
    for name, engine in engines:
        method = getattr(engine, "residency_status", None)
        if not callable(method):
            continue
        try:
            shown[name] = method()
        except Exception:
            log.exception("the %s engine residency status failed", name)
    return shown


class BackendEngines:
    """The engine of each backend.

    Args:
        v1: the v1 engine (the daemon's ``Engine`` or a test double).
        models_dir: the v1 model folder (default: ``v1.models_dir``, else the user default);
            the other backends' folders are derived from it.
        default: the configured backend (``serve --backend``); None: see the module doc.
        factory: makes the other backends' engines (tests pass doubles).
    """

    def __init__(
        self,
        v1: GenerationEngine,
        *,
        models_dir: Path | None = None,
        default: str | None = None,
        factory: EngineFactory | None = None,
    ) -> None:
        self.v1 = v1
        if models_dir is None:
            engine_dir = getattr(v1, "models_dir", None)
            models_dir = Path(engine_dir) if engine_dir is not None else default_models_dir()
        self.models_dir = Path(models_dir)
        self.default = check_backend_name(default) if default is not None else None
        self._factory = factory or default_factory
        self._engines: dict[str, GenerationEngine] = {backends.V1.name: v1}
        self._failed: dict[str, str] = {}  # backend -> why its engine cannot be made
        self._lock = threading.Lock()

    # -- engines -------------------------------------------------------------------------------

    def folder(self, name: str) -> Path:
        """The model folder of the backend ``name``."""
        if name == backends.V1.name:
            engine_dir = getattr(self.v1, "models_dir", None)
            return Path(engine_dir) if engine_dir is not None else self.models_dir
        return backends.backend_models_dir(name, self.models_dir)

    def engine(self, name: str) -> GenerationEngine:
        """The engine of the backend ``name`` (made on first use).

        Raises:
            LofiError: INVALID_BACKEND for an unknown name; MODEL_LOAD_FAILED when the backend's
                runtime cannot be loaded.
        """
        check_backend_name(name)
        with self._lock:
            engine = self._engines.get(name)
            if engine is not None:
                return engine
            if name in self._failed:  # tried before: not again until reload()
                raise LofiError(errors.MODEL_LOAD_FAILED, self._failed[name])
            try:
                engine = self._factory(name, self.folder(name), self.v1)
            except LofiError:
                raise
            except Exception as exc:  # an import error of an optional runtime, most likely
                message = f"the {name} runtime cannot be loaded: {type(exc).__name__}: {exc}"
                self._failed[name] = message
                log.exception("cannot make the %s engine", name)
                raise LofiError(errors.MODEL_LOAD_FAILED, message) from exc
            self._engines[name] = engine
            return engine

    def use(self, name: str, engine: GenerationEngine) -> None:
        """Run the backend ``name`` (not v1: that is the daemon's engine) on ``engine`` from now
        on, instead of making one."""
        if check_backend_name(name) == backends.V1.name:
            raise ValueError("the v1 engine is the daemon's own")
        with self._lock:
            self._engines[name] = engine
            self._failed.pop(name, None)

    def status(self, name: str) -> dict[str, Any]:
        """The backend's engine status; never raises (a failure is an "error" state)."""
        try:
            state = self.engine(name).status()
        except LofiError as exc:
            return {"status": "error", "message": exc.message, "model_version": None}
        except Exception as exc:
            log.exception("the %s engine status failed", name)
            return {"status": "error", "message": f"{type(exc).__name__}: {exc}"}
        return state if isinstance(state, dict) else {"status": "error", "message": "bad status"}

    def residency(self) -> dict[str, dict[str, Any]]:
        """Backend → what its engine keeps loaded and why (``status``), for the engines made so
        far that have a residency policy (:mod:`lofi_daemon.pipeline.residency`)."""
        with self._lock:
            engines = list(self._engines.items())
        return residency_of(engines)

    def resolve(self, requested: object = None) -> str:
        """The backend a request runs on: ``requested``, else the configured one, else the only
        ready one, else ``ace-step``.

        Raises:
            LofiError: INVALID_BACKEND when ``requested`` is not a known backend.
        """
        if requested is not None:
            return check_backend_name(requested)
        if self.default is not None:
            return self.default
        ready = [name for name in backends.NAMES if self.status(name).get("status") == "ready"]
        return ready[0] if len(ready) == 1 else backends.DEFAULT_BACKEND

    # -- backends.list -------------------------------------------------------------------------

    def describe(
        self, probe: Callable[[list[str]], list[str]] | None = None
    ) -> list[dict[str, Any]]:
        """One ``backends.list`` entry per known backend; ``probe`` keeps the providers that
        really run (``pipeline.providers.working_providers``)."""
        states = {name: self.status(name) for name in backends.NAMES}
        ready = [name for name, state in states.items() if state.get("status") == "ready"]
        default = self.default or (ready[0] if len(ready) == 1 else backends.DEFAULT_BACKEND)
        return [
            self._entry(name, states[name], default=name == default, probe=probe)
            for name in backends.NAMES
        ]

    def _entry(
        self,
        name: str,
        state: dict[str, Any],
        *,
        default: bool,
        probe: Callable[[list[str]], list[str]] | None,
    ) -> dict[str, Any]:
        info = backends.BACKENDS[name]
        providers = list(state.get("providers") or [])
        entry: dict[str, Any] = {
            "name": name,
            "title": info.title,
            "status": state.get("status", "error"),
            "message": state.get("message", ""),
            "model_version": state.get("model_version"),
            "models_dir": self._shown_folder(name),
            # Only providers that really run: an engine lists the requested ones until a session
            # has run, and onnxruntime-gpu requests CUDA on machines without a GPU.
            "providers": probe(providers) if probe is not None else providers,
            "min_duration_sec": info.min_duration_sec,
            "max_duration_sec": info.max_duration_sec,
            "sample_rate": info.sample_rate,
            "params": [*accepted_fields(name), *EXTRA_PARAMS.get(name, ())],
            "default": default,
        }
        if name == backends.V1.name:
            # LoRA variants installed beside the model (`setup --lora`), for `variant`.
            entry["variants"] = self._variant_names()
        return entry

    def _shown_folder(self, name: str) -> str | None:
        """The model folder shown for ``name``; None for a v1 engine without one (a double)."""
        if name == backends.V1.name and getattr(self.v1, "models_dir", None) is None:
            return None
        return str(self.folder(name))

    def _variant_names(self) -> list[str]:
        models_dir = getattr(self.v1, "models_dir", None)
        if models_dir is None:
            return []
        from lofi_daemon.model.variants import list_variants

        return [str(v["name"]) for v in list_variants(Path(models_dir))]

    # -- lifecycle -----------------------------------------------------------------------------

    def reload(self) -> None:
        """After a setup: let every engine made so far (the v1 one aside: its owner reloads it)
        re-read its model folder, and retry the ones that could not be made."""
        with self._lock:
            others = [e for n, e in self._engines.items() if n != backends.V1.name]
            self._failed.clear()
        for engine in others:
            reload = getattr(engine, "reload", None)
            if callable(reload):
                reload()

    def close(self) -> None:
        """Close the engines this object made (not the v1 one: the daemon closes it)."""
        with self._lock:
            others = [e for n, e in self._engines.items() if n != backends.V1.name]
            self._engines = {backends.V1.name: self.v1}
        for engine in others:
            try:
                engine.close()
            except Exception:
                log.exception("closing an engine failed")
