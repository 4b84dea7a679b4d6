"""The audio-task options of ``lofi-daemon generate``: which flags each task takes, and what they
become (:class:`~lofi_daemon.pipeline.params.GenerationParams` fields, a source, noise arrays).

Every task flag defaults to None, so a flag given for a task that does not use it is an error that
names both, raised before any model is loaded (:func:`check_task_flags`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model.manifest import sha256_file
from lofi_daemon.pipeline.params import SOURCE_TASKS, TASKS

#: Default length of text2music and retake tracks (the other tasks take the source's).
DEFAULT_DURATION_SEC: Final = 30.0

#: flag -> (argparse dest, GenerationParams field or None, the tasks that take it).
TASK_FLAGS: Final[dict[str, tuple[str, str | None, tuple[str, ...]]]] = {
    "--duration": ("duration", "duration_sec", ("text2music", "retake")),
    "--src-audio": ("src_audio", None, ("repaint", "extend", "edit")),
    "--repaint-start": ("repaint_start", "repaint_start", ("repaint",)),
    "--repaint-end": ("repaint_end", "repaint_end", ("repaint",)),
    "--extend-left": ("extend_left", "extend_left", ("extend",)),
    "--extend-right": ("extend_right", "extend_right", ("extend",)),
    "--retake-variance": ("retake_variance", "retake_variance", ("retake", "repaint", "extend")),
    "--retake-seed": ("retake_seed", "retake_seed", ("retake", "repaint", "extend")),
    "--retake-noise": ("retake_noise", None, ("retake", "repaint", "extend")),
    "--ref-audio": ("ref_audio", None, ("audio2audio",)),
    "--ref-strength": ("ref_strength", "ref_strength", ("audio2audio",)),
    "--edit-prompt": ("edit_prompt", "edit_prompt", ("edit",)),
    "--edit-n-min": ("edit_n_min", "edit_n_min", ("edit",)),
    "--edit-n-max": ("edit_n_max", "edit_n_max", ("edit",)),
    "--edit-n-avg": ("edit_n_avg", "edit_n_avg", ("edit",)),
}
#: The flag that gives each source task its audio.
SOURCE_FLAG: Final = {
    "repaint": "--src-audio",
    "extend": "--src-audio",
    "edit": "--src-audio",
    "audio2audio": "--ref-audio",
}


def add_task_arguments(parser: argparse.ArgumentParser) -> None:
    """``--task`` and the flags of the audio tasks (all default to None: see the module doc)."""
    parser.add_argument(
        "--task",
        default="text2music",
        help=" | ".join(TASKS) + "; repaint, extend, edit and audio2audio take their length "
        "from the source audio",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="length in seconds, 5-240 on ace-step, 5-600 on ace-step-1.5 (text2music and "
        f"retake; default: {DEFAULT_DURATION_SEC:g})",
    )
    group = parser.add_argument_group("audio tasks")
    add = group.add_argument
    add("--src-audio", type=Path, metavar="FILE", help="source audio (repaint, extend, edit)")
    add("--repaint-start", type=float, metavar="S", help="repaint: region start, seconds")
    add("--repaint-end", type=float, metavar="S", help="repaint: region end, seconds")
    add("--extend-left", type=float, metavar="S", help="extend: seconds added before the source")
    add("--extend-right", type=float, metavar="S", help="extend: seconds added after the source")
    add(
        "--retake-variance",
        type=float,
        metavar="V",
        help="retake, repaint, extend: share of new noise, 0-1 (default: 0.5, for extend 1.0)",
    )
    add(
        "--retake-seed",
        type=int,
        metavar="N",
        help="retake, repaint, extend: seed of the second noise (default: a random one, "
        "recorded in the sidecar)",
    )
    add(
        "--retake-noise",
        type=Path,
        metavar="NPY",
        help="retake, repaint, extend: use this .npy of shape [1, 8, 16, T] as the second noise "
        "instead of the --retake-seed draw",
    )
    add("--ref-audio", type=Path, metavar="FILE", help="audio2audio: the reference audio")
    add(
        "--ref-strength",
        type=float,
        metavar="F",
        help="audio2audio: how much of the reference stays, 0 <= F < 1 (default: 0.5)",
    )
    add("--edit-prompt", metavar="P", help="edit: the prompt to edit the source towards")
    add(
        "--edit-n-min",
        type=float,
        metavar="F",
        help="edit: first share of steps edited (default: 0)",
    )
    add(
        "--edit-n-max",
        type=float,
        metavar="F",
        help="edit: last share of steps edited (default: 1)",
    )
    add(
        "--edit-n-avg",
        type=int,
        metavar="N",
        help="edit: noise draws averaged per step, 1-8 (default: 1)",
    )


def check_task_flags(args: argparse.Namespace) -> None:
    """Refuse an unknown task, a flag the task does not take and a missing source (no models are
    loaded yet, nothing is written).

    Raises:
        LofiError: INVALID_PARAMETER naming the task and the flag.
    """
    task = args.task
    if task not in TASKS:
        raise LofiError(
            errors.INVALID_PARAMETER, f"unknown task {task!r}; use one of {', '.join(TASKS)}"
        )
    for flag, (dest, _, tasks) in TASK_FLAGS.items():
        if getattr(args, dest) is not None and task not in tasks:
            if flag == "--duration":
                raise LofiError(
                    errors.INVALID_DURATION,
                    f"--duration cannot be given with --task {task}: the length comes from the "
                    "source audio",
                    remedy="Leave out --duration (extend sets the added length with "
                    "--extend-left/--extend-right).",
                )
            raise LofiError(
                errors.INVALID_PARAMETER,
                f"{flag} is not an option of --task {task} (it is for {', '.join(tasks)})",
            )
    source_flag = SOURCE_FLAG.get(task)
    if source_flag is not None and getattr(args, TASK_FLAGS[source_flag][0]) is None:
        raise LofiError(errors.INVALID_PARAMETER, f"--task {task} needs {source_flag} FILE")


def task_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The GenerationParams fields of ``args``: the task and every task flag that was given."""
    fields: dict[str, Any] = {"task": args.task}
    for dest, field, _ in TASK_FLAGS.values():
        value = getattr(args, dest)
        if field is not None and value is not None:
            fields[field] = value
    if args.task not in SOURCE_TASKS:
        fields.setdefault("duration_sec", DEFAULT_DURATION_SEC)
    return fields


def load_noise(path: Path | None, flag: str) -> np.ndarray | None:
    """The array of a ``--initial-noise``/``--retake-noise`` file (None when not given); its shape
    is checked by the engine, which knows the latent length."""
    if path is None:
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise LofiError(errors.INVALID_PARAMETER, f"cannot read {flag} {path}: {exc}") from exc
    if not isinstance(array, np.ndarray):  # an .npz archive
        raise LofiError(errors.INVALID_PARAMETER, f"{flag} {path} is not a .npy array file")
    return array


@dataclass(frozen=True)
class SourceFile:
    """The audio file a task starts from, as the sidecar records it."""

    flag: str
    path: Path
    sha256: str

    def record(self) -> dict[str, Any]:
        return {"flag": self.flag, "path": str(self.path), "sha256": self.sha256}


def source_file(args: argparse.Namespace) -> SourceFile | None:
    """The checked source of a source task (None for text2music and retake).

    Raises:
        LofiError: from :func:`lofi_daemon.pipeline.source.check_audio_file` (missing, not audio,
            too short or too long), before any model is loaded.
    """
    from lofi_daemon.pipeline.source import check_audio_file

    flag = SOURCE_FLAG.get(args.task)
    if flag is None:
        return None
    path = Path(getattr(args, TASK_FLAGS[flag][0])).expanduser().absolute()
    check_audio_file(path)
    return SourceFile(flag, path, file_sha256(path))


def file_sha256(path: Path) -> str:
    try:
        return sha256_file(path)
    except OSError as exc:
        raise LofiError(
            errors.INVALID_SOURCE, f"source audio {path}: cannot be read ({exc.strerror or exc})"
        ) from exc


def variant_models_dir(models_dir: Path, name: str | None) -> Path:
    """The model folder of ``--variant NAME`` (the installed models without one).

    Raises:
        LofiError: from :func:`lofi_daemon.model.variants.variant_dir` when ``name`` is not a
            valid, installed variant.
    """
    if name is None:
        return models_dir
    from lofi_daemon.model.variants import variant_dir  # type: ignore[import-not-found,unused-ignore]

    return Path(variant_dir(models_dir, name))
