"""Where ``lofi-daemon generate`` writes: the audio file, its format and its ``.json`` sidecar.

Everything here is checked before the generation starts, so a bad ``-o`` costs no model time and
never damages a file the program did not write:

* the format comes from ``--format`` or the extension, which must be ``.wav``, ``.flac`` or
  ``.ogg`` (an ``.mp3`` or ``.onnx`` name would otherwise receive WAV bytes);
* the output is not a folder, its folder exists and is writable, and it is not inside the models
  folder (``-o <models>/manifest.wav`` would replace the installation's manifest with a sidecar);
* the sidecar ``NAME.json`` beside ``NAME.ext`` is replaced only when it is a lofi sidecar
  (:func:`is_lofi_sidecar`); any other ``NAME.json`` (a ``package.json``) is left alone and the
  generation refused.

The daemon's cache keeps its own sidecars (``<track id>.json``) in a folder only it writes, so it
needs no such check.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Final

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.pipeline.params import FORMATS

#: The fields every sidecar written by :func:`lofi_daemon.cli.generate.write_sidecar` has.
SIDECAR_FIELDS: Final = ("path", "params", "seed", "model_version", "lofi_version")
#: A larger ``.json`` is certainly not a sidecar (they are about 1 KiB); it is not even read.
SIDECAR_MAX_BYTES: Final = 1 << 20
KNOWN_EXTENSIONS: Final = ", ".join(f".{f}" for f in FORMATS)


def output_format(requested: str | None, output: Path | None) -> str:
    """The audio format: ``--format``, else the output file's extension, else wav.

    Raises:
        LofiError: INVALID_FORMAT when the extension is not a known audio format or disagrees
            with ``--format``.
    """
    if output is None:
        return requested if requested is not None else "wav"
    suffix = output.suffix.lower().lstrip(".")
    if suffix == "json":
        raise LofiError(
            errors.INVALID_FORMAT,
            "the output must be an audio file, not .json (the .json sidecar is written next to it)",
        )
    if suffix not in FORMATS:
        shown = f"extension .{suffix}" if suffix else "no extension"
        raise LofiError(
            errors.INVALID_FORMAT,
            f"-o {output}: {shown}; the output file must end in one of {KNOWN_EXTENSIONS}",
            remedy=f"Name the output file with one of {KNOWN_EXTENSIONS} (the format follows it).",
        )
    if requested is not None and requested in FORMATS and requested != suffix:
        raise LofiError(
            errors.INVALID_FORMAT,
            f"--format {requested} does not match the output file extension .{suffix}",
        )
    return requested if requested is not None else suffix


def sidecar_path(audio: Path) -> Path:
    return audio.with_suffix(".json")


def is_lofi_sidecar(path: Path) -> bool:
    """Whether ``path`` is a sidecar this program wrote (a small JSON object with its fields)."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > SIDECAR_MAX_BYTES:
            return False
        data: Any = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and all(key in data for key in SIDECAR_FIELDS)


def _invalid(message: str, remedy: str) -> LofiError:
    return LofiError(errors.INVALID_PARAMETER, message, remedy=remedy)


def check_output_path(output: Path, models_dir: Path) -> None:
    """Refuse an output the generation must not write (see the module docstring).

    Raises:
        LofiError: INVALID_PARAMETER for a folder, a path inside the models folder or a foreign
            ``.json`` in the sidecar's place; OUTPUT_WRITE_FAILED when the folder is missing or
            not writable.
    """
    other = "Choose another output file with -o."
    if output.is_dir():
        raise _invalid(
            f"-o {output} is a folder; give a file name such as {output}/track.wav", other
        )
    parent = output.parent
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise LofiError(
            errors.OUTPUT_WRITE_FAILED,
            f"cannot write {output}: the folder {parent} {what}",
            remedy="Create the folder first, or choose another output file with -o.",
        )
    try:
        # A real probe: os.access is wrong for root and for read-only file systems.
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise LofiError(
            errors.OUTPUT_WRITE_FAILED,
            f"cannot write into {parent}: {exc.strerror or exc}",
            remedy=other,
        ) from exc
    real_models = Path(os.path.realpath(models_dir))
    real_output = Path(os.path.realpath(output))
    if real_models == real_output or real_models in real_output.parents:
        raise _invalid(
            f"-o {output} is inside the models folder {models_dir}; "
            "writing there could damage the installation",
            other,
        )
    sidecar = sidecar_path(output)
    if (sidecar.exists() or sidecar.is_symlink()) and not is_lofi_sidecar(sidecar):
        raise _invalid(
            f"{sidecar} exists and is not a lofi sidecar; generating to {output.name} would "
            "replace it with the track's metadata",
            f"{other} (the sidecar is always the output name with .json)",
        )
