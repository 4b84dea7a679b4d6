"""The engines of the installed LoRA variants (``generate``'s ``variant`` param).

A variant is a model folder of its own (:func:`lofi_daemon.model.variants.variant_dir`), so it
runs on an engine of its own: made on first use with the daemon engine's settings, and kept
(an engine holds only the decoder and vocoder between generations).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.service.backend_engines import residency_of
from lofi_daemon.service.job_types import GenerationEngine

EngineFactory = Callable[[Path], GenerationEngine]


def variant_models_dir(models_dir: Path, name: object) -> Path:
    """The model folder of the variant ``name``.

    Raises:
        LofiError: INVALID_PARAMS when ``name`` is not a string; from ``variant_dir`` when it is
            not a valid, installed variant.
    """
    if not isinstance(name, str) or not name:
        raise LofiError(errors.INVALID_PARAMS, "variant must be a non-empty string")
    from lofi_daemon.model.variants import variant_dir

    return Path(variant_dir(models_dir, name))


class VariantEngines:
    """One engine per installed variant, made by ``factory`` (default: an ``Engine`` over the
    variant's folder with ``base``'s provider, threads and decode settings)."""

    def __init__(self, base: GenerationEngine, factory: EngineFactory | None = None) -> None:
        self._base = base
        self._factory = factory or self._like_base
        self._engines: dict[Path, GenerationEngine] = {}
        self._lock = threading.Lock()

    def get(self, name: object) -> GenerationEngine:
        """The engine of the variant ``name`` (see :func:`variant_models_dir` for the errors)."""
        models_dir = getattr(self._base, "models_dir", None)
        if models_dir is None:
            raise LofiError(errors.INVALID_PARAMETER, "this daemon's engine has no LoRA variants")
        folder = variant_models_dir(Path(models_dir), name)
        with self._lock:
            engine = self._engines.get(folder)
            if engine is None:
                engine = self._engines[folder] = self._factory(folder)
            return engine

    def residency(self) -> dict[str, dict[str, Any]]:
        """``variant:<name>`` → what that variant's engine keeps loaded and why (``status``)."""
        with self._lock:
            engines = [(f"variant:{folder.name}", e) for folder, e in self._engines.items()]
        return residency_of(engines)

    def close(self) -> None:
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.close()

    def _like_base(self, folder: Path) -> GenerationEngine:
        from lofi_daemon.pipeline.engine import Engine  # loads ONNX Runtime: only when used

        base: Any = self._base
        if not isinstance(base, Engine):
            raise LofiError(errors.INVALID_PARAMETER, "this daemon's engine has no LoRA variants")
        return Engine(
            folder,
            provider=base.provider,
            threads=base.threads,
            keep_loaded=base.keep_loaded,
            decode=base.decode_settings,
        )
