"""A station's settings: the ``radio.start`` params, their ranges and their validation.

The ranges follow from how a station is built (see ``docs/protocol.md``, ``radio.start``):

* ``segment_sec`` new seconds per generated segment; the first is text2music of that length.
* ``context_sec`` seconds at the end of the previous generated segment that an ``extend``
  continues from. They are cut from that segment, so ``context_sec <= segment_sec``, and the
  extend output holds both (``context_sec + segment_sec`` within the engine's 240 s).
* ``crossfade_sec`` of each join; every file holds back ``hold = crossfade + JOIN_MARGIN_SEC``
  seconds for the next one, which must fit in half of the context and of a segment.
* ``variation`` generated segments per prompt block (0: the prompt never moves).
* ``ahead`` segments generated ahead of the playhead.

The generation overrides (``GENERATION_FIELDS``) follow the ``generate`` rules: they are checked
by building the :class:`GenerationParams` of the first segment (text2music) and of a continuation
(extend), so every code and message is the one ``generate`` gives.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.pipeline.params import (
    MAX_DURATION_SEC,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    GenerationParams,
    seconds_to_frames,
)
from lofi_daemon.radio.joins import JOIN_MARGIN_SEC, JoinSettings
from lofi_daemon.radio.prompts import MAX_TAG_SUFFIX_CHARS

MIN_SEGMENT_SEC: Final = 5.0
MAX_SEGMENT_SEC: Final = 120.0
DEFAULT_SEGMENT_SEC: Final = 30.0
MIN_CONTEXT_SEC: Final = 5.0
DEFAULT_CONTEXT_SEC: Final = 30.0
"""The context when not given; a shorter ``segment_sec`` lowers it to ``segment_sec``."""
MIN_CROSSFADE_SEC: Final = 0.1
MAX_CROSSFADE_SEC: Final = 5.0
DEFAULT_CROSSFADE_SEC: Final = 1.5
MIN_VARIATION: Final = 0
MAX_VARIATION: Final = 100
DEFAULT_VARIATION: Final = 4
MIN_AHEAD: Final = 1
MAX_AHEAD: Final = 4
DEFAULT_AHEAD: Final = 2

GENERATION_FIELDS: Final = (
    "infer_steps",
    "guidance_scale",
    "scheduler",
    "cfg_type",
    "omega_scale",
    "guidance_interval",
    "guidance_interval_decay",
    "min_guidance_scale",
    "guidance_scale_text",
    "guidance_scale_lyric",
    "use_erg_tag",
    "use_erg_lyric",
    "use_erg_diffusion",
    "retake_variance",
)
"""Generation parameters a station passes to every segment (``retake_variance``: extend only)."""
EXTEND_ONLY_FIELDS: Final = ("retake_variance",)
START_PARAMS: Final = (
    "prompt",
    "seed",
    "segment_sec",
    "context_sec",
    "crossfade_sec",
    "variation",
    "ahead",
    "variant",
    *GENERATION_FIELDS,
)
_EPSILON: Final = 1e-9  # float slack for the inclusive limits that sum two settings


@dataclass(frozen=True)
class StationConfig:
    """A validated station configuration (build it with :meth:`from_params`)."""

    prompt: str
    seed: int
    segment_sec: float = DEFAULT_SEGMENT_SEC
    context_sec: float = DEFAULT_CONTEXT_SEC
    crossfade_sec: float = DEFAULT_CROSSFADE_SEC
    variation: int = DEFAULT_VARIATION
    ahead: int = DEFAULT_AHEAD
    generation: Mapping[str, Any] = field(default_factory=dict)
    variant: str | None = None

    @property
    def join(self) -> JoinSettings:
        return JoinSettings.for_crossfade(self.crossfade_sec)

    @property
    def context_frames(self) -> int:
        """Latent frames of the context each continuation starts from."""
        return seconds_to_frames(self.context_sec)

    def text2music_overrides(self) -> dict[str, Any]:
        """The generation overrides that apply to the first (text2music) segment."""
        return {k: v for k, v in self.generation.items() if k not in EXTEND_ONLY_FIELDS}

    @classmethod
    def from_params(cls, params: Mapping[str, Any], *, seed: int) -> StationConfig:
        """Validate the ``radio.start`` params; ``seed`` is the station seed the caller resolved
        (``params["seed"]`` or a random one).

        Raises:
            LofiError: INVALID_PARAMS for an unknown name or a ``variant`` that is not a
                non-empty string; INVALID_PROMPT for the prompt (the ``generate`` rules);
                INVALID_PARAMETER naming the field, its value and its range; the ``generate``
                codes for a bad generation override.
        """
        unknown = sorted(set(params) - set(START_PARAMS))
        if unknown:
            names = ", ".join(repr(str(name)[:40]) for name in unknown[:5])
            raise LofiError(errors.INVALID_PARAMS, f"radio.start does not take {names}")
        _check_seed(seed)
        if params.get("seed") is not None:
            _check_seed(params["seed"])
        prompt = _prompt(params)
        variation = _integer(params, "variation", DEFAULT_VARIATION, MIN_VARIATION, MAX_VARIATION)
        if variation > 0 and len(prompt) + MAX_TAG_SUFFIX_CHARS > MAX_PROMPT_CHARS:
            raise LofiError(
                errors.INVALID_PROMPT,
                f"prompt is {len(prompt)} characters; with variation the limit is "
                f"{MAX_PROMPT_CHARS - MAX_TAG_SUFFIX_CHARS} (the station appends up to "
                f"{MAX_TAG_SUFFIX_CHARS} characters of tags to it), or use variation 0",
            )
        segment = _seconds(
            params, "segment_sec", DEFAULT_SEGMENT_SEC, MIN_SEGMENT_SEC, MAX_SEGMENT_SEC
        )
        context = _seconds(
            params, "context_sec", min(DEFAULT_CONTEXT_SEC, segment), MIN_CONTEXT_SEC
        )
        if context > segment:
            raise LofiError(
                errors.INVALID_PARAMETER,
                f"context_sec ({context:g} s) must not exceed segment_sec ({segment:g} s): "
                "the context is cut from the previous segment",
            )
        if context + segment > MAX_DURATION_SEC + _EPSILON:
            raise LofiError(
                errors.INVALID_PARAMETER,
                f"context_sec + segment_sec ({context + segment:g} s) must not exceed "
                f"{MAX_DURATION_SEC:g} s: a continuation generates both",
            )
        crossfade = _seconds(
            params, "crossfade_sec", DEFAULT_CROSSFADE_SEC, MIN_CROSSFADE_SEC, MAX_CROSSFADE_SEC
        )
        hold = crossfade + JOIN_MARGIN_SEC
        if hold > context / 2 + _EPSILON:
            raise LofiError(
                errors.INVALID_PARAMETER,
                f"crossfade_sec ({crossfade:g} s) is too long for context_sec ({context:g} s): "
                f"each file holds back crossfade + {JOIN_MARGIN_SEC:g} s = {hold:g} s for the "
                f"next join, which must fit in half of the context ({context / 2:g} s)",
            )
        ahead = _integer(params, "ahead", DEFAULT_AHEAD, MIN_AHEAD, MAX_AHEAD)
        variant = params.get("variant")
        if variant is not None and (not isinstance(variant, str) or not variant.strip()):
            raise LofiError(errors.INVALID_PARAMS, "variant must be a non-empty string")
        generation = {
            name: params[name]
            for name in GENERATION_FIELDS
            if name in params and not (name in EXTEND_ONLY_FIELDS and params[name] is None)
        }
        config = cls(
            prompt=prompt,
            seed=seed,
            segment_sec=segment,
            context_sec=context,
            crossfade_sec=crossfade,
            variation=variation,
            ahead=ahead,
            generation=generation,
            variant=variant,
        )
        config._check_generation()
        return config

    def _check_generation(self) -> None:
        """Build the first segment's and a continuation's params: the ``generate`` checks."""
        GenerationParams(
            prompt=self.prompt, duration_sec=self.segment_sec, **self.text2music_overrides()
        ).validate()
        GenerationParams(
            prompt=self.prompt,
            seed=0,
            retake_seed=0,
            task="extend",
            extend_right=self.segment_sec,
            **self.generation,
        ).validate()

    def to_json(self) -> dict[str, Any]:
        """The settings as ``radio.start`` params (``from_params`` of this gives it back)."""
        return {
            "prompt": self.prompt,
            "seed": self.seed,
            "segment_sec": self.segment_sec,
            "context_sec": self.context_sec,
            "crossfade_sec": self.crossfade_sec,
            "variation": self.variation,
            "ahead": self.ahead,
            "variant": self.variant,
            **self.generation,
        }


def _prompt(params: Mapping[str, Any]) -> str:
    """The prompt, by the ``generate`` rules (``GenerationParams.validate`` checks the prompt
    first, and its other fields are the valid defaults here)."""
    if "prompt" not in params:
        raise LofiError(errors.INVALID_PROMPT, "radio.start needs a prompt")
    prompt = params["prompt"]
    GenerationParams(prompt=prompt).validate()
    return str(prompt)


def _check_seed(seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"seed must be an integer in 0..{MAX_SEED}, got {_shown(seed)}",
        )


def _shown(value: Any) -> str:
    return repr(value)[:60]


def _seconds(
    params: Mapping[str, Any], name: str, default: float, low: float, high: float | None = None
) -> float:
    """``params[name]`` (or ``default``) as a finite number of seconds in ``low..high``."""
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LofiError(
            errors.INVALID_PARAMETER, f"{name} must be a number of seconds, got {_shown(value)}"
        )
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise LofiError(errors.INVALID_PARAMETER, f"{name} must be finite, got {_shown(value)}")
    if high is not None and not low <= seconds <= high:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"{name} must be between {low:g} and {high:g} seconds, got {seconds:g}",
        )
    if seconds < low:
        raise LofiError(
            errors.INVALID_PARAMETER, f"{name} must be at least {low:g} seconds, got {seconds:g}"
        )
    return seconds


def _integer(params: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"{name} must be an integer in {low}..{high}, got {_shown(value)}",
        )
    return value
