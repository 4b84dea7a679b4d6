"""Which backend takes which generation parameter, and the checks of ACE-Step 1.5's own ones.

:class:`~lofi_daemon.pipeline.params.GenerationParams` holds the parameters of every backend
(``lofi_daemon.model.backends``). A parameter may be changed from its default only on a backend
that has it; otherwise the request is refused with INVALID_PARAMETER naming the parameter and the
backend, so a setting never goes silently unused. ACE-Step 1.5 turbo has no guidance, no
scheduler choice and a fixed 8-step schedule (upstream
``acestep/models/turbo/modeling_acestep_v15_turbo.py``: ``generate_audio``), and of the audio
tasks lofi.nvim runs only text2music on it; v1 has no lyrics language, no metadata (bpm, key,
time signature) and no ``shift``.

The value lists are upstream's (``acestep/constants.py``: ``VALID_LANGUAGES``,
``VALID_KEYSCALES``, ``BPM_MIN``/``BPM_MAX``, ``VALID_TIME_SIGNATURES``), kept in
:mod:`lofi_daemon.turbo.vocab`.
"""

from __future__ import annotations

from typing import Any, Final

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model import backends, turbo_layout
from lofi_daemon.turbo.vocab import (
    BPM_MAX,
    BPM_MIN,
    VALID_KEYSCALES,
    VALID_LANGUAGES,
    VALID_SHIFTS,
    VALID_TIME_SIGNATURES,
)

V1: Final = backends.V1.name
TURBO: Final = backends.TURBO.name

#: Parameters every backend has.
SHARED_FIELDS: Final = ("prompt", "duration_sec", "seed", "format", "wav_subtype", "backend")
#: Parameters only ACE-Step 1.5 has; every other one is v1's only.
TURBO_FIELDS: Final = ("lyrics", "vocal_language", "bpm", "keyscale", "time_signature", "shift")
#: The one task a turbo request may ask for.
TURBO_TASKS: Final = ("text2music",)

#: A cheap bound on the lyrics before they are tokenized (the engine then refuses more than
#: ``turbo_layout.LYRIC_MAX_TOKENS`` tokens; lyrics are never cut).
MAX_LYRICS_CHARS: Final = 16 * 1024


def backend_fields(names: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Each parameter name and the backends it may be changed from its default on."""
    table: dict[str, tuple[str, ...]] = {}
    for name in names:
        if name in SHARED_FIELDS:
            table[name] = (V1, TURBO)
        elif name in TURBO_FIELDS:
            table[name] = (TURBO,)
        else:
            table[name] = (V1,)
    return table


def check_backend_name(backend: object) -> str:
    """``backend`` when it names a known backend, else INVALID_BACKEND."""
    if not isinstance(backend, str) or backend not in backends.BACKENDS:
        shown = repr(backend)[:60]
        raise LofiError(
            errors.INVALID_BACKEND,
            f"unknown backend {shown}; use one of {', '.join(backends.NAMES)}",
        )
    return backend


def check_backend_fields(params: Any, defaults: Any, table: dict[str, tuple[str, ...]]) -> None:
    """Refuse a parameter changed from its default (``defaults``) on a backend without it."""
    backend = params.backend
    if backend == TURBO and params.task not in TURBO_TASKS:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"task {params.task!r} is not available on the backend {backend}: it runs "
            f"{', '.join(TURBO_TASKS)} only (use the backend {V1} for {params.task})",
        )
    for name, owners in table.items():
        if backend in owners or name == "task":
            continue
        if _differs(getattr(params, name), getattr(defaults, name)):
            raise LofiError(
                errors.INVALID_PARAMETER,
                f"{name} is not a parameter of the backend {backend} "
                f"(it applies to {', '.join(owners)})",
            )


def _differs(value: Any, default: Any) -> bool:
    """``value`` is not its default (equal numbers are alike; a bool never equals a number)."""
    return isinstance(value, bool) != isinstance(default, bool) or value != default


def check_turbo_fields(params: Any) -> None:
    """The values of ACE-Step 1.5's own parameters (on any backend they are default on v1)."""
    lyrics = params.lyrics
    if lyrics is not None:
        if not isinstance(lyrics, str) or not lyrics.strip():
            raise LofiError(
                errors.INVALID_PARAMETER,
                "lyrics must be non-empty text (leave them out for an instrumental)",
            )
        try:
            lyrics.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise LofiError(
                errors.INVALID_PARAMETER,
                f"lyrics are not valid text: character {exc.start + 1} is not Unicode",
            ) from None
        if len(lyrics) > MAX_LYRICS_CHARS:
            raise LofiError(
                errors.INVALID_PARAMETER,
                f"lyrics are {len(lyrics)} characters; the limit is {MAX_LYRICS_CHARS} "
                f"(and {turbo_layout.LYRIC_MAX_TOKENS} tokens)",
            )
    language = params.vocal_language
    if not isinstance(language, str) or language not in VALID_LANGUAGES:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"unknown vocal_language {_shown(language)}; use a code such as en, de, ja, zh "
            "or unknown",
        )
    bpm = params.bpm
    if bpm is not None and (not _is_int(bpm) or not BPM_MIN <= bpm <= BPM_MAX):
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"bpm must be a whole number in {BPM_MIN}..{BPM_MAX}, got {_shown(bpm)}",
        )
    keyscale = params.keyscale
    if keyscale is not None and (not isinstance(keyscale, str) or keyscale not in VALID_KEYSCALES):
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"unknown key {_shown(keyscale)}; use a note A-G, optionally # or b, then major or "
            'minor, e.g. "F# minor" or "Bb major"',
        )
    signature = params.time_signature
    if signature is not None and (not _is_int(signature) or signature not in VALID_TIME_SIGNATURES):
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"time_signature must be one of {', '.join(map(str, VALID_TIME_SIGNATURES))} "
            f"(beats per bar), got {_shown(signature)}",
        )
    if not _is_int(params.shift) or params.shift not in VALID_SHIFTS:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"shift must be one of {', '.join(map(str, VALID_SHIFTS))}, got {_shown(params.shift)}",
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    return repr(value)[:60]
