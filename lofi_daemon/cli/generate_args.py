"""The backend options of ``lofi-daemon generate``: ``--backend``, the ACE-Step 1.5 flags, which
backend runs when none is named and where its models are.

The 1.5 flags (``--lyrics``, ``--lyrics-file``, ``--language``, ``--bpm``, ``--key``,
``--time-signature``, ``--shift``) default to None, so a flag that is not given leaves its
parameter at the default, and one given for v1 is refused by
:meth:`~lofi_daemon.pipeline.params.GenerationParams.validate` (INVALID_PARAMETER naming the
parameter and the backend) before any model is loaded.

Also the residency options shared by ``serve`` and ``bench`` (``--keep-loaded``,
``--idle-unload``; docs/residency.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Final

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model import backends
from lofi_daemon.model.manifest import MANIFEST_NAME
from lofi_daemon.paths import default_models_dir
from lofi_daemon.pipeline.residency import (
    DEFAULT_IDLE_TIMEOUT_SEC,
    KEEP_LOADED_MODES,
    ResidencyConfig,
)

#: flag -> the GenerationParams field it sets (``--lyrics-file`` sets ``lyrics`` too).
TURBO_FLAGS: Final = {
    "--lyrics": "lyrics",
    "--language": "vocal_language",
    "--bpm": "bpm",
    "--key": "keyscale",
    "--time-signature": "time_signature",
    "--shift": "shift",
}


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backend`` and the ACE-Step 1.5 flags (all default to None: see the module doc)."""
    parser.add_argument(
        "--backend",
        default=None,
        metavar="NAME",
        help=f"{' | '.join(backends.NAMES)} (default: the backend of --models, else the only "
        "installed one, else ace-step)",
    )
    group = parser.add_argument_group(f"{backends.TURBO.name} only")
    add = group.add_argument
    add("--lyrics", metavar="TEXT", help="the words to sing (default: an instrumental)")
    add("--lyrics-file", type=Path, metavar="FILE", help="read the lyrics from a UTF-8 file")
    add(
        "--language",
        metavar="CODE",
        help="language of the lyrics, e.g. en, de, ja (default: unknown)",
    )
    add("--bpm", type=int, metavar="N", help="tempo, 30-300 (default: the model decides)")
    add("--key", metavar="KEY", help='key and mode, e.g. "F# minor" (default: the model decides)')
    add("--time-signature", type=int, metavar="N", help="beats per bar: 2, 3, 4 or 6")
    add("--shift", type=int, metavar="N", help="which 8-step schedule: 1, 2 or 3 (default: 3)")


def turbo_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The GenerationParams fields of the 1.5 flags that were given.

    Raises:
        LofiError: INVALID_PARAMETER when both ``--lyrics`` and ``--lyrics-file`` are given or
            the file cannot be read as UTF-8 text.
    """
    fields = {
        field: getattr(args, flag[2:].replace("-", "_"))
        for flag, field in TURBO_FLAGS.items()
        if getattr(args, flag[2:].replace("-", "_")) is not None
    }
    if args.lyrics_file is not None:
        if args.lyrics is not None:
            raise LofiError(errors.INVALID_PARAMETER, "give --lyrics or --lyrics-file, not both")
        try:
            fields["lyrics"] = args.lyrics_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise LofiError(
                errors.INVALID_PARAMETER, f"cannot read --lyrics-file {args.lyrics_file}: {exc}"
            ) from exc
    return fields


def manifest_backend(models_dir: Path) -> str | None:
    """The backend of the model directory ``models_dir`` (None when it holds no manifest): a
    1.5 manifest names its backend, a v1 manifest has no ``backend`` key."""
    try:
        data = json.loads((models_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    backend = data.get("backend", backends.V1.name)
    return backend if isinstance(backend, str) else None


def resolve_backend(requested: str | None, models: Path | None) -> tuple[str, Path]:
    """The backend to run and its model directory.

    ``--backend`` wins; else the backend of ``--models``; else the only backend installed in its
    default folder, else ace-step. ``--models`` is the chosen backend's model directory
    (default: its own folder, :func:`~lofi_daemon.model.backends.backend_models_dir`).

    Raises:
        LofiError: INVALID_BACKEND for an unknown ``--backend``.
    """
    if requested is not None and requested not in backends.BACKENDS:
        raise LofiError(
            errors.INVALID_BACKEND,
            f"unknown backend {requested[:60]!r}; use one of {', '.join(backends.NAMES)}",
        )
    if models is not None:
        backend = requested or manifest_backend(models) or backends.DEFAULT_BACKEND
        return backend, models
    v1_dir = default_models_dir()
    if requested is not None:
        return requested, backends.backend_models_dir(requested, v1_dir)
    installed = [
        name
        for name in backends.NAMES
        if manifest_backend(backends.backend_models_dir(name, v1_dir)) == name
    ]
    backend = installed[0] if len(installed) == 1 else backends.DEFAULT_BACKEND
    return backend, backends.backend_models_dir(backend, v1_dir)


def _keep_loaded(text: str) -> str:
    if text.lower() not in KEEP_LOADED_MODES:
        raise argparse.ArgumentTypeError(f"use one of {', '.join(KEEP_LOADED_MODES)}")
    return text.lower()


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("must be above 0")
    return value


def add_keep_loaded_arguments(
    parser: argparse.ArgumentParser, *, default: str = "auto", idle: bool = True
) -> None:
    """``--keep-loaded [auto|true|false]`` (a bare ``--keep-loaded`` is ``true``, as the old
    flag) and, with ``idle``, ``--idle-unload SECONDS``; read back with :func:`residency_config`.
    """
    parser.add_argument(
        "--keep-loaded",
        type=_keep_loaded,
        nargs="?",
        const="true",
        default=default,
        metavar="{auto,true,false}",
        help="keep the denoiser loaded between generations: auto while memory allows, true "
        f"always, false never (default: {default}; a bare --keep-loaded is true)",
    )
    if idle:
        parser.add_argument(
            "--idle-unload",
            type=_seconds,
            default=DEFAULT_IDLE_TIMEOUT_SEC,
            metavar="SECONDS",
            help="with --keep-loaded auto: drop the denoiser after this long without a "
            f"generation (default: {DEFAULT_IDLE_TIMEOUT_SEC:g})",
        )


def residency_config(args: argparse.Namespace) -> ResidencyConfig:
    """The residency settings of parsed :func:`add_keep_loaded_arguments` options."""
    return ResidencyConfig(
        mode=args.keep_loaded,
        idle_timeout_sec=getattr(args, "idle_unload", DEFAULT_IDLE_TIMEOUT_SEC),
    )
