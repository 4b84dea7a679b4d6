"""Prompt → condition sequences → velocity, with the project's torch modules (ERG as q scales).

Upstream: ``acestep/pipeline_ace_step.py``: ``get_text_embeddings`` (UMT5 tokenizer with
``padding=True, truncation=True, max_length=256``), ``get_text_embeddings_null`` (ERG tag hooks),
the ``encode`` variants at the top of ``text2music_diffusion_process`` (lyric ERG hooks) and its
``decode`` calls (diffusion ERG hooks). The upstream hooks multiply a query projection's output by
``tau`` in place; the project's graph modules take the same factor as a per-layer ``q_scale`` input,
so a hook on layers ``range(a, b)`` is a row of ones with ``tau`` at those layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer

from .settings import ERG_DIFFUSION_LAYERS, ERG_LYRIC_LAYERS, ERG_TAU, ERG_TEXT_LAYERS, Settings

SPEAKER_DIM = 512
TEXT_MAX_LENGTH = 256


def q_scale(n_layers: int, hooked: range | None) -> torch.Tensor:
    """``[1, n_layers]``: 1, or ``tau`` on the hooked layers."""
    row = torch.ones(1, n_layers)
    if hooked is not None:
        row[0, list(hooked)] = ERG_TAU
    return row


@dataclass(frozen=True)
class Conditions:
    """``encode()`` outputs: the conditional sequence and mask, the null and text-only variants."""

    cond: torch.Tensor
    mask: torch.Tensor
    null: torch.Tensor
    text_only: torch.Tensor | None


class TorchPipeline:
    """The reference's model calls over ``lofi_export.reference.ReferenceModels``."""

    def __init__(self, models: Any, checkpoint: Path) -> None:
        self.models = models
        self.tokenizer = AutoTokenizer.from_pretrained(str(checkpoint / "umt5-base"))
        self.text_layers = len(models.text_encoder.inner.encoder.block)
        self.lyric_layers = len(models.condition_encoder.inner.lyric_encoder.encoders)
        self.diffusion_layers = len(models.denoiser.inner.transformer_blocks)

    # -- text ------------------------------------------------------------------------------------
    def text_embeddings(self, prompt: str, erg: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``get_text_embeddings`` (or ``get_text_embeddings_null`` with ``erg``): hidden, mask."""
        inputs = self.tokenizer(
            [prompt],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=TEXT_MAX_LENGTH,
        )
        scale = q_scale(self.text_layers, ERG_TEXT_LAYERS if erg else None)
        with torch.no_grad():
            hidden = self.models.text_encoder(inputs["input_ids"], inputs["attention_mask"], scale)
        return hidden, inputs["attention_mask"]

    def encode(
        self,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        lyric_ids: torch.Tensor,
        lyric_mask: torch.Tensor,
        erg: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The transformer's ``encode`` with a zero speaker embedding (lyric ERG if ``erg``)."""
        scale = q_scale(self.lyric_layers, ERG_LYRIC_LAYERS if erg else None)
        speaker = torch.zeros(text.shape[0], SPEAKER_DIM)
        with torch.no_grad():
            cond, mask = self.models.condition_encoder(
                text, text_mask, speaker, lyric_ids, lyric_mask, scale
            )
        return cond, mask

    def velocity(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor,
        mask: torch.Tensor,
        erg: bool = False,
    ) -> torch.Tensor:
        """The transformer's ``decode`` at timestep ``t`` (diffusion ERG if ``erg``)."""
        scale = q_scale(self.diffusion_layers, ERG_DIFFUSION_LAYERS if erg else None)
        with torch.no_grad():
            out: torch.Tensor = self.models.denoiser(
                x, t.reshape(1).expand(x.shape[0]), cond, mask, scale
            )
        return out

    # -- text2music conditions -------------------------------------------------------------------
    def conditions(self, s: Settings) -> Conditions:
        """The condition variants of ``text2music_diffusion_process`` for an instrumental prompt.

        ``__call__`` starts from lyric ids ``[[0]]`` with mask ``[[0]]`` when there are no lyrics.
        """
        text, text_mask = self.text_embeddings(s.prompt)
        text_null = self.text_embeddings(s.prompt, erg=True)[0] if s.use_erg_tag else None
        ids, lyric_mask = torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long)
        cond, mask = self.encode(text, text_mask, ids, lyric_mask)
        if s.use_erg_lyric:
            weak = text_null if text_null is not None else torch.zeros_like(text)
            null = self.encode(weak, text_mask, ids, lyric_mask, erg=True)[0]
        else:
            null = self.encode(
                torch.zeros_like(text), text_mask, torch.zeros_like(ids), lyric_mask
            )[0]
        text_only = None
        if s.double_condition:
            if s.use_erg_lyric:
                text_only = self.encode(text, text_mask, ids, lyric_mask, erg=True)[0]
            else:
                text_only = self.encode(text, text_mask, torch.zeros_like(ids), lyric_mask)[0]
        return Conditions(cond, mask, null, text_only)
