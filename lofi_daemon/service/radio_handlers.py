"""The ``radio.*`` JSON-RPC methods: their params, and the :class:`RadioService` call each makes.

Registered beside the other methods by :class:`~lofi_daemon.service.handlers.Handlers` (its
:meth:`~lofi_daemon.service.handlers.Handlers.table` merges :meth:`RadioHandlers.table`). Every
method answers at once; ``radio.start`` sends the replaced station's ``radio_stopped`` before its
reply, ``radio.stop`` sends ``radio_stopped`` after it, ``radio.save`` starts writing after its
reply and ends with ``radio_saved`` or ``radio_save_failed``. docs/protocol.md, "Radio".
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model.backends import V1
from lofi_daemon.pipeline.params import MAX_SEED
from lofi_daemon.service.job_types import GenerationEngine
from lofi_daemon.service.method_params import check_params
from lofi_daemon.service.radio import RadioService
from lofi_daemon.service.radio_payloads import stopped_payload
from lofi_daemon.service.rpc import Handler, Reply

RADIO_METHODS: Final = {
    "radio.start": "start",
    "radio.stop": "stop",
    "radio.position": "position",
    "radio.like": "like",
    "radio.save": "save",
    "radio.status": "status",
}


class RadioHandlers:
    """The radio methods over a :class:`RadioService`.

    Args:
        service: the radio.
        ready: the model version, or the LofiError that says why nothing can be generated (the
            models missing, a setup running).
        variant_engine: the engine of a LoRA variant (INVALID_PARAMETER when unknown).
        emit: where ``radio_stopped`` goes.
        resolve_backend: the backend a request runs on, given its ``backend`` param or None
            (default: always v1). The radio runs on v1 only: each segment after the first is an
            ``extend``, a v1 task.
    """

    def __init__(
        self,
        service: RadioService,
        ready: Callable[[], str],
        variant_engine: Callable[[str], GenerationEngine],
        emit: Callable[[str, dict[str, Any]], Any],
        resolve_backend: Callable[[object], str] | None = None,
    ) -> None:
        self.service = service
        self._resolve_backend = resolve_backend or (lambda requested: V1.name)
        self._ready = ready
        self._variant_engine = variant_engine
        self._emit = emit

    def table(self) -> dict[str, Handler]:
        return {method: getattr(self, name) for method, name in RADIO_METHODS.items()}

    def start(self, params: dict[str, Any]) -> Reply:
        from lofi_daemon.radio.config import StationConfig

        params = dict(params)
        backend = self._resolve_backend(params.pop("backend", None))
        if backend != V1.name:
            raise LofiError(
                errors.INVALID_PARAMETER,
                f"the radio cannot run on the backend {backend}: it continues every segment "
                f"with extend, which only {V1.name} has",
                remedy=f'Start the radio with backend "{V1.name}" (install it with '
                f":Lofi setup {V1.name}).",
            )
        seed = params.get("seed")
        if seed is None:
            seed = secrets.randbelow(MAX_SEED + 1)
        config = StationConfig.from_params(params, seed=seed)
        try:
            model_version = self._ready()
        except LofiError as exc:
            raise LofiError(
                errors.BACKEND_NOT_INSTALLED,
                f"the radio cannot generate: {exc.message}",
                remedy=exc.remedy or "Run :Lofi setup ace-step.",
            ) from exc
        engine = self._variant_engine(config.variant) if config.variant is not None else None
        station, launch = self.service.start(config, model_version=model_version, engine=engine)
        result = {"station_id": station.station_id, "seed": seed, "config": config.to_json()}
        return Reply(result, after=launch)

    def stop(self, params: dict[str, Any]) -> Any:
        check_params(params, (), "radio.stop")
        station = self.service.stop("stopped", announce=False)
        if station is None:
            return {"status": "idle"}
        result = {
            "status": "stopped",
            "station_id": station.station_id,
            "segments": len(station.plan.segments),
        }
        payload = stopped_payload(station.station_id, "stopped")
        return Reply(result, after=lambda: self._emit("radio_stopped", payload))

    def position(self, params: dict[str, Any]) -> dict[str, Any]:
        check_params(params, ("station_id", "index", "position_sec", "paused"), "radio.position")
        station_id = params.get("station_id")
        if not isinstance(station_id, str):
            raise LofiError(errors.INVALID_PARAMS, "radio.position needs a string station_id")
        for name in ("index", "position_sec", "paused"):
            if name not in params:
                raise LofiError(errors.INVALID_PARAMS, f"radio.position needs {name}")
        ahead = self.service.position(
            station_id, params["index"], params["position_sec"], params["paused"]
        )
        return {"buffer_ahead_sec": ahead}

    def like(self, params: dict[str, Any]) -> dict[str, Any]:
        check_params(params, ("index", "all"), "radio.like")
        index = params.get("index")
        everything = params.get("all", False)
        if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
            raise LofiError(errors.INVALID_PARAMS, "index must be an integer")
        if not isinstance(everything, bool):
            raise LofiError(errors.INVALID_PARAMS, "all must be true or false")
        return self.service.like(index, everything)

    def save(self, params: dict[str, Any]) -> Reply:
        check_params(params, ("path",), "radio.save")
        raw = params.get("path")
        path = None
        if raw is not None:
            if not isinstance(raw, str) or not raw.strip():
                raise LofiError(errors.INVALID_PARAMS, "path must be a non-empty string")
            path = Path(raw).expanduser()
            if not path.is_absolute():
                raise LofiError(
                    errors.INVALID_PARAMETER,
                    f"path must be absolute (the daemon's folder is not yours), got {raw[:200]!r}",
                )
        result, launch = self.service.save(path)
        return Reply(result, after=launch)

    def status(self, params: dict[str, Any]) -> dict[str, Any]:
        check_params(params, (), "radio.status")
        return self.service.status()
