"""Prompt → UMT5 token ids, as the reference tokenizer call does.

Upstream (``acestep/pipeline_ace_step.py: ACEStepPipeline.get_text_embeddings``) calls the UMT5
tokenizer with ``padding=True, truncation=True, max_length=256`` on a one-prompt batch: no padding,
at most 256 tokens, ``</s>`` (id 1) appended and kept as the last token when truncating.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from lofi_daemon import errors
from lofi_daemon.errors import LofiError

EOS_ID = 1


class PromptTokenizer:
    def __init__(self, path: Path, max_tokens: int = 256, eos_id: int = EOS_ID) -> None:
        try:
            self._tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:
            raise LofiError(
                errors.MODEL_LOAD_FAILED, f"cannot load tokenizer {path}: {exc}"
            ) from exc
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.max_tokens = max_tokens
        self.eos_id = eos_id

    def encode(self, prompt: str) -> tuple[np.ndarray, np.ndarray]:
        """ids and attention mask, both int64 [1, L] with 1 ≤ L ≤ max_tokens."""
        ids = list(self._tokenizer.encode(prompt).ids)
        if not ids or ids[-1] != self.eos_id:
            ids.append(self.eos_id)
        if len(ids) > self.max_tokens:
            ids = [*ids[: self.max_tokens - 1], self.eos_id]
        array = np.asarray([ids], dtype=np.int64)
        return array, np.ones_like(array)
