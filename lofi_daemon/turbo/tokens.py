"""Caption and lyric texts → Qwen token ids, as upstream's tokenizer calls produce them.

Upstream (``ConditioningTextMixin._prepare_text_conditioning_inputs``) calls the Qwen3-Embedding
tokenizer with ``truncation=True`` and ``max_length`` 256 (caption) or 2048 (lyrics). The
tokenizer's post-processor appends ``<|endoftext|>`` to every encoding, after the one the
templates write literally, and truncation keeps room for it. Here the caption is truncated the
same way, but lyrics are never cut: a user's words that do not fit are an error that says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from lofi_daemon import errors
from lofi_daemon.errors import LofiError


class TurboTokenizer:
    """The model directory's ``tokenizer.json``, used with its own post-processor."""

    def __init__(self, path: Path, text_max_tokens: int, lyric_max_tokens: int) -> None:
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:
            raise LofiError(
                errors.MODEL_LOAD_FAILED,
                f"cannot load tokenizer {path}: {errors.first_line(exc, 300)}",
                remedy="Run :Lofi setup ace-step-1.5 to repair the installation.",
            ) from exc
        tokenizer.no_padding()
        self._caption = tokenizer
        self._lyrics = Tokenizer.from_str(tokenizer.to_str())
        # The tokenizers library subtracts the post-processor's added tokens from max_length,
        # as transformers' fast tokenizer does with truncation=True.
        self._caption.enable_truncation(text_max_tokens)
        self._lyrics.no_truncation()
        self.text_max_tokens = text_max_tokens
        self.lyric_max_tokens = lyric_max_tokens

    def caption_ids(self, text: str) -> np.ndarray:
        """int64 ``[1, Lt]``, at most ``text_max_tokens`` ids, ending with the appended one."""
        return _ids(self._caption.encode(text).ids)

    def lyric_ids(self, text: str) -> np.ndarray:
        """int64 ``[1, Ly]``; INVALID_PARAMETER naming the count when over ``lyric_max_tokens``."""
        ids = self._lyrics.encode(text).ids
        if len(ids) > self.lyric_max_tokens:
            raise LofiError(
                errors.INVALID_PARAMETER,
                f"lyrics are {len(ids)} tokens long with their header; the limit is "
                f"{self.lyric_max_tokens} tokens",
                remedy="Shorten the lyrics (they are never cut silently).",
            )
        return _ids(ids)


def _ids(ids: list[int]) -> np.ndarray:
    if not ids:
        raise LofiError(errors.MODEL_LOAD_FAILED, "the tokenizer produced no tokens")
    return np.asarray([ids], dtype=np.int64)
