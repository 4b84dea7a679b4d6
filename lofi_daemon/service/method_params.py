"""Checks of JSON-RPC params shared by the method handlers (:mod:`~lofi_daemon.service.handlers`,
:mod:`~lofi_daemon.service.radio_handlers`): unknown names, a track id, the backend, ``generate``'s
``metadata``, ``setup``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.install.options import PRECISION_CHOICES
from lofi_daemon.model.backends import NAMES
from lofi_daemon.pipeline.backend_params import check_backend_name
from lofi_daemon.service.install_jobs import SetupRequest

SETUP_PARAMS: Final = ("backend", "confirm", "checkpoint", "force", "precision")
#: ``generate``'s ``metadata`` keys -> the GenerationParams field each sets.
METADATA_KEYS: Final = {
    "bpm": "bpm",
    "key": "keyscale",
    "keyscale": "keyscale",
    "time_signature": "time_signature",
}


def check_params(params: dict[str, Any], allowed: tuple[str, ...], method: str) -> None:
    """Reject parameter names ``method`` does not take (INVALID_PARAMS)."""
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        names = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise LofiError(errors.INVALID_PARAMS, f"{method} does not take {names}")


def track_id_param(params: dict[str, Any], method: str) -> str:
    """The one ``track_id`` param of ``cancel`` and ``tracks.delete`` (INVALID_PARAMS if not a
    string; an unknown id is the caller's TRACK_NOT_FOUND)."""
    check_params(params, ("track_id",), method)
    track_id = params.get("track_id")
    if not isinstance(track_id, str):
        raise LofiError(errors.INVALID_PARAMS, f"{method} needs a string track_id")
    return track_id


def check_backend(backend: object) -> None:
    """INVALID_BACKEND unless ``backend`` names a known backend."""
    check_backend_name(backend)


def metadata_fields(params: dict[str, Any]) -> dict[str, Any]:
    """The fields ``generate``'s ``metadata`` object sets (``{bpm, key|keyscale,
    time_signature}``); {} when there is none. A field may be given once: in ``metadata`` or
    beside it.

    Raises:
        LofiError: INVALID_PARAMS when ``metadata`` is not an object or a field is given twice;
            INVALID_PARAMETER for an unknown key.
    """
    metadata = params.get("metadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise LofiError(
            errors.INVALID_PARAMS, "metadata must be an object {bpm, key, time_signature}"
        )
    unknown = sorted(key for key in metadata if key not in METADATA_KEYS)
    if unknown:
        shown = ", ".join(repr(key[:40]) for key in unknown[:5])
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"unknown metadata key {shown}; use bpm, key, time_signature",
        )
    fields: dict[str, Any] = {}
    for key, value in metadata.items():
        name = METADATA_KEYS[key]
        if name in fields or name in params:
            raise LofiError(
                errors.INVALID_PARAMS, f"{name} is given twice (in metadata and beside it)"
            )
        fields[name] = value
    return fields


def setup_request(params: dict[str, Any]) -> SetupRequest:
    """Validate the params of a ``setup`` request."""
    check_params(params, SETUP_PARAMS, "setup")
    backend = params.get("backend")
    if not isinstance(backend, str):
        raise LofiError(
            errors.INVALID_PARAMS, f"setup needs a string backend (one of {', '.join(NAMES)})"
        )
    check_backend(backend)
    for name in ("confirm", "force"):
        if not isinstance(params.get(name, False), bool):
            raise LofiError(errors.INVALID_PARAMS, f"{name} must be true or false")
    checkpoint = params.get("checkpoint")
    if checkpoint is not None and (not isinstance(checkpoint, str) or not checkpoint.strip()):
        raise LofiError(errors.INVALID_PARAMS, "checkpoint must be a folder path (a string)")
    precision = params.get("precision", "auto")
    if precision not in PRECISION_CHOICES:
        raise LofiError(
            errors.INVALID_PARAMS,
            f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {precision!r}",
        )
    return SetupRequest(
        backend=backend,
        precision=precision,
        confirm=params.get("confirm", False),
        checkpoint=Path(checkpoint).expanduser() if checkpoint is not None else None,
        force=params.get("force", False),
    )
