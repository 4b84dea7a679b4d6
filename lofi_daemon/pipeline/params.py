"""Generation parameters: defaults, ranges and validation, shared by the CLI and the daemon.

Defaults are the reference ``ACEStepPipeline.__call__`` defaults, except ``infer_steps``
(27, the reference's fast setting) and ``duration_sec`` (30 s).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Final, Literal

from lofi_daemon import errors
from lofi_daemon.errors import LofiError

Scheduler = Literal["euler", "heun", "pingpong"]
CfgType = Literal["apg", "cfg", "cfg_star"]
AudioFormat = Literal["wav", "flac", "ogg"]

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


@dataclass(frozen=True)
class GenerationParams:
    """Everything that decides the audio of one text2music generation."""

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

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationParams:
        """Build and validate parameters from a plain mapping (unknown keys are an error)."""
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
        data = self.to_dict()
        data["seed"] = seed
        return GenerationParams(**data)

    def validate(self) -> None:
        """Raise a :class:`LofiError` naming the first invalid parameter."""
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise LofiError(errors.INVALID_PROMPT, "prompt must be a non-empty string")
        _check_text(self.prompt)
        if len(self.prompt) > MAX_PROMPT_CHARS:
            raise LofiError(
                errors.INVALID_PROMPT,
                f"prompt is {len(self.prompt)} characters; the limit is {MAX_PROMPT_CHARS}",
            )
        duration = _number("duration_sec", self.duration_sec, errors.INVALID_DURATION)
        if not MIN_DURATION_SEC <= duration <= MAX_DURATION_SEC:
            raise LofiError(
                errors.INVALID_DURATION,
                f"duration_sec must be between {MIN_DURATION_SEC:g} and {MAX_DURATION_SEC:g}, "
                f"got {duration:g}",
            )
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED):
            raise LofiError(
                errors.INVALID_PARAMETER,
                f"seed must be an integer in 0..{MAX_SEED}, got {self.seed!r}",
            )
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


def _check_text(prompt: str) -> None:
    """Reject a prompt that is not Unicode text: a lone surrogate (``"\\ud800"`` from a JSON
    escape) or an undecodable byte that Python kept as a surrogate (command-line arguments that
    are not UTF-8). Such a prompt cannot be encoded, so the tokenizer would fail later."""
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LofiError(
            errors.INVALID_PROMPT,
            f"prompt is not valid text: character {exc.start + 1} is not Unicode "
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
