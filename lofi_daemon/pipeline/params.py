"""Generation parameters: defaults, ranges and validation, shared by the CLI and the daemon.

Defaults are the reference ``ACEStepPipeline.__call__`` defaults, except ``infer_steps``
(27, the reference's fast setting) and ``duration_sec`` (30 s).

The task fields follow upstream ``acestep/pipeline_ace_step.py: ACEStepPipeline.__call__``
(``task``, ``retake_variance``, ``repaint_start``/``repaint_end``, ``ref_audio_strength``,
``edit_target_prompt``, ``edit_n_min``/``edit_n_max``/``edit_n_avg``); extend has its own
``extend_left``/``extend_right`` seconds instead of upstream's negative ``repaint_start``.
Checks that need the source audio (the region inside the source, the extended length) are the
engine's, made before any model runs.

``backend`` picks the model (``lofi_daemon.model.backends``); ACE-Step 1.5 turbo adds
``lyrics``, ``vocal_language``, ``bpm``, ``keyscale``, ``time_signature`` and ``shift``
(upstream ``GenerationParams`` in ``acestep/inference.py``). Which backend takes which field is
:data:`BACKEND_FIELDS` (:mod:`lofi_daemon.pipeline.backend_params`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Final, Literal

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model import backends, turbo_layout
from lofi_daemon.model.layout import SAMPLE_RATE_MODEL, SAMPLES_PER_LATENT_FRAME
from lofi_daemon.pipeline.backend_params import (
    TURBO,
    backend_fields,
    check_backend_fields,
    check_backend_name,
    check_turbo_fields,
)

Scheduler = Literal["euler", "heun", "pingpong"]
CfgType = Literal["apg", "cfg", "cfg_star"]
AudioFormat = Literal["wav", "flac", "ogg"]
Task = Literal["text2music", "retake", "repaint", "extend", "audio2audio", "edit"]

TASKS: Final = ("text2music", "retake", "repaint", "extend", "audio2audio", "edit")
SOURCE_TASKS: Final = ("repaint", "extend", "audio2audio", "edit")
"""Tasks that start from a source (repaint, extend, edit) or reference (audio2audio) audio."""
RETAKE_TASKS: Final = ("retake", "repaint", "extend")
"""Tasks that draw a second noise from ``retake_seed`` (upstream ``add_retake_noise``)."""
DEFAULT_RETAKE_VARIANCE: Final = {"retake": 0.5, "repaint": 0.5, "extend": 1.0}
"""``retake_variance`` when not given: upstream's ``__call__`` default, 1.0 for extend as in the
upstream UI (which starts an extension from pure noise)."""
SCHEDULERS: Final = ("euler", "heun", "pingpong")
CFG_TYPES: Final = ("apg", "cfg", "cfg_star")
FORMATS: Final = ("wav", "flac", "ogg")
WAV_SUBTYPES: Final = ("pcm16", "float")

MIN_DURATION_SEC: Final = 5.0
MAX_DURATION_SEC: Final = 240.0
MAX_PROMPT_CHARS: Final = 1000
MIN_STEPS: Final = 1
MAX_STEPS: Final = 200
MAX_SEED: Final = 2**32 - 1
MAX_EDIT_N_AVG: Final = 8

TASK_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "retake_variance": RETAKE_TASKS,
    "retake_seed": RETAKE_TASKS,
    "repaint_start": ("repaint",),
    "repaint_end": ("repaint",),
    "extend_left": ("extend",),
    "extend_right": ("extend",),
    "ref_strength": ("audio2audio",),
    "edit_prompt": ("edit",),
    "edit_n_min": ("edit",),
    "edit_n_max": ("edit",),
    "edit_n_avg": ("edit",),
}
"""Each task-specific field and the tasks it may be set (changed from its default) for."""


def seconds_to_frames(seconds: float) -> int:
    """Latent frames in ``seconds``: ``int(s·44100/4096)``, rounded down as upstream
    (``text2music_diffusion_process``: ``repaint_start_frame``)."""
    return int(seconds * SAMPLE_RATE_MODEL / SAMPLES_PER_LATENT_FRAME)


@dataclass(frozen=True)
class GenerationParams:
    """Everything that decides the audio of one generation (the source audio aside)."""

    prompt: str
    duration_sec: float = 30.0
    seed: int | None = None
    infer_steps: int = 27
    guidance_scale: float = 15.0
    scheduler: Scheduler = "euler"
    cfg_type: CfgType = "apg"
    omega_scale: float = 10.0
    guidance_interval: float = 0.5
    guidance_interval_decay: float = 0.0
    min_guidance_scale: float = 3.0
    guidance_scale_text: float = 0.0
    guidance_scale_lyric: float = 0.0
    use_erg_tag: bool = True
    use_erg_lyric: bool = True
    use_erg_diffusion: bool = True
    format: AudioFormat = "wav"
    wav_subtype: Literal["pcm16", "float"] = "pcm16"
    task: Task = "text2music"
    retake_variance: float | None = None  # None: the task default (DEFAULT_RETAKE_VARIANCE)
    retake_seed: int | None = None  # retake/repaint/extend second noise; None: random
    repaint_start: float = 0.0  # seconds
    repaint_end: float = 0.0  # seconds
    extend_left: float = 0.0  # seconds added before the source
    extend_right: float = 0.0  # seconds added after the source
    ref_strength: float = 0.5  # audio2audio: 0 keeps little of the reference, →1 keeps it all
    edit_prompt: str | None = None  # edit: the target prompt
    edit_n_min: float = 0.0  # edit: first edited fraction of the steps
    edit_n_max: float = 1.0  # edit: end of the edited fraction of the steps
    edit_n_avg: int = 1  # edit: velocity samples averaged per edited step
    backend: str = backends.DEFAULT_BACKEND  # lofi_daemon.model.backends.NAMES
    # ACE-Step 1.5 only (backend_params.TURBO_FIELDS):
    lyrics: str | None = None  # None: an instrumental ("[Instrumental]")
    vocal_language: str = "unknown"  # upstream VALID_LANGUAGES
    bpm: int | None = None  # None: N/A (the model decides)
    keyscale: str | None = None  # e.g. "F# minor"; None: N/A
    time_signature: int | None = None  # beats per bar: 2, 3, 4 or 6; None: N/A
    shift: int = turbo_layout.DEFAULT_SHIFT  # which of the fixed 8-step schedules

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationParams:
        """Build and validate parameters from a plain mapping (unknown keys are an error).

        Missing keys take their defaults, so sidecars written before a field existed still load.
        """
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise LofiError(errors.INVALID_PARAMS, f"unknown parameter(s): {', '.join(unknown)}")
        if "prompt" not in data:
            raise LofiError(errors.INVALID_PROMPT, "prompt is required")
        params = cls(**data)
        params.validate()
        return params

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_seed(self, seed: int) -> GenerationParams:
        return replace(self, seed=seed)

    @property
    def uses_source(self) -> bool:
        """Whether the task needs a source audio (or reference, for audio2audio)."""
        return self.task in SOURCE_TASKS

    @property
    def uses_retake_noise(self) -> bool:
        """Whether the task draws the second noise from ``retake_seed``."""
        return self.task in RETAKE_TASKS

    @property
    def diffusion_steps(self) -> int:
        """The denoising steps that run: ``infer_steps`` on v1, turbo's fixed 8 on 1.5."""
        return turbo_layout.TURBO_STEPS if self.backend == TURBO else self.infer_steps

    def resolved(self) -> GenerationParams:
        """A copy with ``retake_variance`` set to the task default when it was not given."""
        if self.retake_variance is None and self.task in DEFAULT_RETAKE_VARIANCE:
            return replace(self, retake_variance=DEFAULT_RETAKE_VARIANCE[self.task])
        return self

    def validate(self) -> None:
        """Raise a :class:`LofiError` naming the first invalid parameter.

        Backend-aware: the backend must be known, the parameters it lacks must keep their
        defaults, and the duration range is the backend's.
        """
        _check_prompt("prompt", self.prompt)
        info = backends.BACKENDS[check_backend_name(self.backend)]
        if self.task not in TASKS:
            raise LofiError(
                errors.INVALID_PARAMETER,
                f"unknown task {self.task!r}; use one of {', '.join(TASKS)}",
            )
        duration = _number("duration_sec", self.duration_sec, errors.INVALID_DURATION)
        if self.uses_source:
            # The source decides the length; a resolved copy carries the actual one.
            if duration <= 0:
                raise LofiError(
                    errors.INVALID_DURATION, f"duration_sec must be positive, got {duration:g}"
                )
        elif not info.min_duration_sec <= duration <= info.max_duration_sec:
            raise LofiError(
                errors.INVALID_DURATION,
                f"duration_sec must be between {info.min_duration_sec:g} and "
                f"{info.max_duration_sec:g} on the backend {info.name}, got {duration:g}",
            )
        check_backend_fields(self, _DEFAULTS, BACKEND_FIELDS)
        if self.backend == TURBO:
            check_turbo_fields(self)
        _check_seed("seed", self.seed)
        if not _is_int(self.infer_steps) or not MIN_STEPS <= self.infer_steps <= MAX_STEPS:
            raise LofiError(
                errors.INVALID_INFERENCE_STEPS,
                f"infer_steps must be an integer in {MIN_STEPS}..{MAX_STEPS}, "
                f"got {self.infer_steps!r}",
            )
        for name in (
            "guidance_scale",
            "min_guidance_scale",
            "guidance_scale_text",
            "guidance_scale_lyric",
        ):
            value = _number(name, getattr(self, name), errors.INVALID_GUIDANCE_SCALE)
            if value < 0:
                raise LofiError(
                    errors.INVALID_GUIDANCE_SCALE, f"{name} must not be negative, got {value:g}"
                )
        _number("omega_scale", self.omega_scale, errors.INVALID_PARAMETER)
        for name in ("guidance_interval", "guidance_interval_decay"):
            value = _number(name, getattr(self, name), errors.INVALID_PARAMETER)
            if not 0.0 <= value <= 1.0:
                raise LofiError(
                    errors.INVALID_PARAMETER, f"{name} must be between 0 and 1, got {value:g}"
                )
        if self.scheduler not in SCHEDULERS:
            raise LofiError(
                errors.INVALID_SCHEDULER,
                f"unknown scheduler {self.scheduler!r}; use one of {', '.join(SCHEDULERS)}",
            )
        if self.cfg_type not in CFG_TYPES:
            raise LofiError(
                errors.INVALID_CFG_TYPE,
                f"unknown cfg_type {self.cfg_type!r}; use one of {', '.join(CFG_TYPES)}",
            )
        for name in ("use_erg_tag", "use_erg_lyric", "use_erg_diffusion"):
            if not isinstance(getattr(self, name), bool):
                raise LofiError(errors.INVALID_PARAMS, f"{name} must be true or false")
        if self.format not in FORMATS:
            raise LofiError(
                errors.INVALID_FORMAT,
                f"unknown format {self.format!r}; use one of {', '.join(FORMATS)}",
            )
        if self.wav_subtype not in WAV_SUBTYPES:
            raise LofiError(
                errors.INVALID_FORMAT,
                f"unknown wav_subtype {self.wav_subtype!r}; use one of {', '.join(WAV_SUBTYPES)}",
            )
        validate_task_fields(self)


_DEFAULTS: Final = GenerationParams(prompt="-")
BACKEND_FIELDS: Final = backend_fields(GenerationParams.field_names())
"""Each parameter and the backends it may be changed from its default on."""


def accepted_fields(backend: str) -> tuple[str, ...]:
    """The parameters ``backend`` takes (``backends.list``'s ``params``)."""
    return tuple(name for name, owners in BACKEND_FIELDS.items() if backend in owners)


def _check_prompt(name: str, prompt: Any) -> None:
    if not isinstance(prompt, str) or not prompt.strip():
        raise LofiError(errors.INVALID_PROMPT, f"{name} must be a non-empty string")
    _check_text(name, prompt)
    if len(prompt) > MAX_PROMPT_CHARS:
        raise LofiError(
            errors.INVALID_PROMPT,
            f"{name} is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}",
        )


def _check_seed(name: str, seed: Any) -> None:
    if seed is not None and (not _is_int(seed) or not 0 <= seed <= MAX_SEED):
        raise LofiError(
            errors.INVALID_PARAMETER, f"{name} must be an integer in 0..{MAX_SEED}, got {seed!r}"
        )


def _check_text(name: str, prompt: str) -> None:
    """Reject a prompt that is not Unicode text: a lone surrogate (``"\\ud800"`` from a JSON
    escape) or an undecodable byte that Python kept as a surrogate (command-line arguments that
    are not UTF-8). Such a prompt cannot be encoded, so the tokenizer would fail later."""
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LofiError(
            errors.INVALID_PROMPT,
            f"{name} is not valid text: character {exc.start + 1} is not Unicode "
            "(invalid UTF-8 or a lone surrogate)",
        ) from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(name: str, value: Any, code: int) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LofiError(code, f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:
        raise LofiError(code, f"{name} is out of range") from None
    if not math.isfinite(number):
        raise LofiError(code, f"{name} must be finite, got {value!r}")
    return number


def validate_task_fields(params: GenerationParams) -> None:
    """The task's own fields: set only for their task, in range, and consistent with the rest.

    Source-independent checks only; the engine checks the region and the extended length against
    the source.
    """
    task = params.task
    for name, tasks in TASK_FIELDS.items():
        if task not in tasks and getattr(params, name) != getattr(_DEFAULTS, name):
            raise LofiError(
                errors.INVALID_PARAMETER,
                f"{name} applies to the task(s) {', '.join(tasks)}, not {task}",
            )
    if params.retake_variance is not None:
        variance = _number("retake_variance", params.retake_variance, errors.INVALID_PARAMETER)
        if not 0.0 <= variance <= 1.0:
            raise LofiError(
                errors.INVALID_PARAMETER,
                f"retake_variance must be between 0 and 1, got {variance:g}",
            )
        if variance == 0.0 and task in ("repaint", "extend"):
            # n_min = int(N·(1 − 0)) = N: no step would run and nothing would change.
            raise LofiError(
                errors.INVALID_PARAMETER,
                f"retake_variance must be above 0 for {task} (0 regenerates nothing)",
            )
    _check_seed("retake_seed", params.retake_seed)
    if task == "repaint":
        _check_repaint(params)
    elif task == "extend":
        _check_extend(params)
    elif task == "audio2audio":
        _check_audio2audio(params)
    elif task == "edit":
        _check_edit(params)


def _seconds(name: str, value: Any) -> float:
    seconds = _number(name, value, errors.INVALID_PARAMETER)
    if not 0.0 <= seconds <= MAX_DURATION_SEC:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"{name} must be between 0 and {MAX_DURATION_SEC:g} seconds, got {seconds:g}",
        )
    return seconds


def _check_repaint(params: GenerationParams) -> None:
    start = _seconds("repaint_start", params.repaint_start)
    end = _seconds("repaint_end", params.repaint_end)
    if seconds_to_frames(end) <= seconds_to_frames(start):
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"repaint_end ({end:g} s) must be after repaint_start ({start:g} s) by at least "
            f"one latent frame ({SAMPLES_PER_LATENT_FRAME / SAMPLE_RATE_MODEL:.3f} s)",
        )


def _check_extend(params: GenerationParams) -> None:
    left = _seconds("extend_left", params.extend_left)
    right = _seconds("extend_right", params.extend_right)
    if seconds_to_frames(left) + seconds_to_frames(right) < 1:
        raise LofiError(
            errors.INVALID_PARAMETER,
            "extend needs extend_left or extend_right of at least one latent frame "
            f"({SAMPLES_PER_LATENT_FRAME / SAMPLE_RATE_MODEL:.3f} s)",
        )


def _check_audio2audio(params: GenerationParams) -> None:
    strength = _number("ref_strength", params.ref_strength, errors.INVALID_PARAMETER)
    if not 0.0 <= strength < 1.0:
        raise LofiError(
            errors.INVALID_PARAMETER, f"ref_strength must be in [0, 1), got {strength:g}"
        )
    # upstream add_latents_noise: N' = int((1 − strength)·infer_steps) steps run
    if int((1.0 - strength) * params.infer_steps) < 1:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"ref_strength {strength:g} with infer_steps {params.infer_steps} leaves no step "
            "to run (int((1 - ref_strength) * infer_steps) must be at least 1)",
        )


def _check_edit(params: GenerationParams) -> None:
    if params.edit_prompt is None:
        raise LofiError(errors.INVALID_PROMPT, "edit needs edit_prompt (the target prompt)")
    _check_prompt("edit_prompt", params.edit_prompt)
    n_min = _number("edit_n_min", params.edit_n_min, errors.INVALID_PARAMETER)
    n_max = _number("edit_n_max", params.edit_n_max, errors.INVALID_PARAMETER)
    if not 0.0 <= n_min < n_max <= 1.0:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"edit_n_min and edit_n_max must satisfy 0 <= edit_n_min < edit_n_max <= 1, "
            f"got {n_min:g} and {n_max:g}",
        )
    if not _is_int(params.edit_n_avg) or not 1 <= params.edit_n_avg <= MAX_EDIT_N_AVG:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"edit_n_avg must be an integer in 1..{MAX_EDIT_N_AVG}, got {params.edit_n_avg!r}",
        )
    # upstream flowedit_diffusion_process always steps with Euler timesteps (its pingpong branch
    # never updates the latents, heun is Euler there) and its calc_v knows apg and cfg only.
    if params.scheduler != "euler":
        raise LofiError(
            errors.INVALID_SCHEDULER,
            f"edit runs with the euler scheduler only, got scheduler {params.scheduler!r}",
        )
    if params.cfg_type == "cfg_star":
        raise LofiError(errors.INVALID_CFG_TYPE, "edit supports cfg_type apg or cfg, not cfg_star")
