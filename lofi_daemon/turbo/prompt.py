"""The caption and lyric texts the 1.5 turbo conditions on, exactly as upstream builds them.

Caption: ``constants.SFT_GEN_PROMPT`` filled by ``ConditioningTextMixin.
_prepare_text_conditioning_inputs`` with the instruction (``PromptMixin._format_instruction``),
the caption and the metadata lines (``MetadataMixin._dict_to_meta_string``). Lyrics:
``PromptMixin._format_lyrics``. Both templates end with a literal ``<|endoftext|>``; the caption
one has a newline after it, the lyric one does not. The tokenizer's post-processor appends one
more ``<|endoftext|>`` id to each (:mod:`lofi_daemon.turbo.tokens`).
"""

from __future__ import annotations

from lofi_daemon.turbo.vocab import (
    DEFAULT_LANGUAGE,
    END_OF_TEXT,
    INSTRUMENTAL_LYRICS,
    TEXT2MUSIC_INSTRUCTION,
)

NOT_GIVEN = "N/A"


def metas_text(
    duration_sec: float,
    bpm: int | None = None,
    time_signature: int | None = None,
    keyscale: str | None = None,
) -> str:
    """The four ``- key: value`` lines; a value not given is ``N/A``, the duration whole seconds."""
    return (
        f"- bpm: {NOT_GIVEN if bpm is None else bpm}\n"
        f"- timesignature: {NOT_GIVEN if time_signature is None else time_signature}\n"
        f"- keyscale: {NOT_GIVEN if keyscale is None else keyscale}\n"
        f"- duration: {int(duration_sec)} seconds\n"
    )


def caption_text(caption: str, metas: str, instruction: str = TEXT2MUSIC_INSTRUCTION) -> str:
    """The text-encoder input: instruction, caption and metas under their headings."""
    if not instruction.endswith(":"):
        instruction += ":"
    return (
        f"# Instruction\n{instruction}\n\n# Caption\n{caption}\n\n# Metas\n{metas}{END_OF_TEXT}\n"
    )


def lyric_text(lyrics: str | None = None, language: str | None = None) -> str:
    """The lyric input: language and lyrics (``[Instrumental]`` when none are given)."""
    words = INSTRUMENTAL_LYRICS if lyrics is None or not lyrics.strip() else lyrics
    return f"# Languages\n{language or DEFAULT_LANGUAGE}\n\n# Lyric\n{words}{END_OF_TEXT}"
