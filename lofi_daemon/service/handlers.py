"""The daemon's JSON-RPC methods: one handler per method, and the checks of their params.

Method names follow one convention (docs/protocol.md, "Method names"): a plain verb for an
operation of the daemon itself (``ping``, ``status``, ``generate``, ``cancel``, ``setup``,
``shutdown``) and ``collection.verb`` for an operation on a collection (``tracks.list``,
``tracks.delete``, ``backends.list``, ``setup.cancel``; the ``radio.*`` methods are in
:mod:`lofi_daemon.service.radio_handlers`). Older names are deprecated aliases.

Handlers run on the reading thread and answer at once; generation and setup work is handed to
the :class:`~lofi_daemon.service.jobs.JobRunner` and the
:class:`~lofi_daemon.service.install_jobs.SetupRunner`.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final

from lofi_daemon import __version__, errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model.backends import V1
from lofi_daemon.pipeline.params import MAX_SEED, GenerationParams
from lofi_daemon.service.backend_engines import EXTRA_PARAMS, BackendEngines
from lofi_daemon.service.cache import TrackCache
from lofi_daemon.service.install_jobs import SetupRunner
from lofi_daemon.service.job_types import PRIORITIES, GenerationEngine, Job
from lofi_daemon.service.jobs import JobRunner
from lofi_daemon.service.method_params import (
    check_params,
    metadata_fields,
    setup_request,
    track_id_param,
)
from lofi_daemon.service.payloads import complete_payload
from lofi_daemon.service.radio import RadioService
from lofi_daemon.service.radio_handlers import RadioHandlers
from lofi_daemon.service.rpc import Handler, MessageWriter, Reply
from lofi_daemon.service.sources import SOURCE_PARAMS, ResolvedSource, resolve_source
from lofi_daemon.service.track_ids import track_id_for
from lofi_daemon.service.track_read import TrackReader
from lofi_daemon.service.variants import VariantEngines

log = logging.getLogger(__name__)

# JSON-RPC method name -> Handlers attribute.
METHODS: Final = {
    "ping": "ping",
    "status": "status",
    "generate": "generate",
    "cancel": "cancel",
    "setup": "setup",
    "shutdown": "shutdown",
    "backends.list": "backends_list",
    "tracks.list": "tracks_list",
    "tracks.delete": "tracks_delete",
    "tracks.read": "tracks_read",
    "setup.cancel": "setup_cancel",
}
# Deprecated name -> the method it stands for (answered the same; logged once per daemon).
DEPRECATED_METHODS: Final = {
    "get_backends": "backends.list",
}
# Not part of GenerationParams: the queue's, the source's (sources.py), the LoRA variant and the
# metadata object (method_params.metadata_fields); ``backend`` is resolved before.
GENERATE_ONLY_PARAMS: Final = ("priority", "backend", *SOURCE_PARAMS, "variant", "metadata")


# -- params ----------------------------------------------------------------------------------


def generation_params(params: dict[str, Any], backend: str = V1.name) -> GenerationParams:
    """Validate the generation fields of a ``generate`` request (shared rules with the CLI) for
    the resolved ``backend``.

    A value of the wrong JSON type gets the same code as an out-of-range value of that
    parameter (INVALID_DURATION for ``duration_sec``, ...); unknown names get INVALID_PARAMS; a
    parameter the backend does not have gets INVALID_PARAMETER naming it and the backend.
    """
    fields = {k: v for k, v in params.items() if k not in GENERATE_ONLY_PARAMS}
    fields.update(metadata_fields(params))
    fields["backend"] = backend
    for name in ("priority", *SOURCE_PARAMS, "variant", "metadata"):
        if name in params and name not in EXTRA_PARAMS.get(backend, ()):
            raise LofiError(
                errors.INVALID_PARAMETER, f"{name} is not a parameter of the backend {backend}"
            )
    if "prompt" not in fields:
        raise LofiError(errors.INVALID_PROMPT, "generate needs a prompt")
    try:
        request = GenerationParams.from_dict(fields)
    except TypeError as exc:
        raise LofiError(errors.INVALID_PARAMS, f"invalid parameters: {exc}") from exc
    if request.uses_source and "duration_sec" in fields:
        raise LofiError(
            errors.INVALID_DURATION,
            f"duration_sec cannot be given for the task {request.task}: the source decides the "
            "length (extend adds extend_left and extend_right)",
        )
    return request


def fixed_seeds(request: GenerationParams) -> GenerationParams:
    """``request`` resolved, with the seeds it needs drawn when not given (a track id needs
    fixed seeds): ``seed`` always, ``retake_seed`` for retake, repaint and extend."""
    if request.seed is None:
        request = request.with_seed(secrets.randbelow(MAX_SEED + 1))
    if request.uses_retake_noise and request.retake_seed is None:
        request = replace(request, retake_seed=secrets.randbelow(MAX_SEED + 1))
    return request.resolved()


def with_source_length(
    request: GenerationParams, source: ResolvedSource | None
) -> GenerationParams:
    """For a source task: ``duration_sec`` set to the expected length (what the queue reports
    until the engine gives the exact one; not part of the track id)."""
    if source is None:
        return request
    seconds = source.duration_sec
    if request.task == "extend":
        seconds += request.extend_left + request.extend_right
    return replace(request, duration_sec=round(seconds, 3))


# -- handlers --------------------------------------------------------------------------------


class Handlers:
    """The method handlers over the daemon's parts.

    Args:
        engine: the generation engine (``Engine`` or a test double).
        cache: the track cache.
        runner: the generation queue.
        setup_runner: the model installation job.
        writer: where notifications go (a cache hit's ``generation_complete``).
        request_shutdown: called with ``cancel_running`` once a ``shutdown`` reply is out.
        radio: the radio service (its methods join the table).
        backends: the engine of each backend (default: ``engine`` for v1, the others made on
            first use beside its model folder; see :mod:`~lofi_daemon.service.backend_engines`).
    """

    def __init__(
        self,
        engine: GenerationEngine,
        cache: TrackCache,
        runner: JobRunner,
        setup_runner: SetupRunner,
        writer: MessageWriter,
        request_shutdown: Callable[[bool], None],
        radio: RadioService | None = None,
        backends: BackendEngines | None = None,
    ) -> None:
        self.engine = engine
        self.backends = backends or BackendEngines(engine)
        self.cache = cache
        self.tracks_read = TrackReader(cache).read
        self.runner = runner
        self.setup_runner = setup_runner
        self.writer = writer
        self._request_shutdown = request_shutdown
        self._warned: set[str] = set()
        self.variants = VariantEngines(engine)
        self.radio = radio or RadioService(runner, cache, writer.notify)
        self._radio = RadioHandlers(
            self.radio, self._radio_ready, self.variants.get, writer.notify, self.backends.resolve
        )

    def table(self) -> dict[str, Handler]:
        """Every answered method name (deprecated aliases included) -> its handler."""
        table: dict[str, Handler] = {
            method: getattr(self, attribute) for method, attribute in METHODS.items()
        }
        for old, new in DEPRECATED_METHODS.items():
            table[old] = self._deprecated(old, new, table[new])
        return {**table, **self._radio.table()}

    def _deprecated(self, old: str, new: str, handler: Handler) -> Handler:
        def alias(params: dict[str, Any]) -> Any:
            if old not in self._warned:
                self._warned.add(old)
                log.info("the method %s is deprecated; use %s", old, new)
            return handler(params)

        return alias

    def ping(self, params: dict[str, Any]) -> dict[str, Any]:
        check_params(params, (), "ping")
        return {"status": "ok", "version": __version__, "pid": os.getpid()}

    def status(self, params: dict[str, Any]) -> dict[str, Any]:
        check_params(params, (), "status")
        residency = {**self.backends.residency(), **self.variants.residency()}
        return {
            **self.runner.snapshot(),
            "setup": self.setup_runner.snapshot(),
            "residency": residency,
        }

    def generate(self, params: dict[str, Any]) -> Reply:
        backend = self.backends.resolve(params.get("backend"))
        request = generation_params(params, backend)
        priority = params.get("priority", "normal")
        if priority not in PRIORITIES:
            raise LofiError(errors.INVALID_PARAMETER, 'priority must be "normal" or "high"')
        given: dict[str, Any] = {name: params[name] for name in SOURCE_PARAMS if name in params}
        source = resolve_source(request.task, given, cache=self.cache, queue=self.runner)
        model_version = self._require_ready(backend)
        variant = params.get("variant")
        engine = self.variants.get(variant) if variant is not None else None
        if backend != V1.name:
            engine = self.backends.engine(backend)
        request = with_source_length(fixed_seeds(request), source)
        track_id = track_id_for(
            request,
            model_version=model_version,
            backend=backend,
            source=source.key if source is not None else None,
            variant=variant,
        )
        base: dict[str, Any] = {
            "track_id": track_id,
            "seed": request.seed,
            "task": request.task,
            "backend": backend,
        }
        if request.uses_retake_noise:
            base["retake_seed"] = request.retake_seed

        position = self.runner.position(track_id)
        if position is not None:
            return Reply({**base, "status": "queued", "position": position})
        entry = self.cache.get(track_id)
        if entry is not None:
            log.info("cache hit %s", track_id)
            return Reply(
                {**base, "status": "cached", "position": 0, "path": str(entry.path)},
                after=lambda: self.writer.notify(
                    "generation_complete", complete_payload(entry, cached=True)
                ),
            )
        if self.setup_runner.running:
            raise LofiError(
                errors.BACKEND_NOT_INSTALLED,
                "a setup is installing the models; generate again after setup_complete",
                remedy="Wait for the setup to finish (or cancel it with setup.cancel).",
            )
        job = Job(
            track_id=track_id,
            params=request,
            out_path=self.cache.audio_path(track_id, request.format),
            priority=priority,
            model_version=model_version,
            source=source,
            engine=engine,
            variant=variant,
            backend=backend,
        )
        position = self.runner.submit(job, hold=True)
        log.info("queued %s at position %d", track_id, position)
        return Reply(
            {**base, "status": "queued", "position": position},
            after=lambda: self.runner.release(track_id),
        )

    def cancel(self, params: dict[str, Any]) -> Any:
        track_id = track_id_param(params, "cancel")
        outcome = self.runner.cancel(track_id)
        if outcome.status == "cancelled":
            return Reply(
                {"track_id": track_id, "status": "cancelled"},
                after=lambda: self.runner.announce_cancelled(track_id),
            )
        return {"track_id": track_id, "status": "cancelling", "step": outcome.step}

    def setup(self, params: dict[str, Any]) -> Reply:
        request = setup_request(params)
        busy = self.runner.snapshot()
        if busy["running"] is not None or busy["queue"]:
            raise LofiError(
                errors.SETUP_FAILED,
                "a generation is running or queued; the setup cannot run at the same time",
                remedy="Wait for the generations to finish (or cancel them), then run the setup.",
            )
        launch = self.setup_runner.start(request)
        return Reply({"status": "started"}, after=launch)

    def shutdown(self, params: dict[str, Any]) -> Reply:
        check_params(params, ("cancel_running",), "shutdown")
        cancel_running = params.get("cancel_running", False)
        if not isinstance(cancel_running, bool):
            raise LofiError(errors.INVALID_PARAMS, "cancel_running must be true or false")
        return Reply(
            {"status": "shutting_down"}, after=lambda: self._request_shutdown(cancel_running)
        )

    def backends_list(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        check_params(params, (), "backends.list")
        # Imported here: the probe loads onnxruntime, which `serve` must not load at start.
        from lofi_daemon.pipeline.providers import working_providers

        return self.backends.describe(working_providers)

    def tracks_list(self, params: dict[str, Any]) -> dict[str, Any]:
        check_params(params, (), "tracks.list")
        entries = self.cache.entries()
        return {
            "tracks": [entry.to_json() for entry in entries],
            "total_bytes": sum(entry.size_bytes for entry in entries),
            "max_bytes": self.cache.max_bytes,
            "cache_dir": str(self.cache.root),
        }

    def tracks_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        track_id = track_id_param(params, "tracks.delete")
        if not self.cache.delete(track_id):
            raise LofiError(errors.TRACK_NOT_FOUND, f"no cached track {track_id[:64]!r}")
        return {"track_id": track_id, "deleted": True}

    def setup_cancel(self, params: dict[str, Any]) -> dict[str, Any]:
        check_params(params, (), "setup.cancel")
        return {"cancelled": self.setup_runner.cancel()}

    # -- engine state --------------------------------------------------------------------------

    def _radio_ready(self) -> str:
        if self.setup_runner.running:
            raise LofiError(errors.BACKEND_NOT_INSTALLED, "a setup is installing the models")
        return self._require_ready()

    def _require_ready(self, backend: str = V1.name) -> str:
        """The model version of ``backend``, or the error that explains why it cannot run."""
        state = self.backends.status(backend)
        message = state.get("message") or ""
        if message and backend != V1.name:
            message = f"{backend}: {message}"
        remedy = state.get("remedy") if isinstance(state.get("remedy"), str) else None
        if state.get("status") == "not_installed":
            raise LofiError(
                errors.MODEL_NOT_FOUND, message or "the models are not installed", remedy=remedy
            )
        if state.get("status") != "ready":
            raise LofiError(
                errors.MODEL_LOAD_FAILED, message or "the models cannot be used", remedy=remedy
            )
        version = state.get("model_version")
        if isinstance(version, str) and version:
            return version
        return self.backends.engine(backend).model_version
