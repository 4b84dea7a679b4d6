"""Checks of JSON-RPC params shared by the method handlers (:mod:`~lofi_daemon.service.handlers`,
:mod:`~lofi_daemon.service.radio_handlers`): unknown names, a track id, the backend, ``setup``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.paths import BACKEND
from lofi_daemon.service.install_jobs import SetupRequest

SETUP_PARAMS: Final = ("backend", "confirm", "checkpoint", "force")


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
    if backend != BACKEND:
        shown = repr(backend)[:60]
        raise LofiError(errors.INVALID_BACKEND, f"unknown backend {shown}; use {BACKEND!r}")


def setup_request(params: dict[str, Any]) -> SetupRequest:
    """Validate the params of a ``setup`` request."""
    check_params(params, SETUP_PARAMS, "setup")
    backend = params.get("backend")
    if not isinstance(backend, str):
        raise LofiError(errors.INVALID_PARAMS, f"setup needs a string backend ({BACKEND!r})")
    check_backend(backend)
    for name in ("confirm", "force"):
        if not isinstance(params.get(name, False), bool):
            raise LofiError(errors.INVALID_PARAMS, f"{name} must be true or false")
    checkpoint = params.get("checkpoint")
    if checkpoint is not None and (not isinstance(checkpoint, str) or not checkpoint.strip()):
        raise LofiError(errors.INVALID_PARAMS, "checkpoint must be a folder path (a string)")
    return SetupRequest(
        backend=backend,
        confirm=params.get("confirm", False),
        checkpoint=Path(checkpoint).expanduser() if checkpoint is not None else None,
        force=params.get("force", False),
    )
