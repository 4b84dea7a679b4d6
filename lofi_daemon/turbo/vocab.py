"""The values ACE-Step 1.5 accepts for its metadata, written out as our own tuples.

Upstream ``acestep/constants.py`` defines the same sets (``VALID_LANGUAGES``, ``VALID_KEYSCALES``,
``BPM_MIN``/``BPM_MAX``, ``VALID_TIME_SIGNATURES``) and the text2music instruction
(``DEFAULT_DIT_INSTRUCTION``); the turbo model was trained with prompts built from them.
"""

from __future__ import annotations

from typing import Final

#: Vocal languages (ISO 639-1 codes, plus ``yue`` for Cantonese and ``unknown``).
VALID_LANGUAGES: Final = (
    "ar",
    "az",
    "bg",
    "bn",
    "ca",
    "cs",
    "da",
    "de",
    "el",
    "en",
    "es",
    "fa",
    "fi",
    "fr",
    "he",
    "hi",
    "hr",
    "ht",
    "hu",
    "id",
    "is",
    "it",
    "ja",
    "ko",
    "la",
    "lt",
    "ms",
    "ne",
    "nl",
    "no",
    "pa",
    "pl",
    "pt",
    "ro",
    "ru",
    "sa",
    "sk",
    "sr",
    "sv",
    "sw",
    "ta",
    "te",
    "th",
    "tl",
    "tr",
    "uk",
    "ur",
    "vi",
    "yue",
    "zh",
    "unknown",
)
DEFAULT_LANGUAGE: Final = "unknown"

#: Key names: a note, an optional accidental (ASCII or Unicode sharp/flat) and the mode;
#: 7 × 5 × 2 = 70 names such as ``"C major"``, ``"F# minor"``, ``"B♭ major"``.
KEY_NOTES: Final = ("A", "B", "C", "D", "E", "F", "G")
KEY_ACCIDENTALS: Final = ("", "#", "b", "♯", "♭")
KEY_MODES: Final = ("major", "minor")
VALID_KEYSCALES: Final = tuple(
    f"{note}{accidental} {mode}"
    for note in KEY_NOTES
    for accidental in KEY_ACCIDENTALS
    for mode in KEY_MODES
)

BPM_MIN: Final = 30
BPM_MAX: Final = 300
#: Time signatures as their numerator: 2/4, 3/4, 4/4 and 6/8.
VALID_TIME_SIGNATURES: Final = (2, 3, 4, 6)
#: Turbo's schedule tables exist for these shifts only (``modeling_acestep_v15_turbo.py``).
VALID_SHIFTS: Final = (1, 2, 3)

#: The text2music instruction (upstream ``DEFAULT_DIT_INSTRUCTION``).
TEXT2MUSIC_INSTRUCTION: Final = "Fill the audio semantic mask based on the given conditions:"
#: The lyrics of an instrumental track (the no-vocal condition the DiT was trained with).
INSTRUMENTAL_LYRICS: Final = "[Instrumental]"
#: Qwen's end-of-text token, written literally into both templates.
END_OF_TEXT: Final = "<|endoftext|>"
