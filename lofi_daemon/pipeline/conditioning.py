"""Prompt embeddings → the condition sequences the denoiser attends to.

The variants follow upstream ``acestep/pipeline_ace_step.py: text2music_diffusion_process``: the
conditional ``encode()``, the ERG null branch (weak prompt from ``get_text_embeddings_null`` and
lyric ERG hooks) or zeros, and, for double-condition guidance, the text-only branch.

The text encoder and the condition encoder each run once per generation, with every variant the
guidance needs stacked in one batch; ERG is chosen per batch row through the graphs' q-scale inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lofi_daemon.pipeline.params import GenerationParams

RunGraph = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


def erg_scale_rows(
    n_layers: int, erg_layers: Sequence[int], scale: float, flags: list[bool]
) -> np.ndarray:
    """One q-scale row per batch entry: 1 everywhere, ``scale`` at ``erg_layers`` where the flag is set."""
    rows = np.ones((len(flags), n_layers), dtype=np.float32)
    for row, on in zip(rows, flags, strict=True):
        if on:
            row[[i for i in erg_layers if i < n_layers]] = scale
    return rows


@dataclass(frozen=True)
class Conditions:
    """Condition sequences [1, S, D], all sharing the conditional mask [1, S]."""

    cond: np.ndarray
    mask: np.ndarray
    null: np.ndarray | None
    text_only: np.ndarray | None


def empty_lyrics() -> tuple[np.ndarray, np.ndarray]:
    """Instrumental: one token id 0 with mask 0, not a zero-length tensor.

    Upstream ``ACEStepPipeline.__call__`` starts from ``[[0]]`` ids and mask and replaces them only
    when lyrics are given; the masked token is never attended to.
    """
    return np.zeros((1, 1), dtype=np.int64), np.zeros((1, 1), dtype=np.int64)


def encode_text(
    run: RunGraph,
    ids: np.ndarray,
    mask: np.ndarray,
    *,
    n_layers: int,
    erg_layers: Sequence[int],
    erg_scale: float,
    with_weak: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """UMT5 prompt embedding, plus the ERG-tag "weak prompt" embedding in the same call if asked."""
    flags = [False, True] if with_weak else [False]
    batch = len(flags)
    outputs = run(
        {
            "input_ids": np.repeat(ids, batch, axis=0),
            "attention_mask": np.repeat(mask, batch, axis=0),
            "q_scale": erg_scale_rows(n_layers, erg_layers, erg_scale, flags),
        }
    )
    hidden = outputs[0].astype(np.float32, copy=False)
    return hidden[:1], (hidden[1:2] if with_weak else None)


def build_conditions(
    run: RunGraph,
    params: GenerationParams,
    text: np.ndarray,
    text_weak: np.ndarray | None,
    text_mask: np.ndarray,
    lyric_ids: np.ndarray,
    lyric_mask: np.ndarray,
    *,
    speaker_dim: int,
    n_blocks: int,
    erg_layers: Sequence[int],
    erg_scale: float,
    guided: bool,
    double: bool,
) -> Conditions:
    """Encode the conditional branch and the variants guidance needs, in one batched call."""
    zeros_text = np.zeros_like(text)
    zero_ids = np.zeros_like(lyric_ids)
    rows: list[tuple[np.ndarray, np.ndarray, bool]] = [(text, lyric_ids, False)]
    if guided:
        if params.use_erg_lyric:
            weak = text_weak if (params.use_erg_tag and text_weak is not None) else zeros_text
            rows.append((weak, lyric_ids, True))
        else:
            rows.append((zeros_text, zero_ids, False))
    if guided and double:
        rows.append((text, lyric_ids, True) if params.use_erg_lyric else (text, zero_ids, False))
    batch = len(rows)
    cond, cond_mask = run(
        {
            "text_hidden": np.concatenate([r[0] for r in rows], axis=0).astype(np.float32),
            "text_mask": np.repeat(text_mask, batch, axis=0),
            "speaker": np.zeros((batch, speaker_dim), dtype=np.float32),
            "lyric_ids": np.concatenate([r[1] for r in rows], axis=0),
            "lyric_mask": np.repeat(lyric_mask, batch, axis=0),
            "lyric_q_scale": erg_scale_rows(n_blocks, erg_layers, erg_scale, [r[2] for r in rows]),
        }
    )[:2]
    cond = cond.astype(np.float32, copy=False)
    return Conditions(
        cond=cond[:1],
        mask=cond_mask[:1].astype(np.float32, copy=False),
        null=cond[1:2] if guided else None,
        text_only=cond[2:3] if guided and double else None,
    )


@dataclass(frozen=True)
class EditConditions:
    """Condition sequences for FlowEdit: the source and the target prompt, each with its null row.

    Every sequence is ``[1, S, D]`` with its own mask ``[1, S]``; the source's S and the target's
    may differ (their prompts tokenise to different lengths). The null rows exist only when
    guidance runs; their masks differ from the conditional ones (the lyric part is 0).
    """

    src: np.ndarray
    src_mask: np.ndarray
    tar: np.ndarray
    tar_mask: np.ndarray
    src_null: np.ndarray | None = None
    src_null_mask: np.ndarray | None = None
    tar_null: np.ndarray | None = None
    tar_null_mask: np.ndarray | None = None

    @property
    def guided(self) -> bool:
        return self.src_null is not None and self.tar_null is not None


def build_edit_conditions(
    condition_encoder: RunGraph,
    src_text: np.ndarray,
    src_text_mask: np.ndarray,
    tar_text: np.ndarray,
    tar_text_mask: np.ndarray,
    lyric_ids: np.ndarray,
    lyric_mask: np.ndarray,
    *,
    speaker_dim: int,
    n_blocks: int,
    guided: bool = True,
) -> EditConditions:
    """Encode the FlowEdit conditions (``flowedit_diffusion_process``, spec section 13.5).

    Upstream's null branch is zeros for the text embeddings, speaker, lyric ids and lyric mask,
    with the prompt's own text mask; no ERG anywhere (q-scale all ones). Both prompts share the
    lyrics. Prompts of equal token length share one encoder call, others get one call each
    (padding the text would move the lyric tokens' positions).

    Args:
        condition_encoder: the ``condition_encoder`` graph.
        src_text, tar_text: UMT5 states ``[1, L, Dt]`` of the source and the target prompt.
        src_text_mask, tar_text_mask: their masks ``[1, L]``.
        lyric_ids, lyric_mask: ``[1, Y]`` (int64).
        speaker_dim: width of the (zero) speaker embedding.
        n_blocks: lyric conformer blocks (the width of ``lyric_q_scale``).
        guided: build the null rows (classifier-free guidance on).
    """
    zero_ids, zero_mask = np.zeros_like(lyric_ids), np.zeros_like(lyric_mask)
    prompts = [(src_text, src_text_mask), (tar_text, tar_text_mask)]
    # One row per (prompt, conditional|null): (text, text mask, lyric ids, lyric mask).
    rows = []
    for text, text_mask in prompts:
        rows.append((text, text_mask, lyric_ids, lyric_mask))
        if guided:
            rows.append((np.zeros_like(text), text_mask, zero_ids, zero_mask))
    groups = (
        [rows]
        if src_text.shape == tar_text.shape
        else [rows[: len(rows) // 2], rows[len(rows) // 2 :]]
    )
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for group in groups:
        batch = len(group)
        cond, cond_mask = condition_encoder(
            {
                "text_hidden": np.concatenate([r[0] for r in group], axis=0).astype(np.float32),
                "text_mask": np.concatenate([r[1] for r in group], axis=0),
                "speaker": np.zeros((batch, speaker_dim), dtype=np.float32),
                "lyric_ids": np.concatenate([r[2] for r in group], axis=0),
                "lyric_mask": np.concatenate([r[3] for r in group], axis=0),
                "lyric_q_scale": np.ones((batch, n_blocks), dtype=np.float32),
            }
        )[:2]
        cond = cond.astype(np.float32, copy=False)
        cond_mask = cond_mask.astype(np.float32, copy=False)
        out.extend((cond[k : k + 1], cond_mask[k : k + 1]) for k in range(batch))
    if not guided:
        (src, src_mask), (tar, tar_mask) = out
        return EditConditions(src=src, src_mask=src_mask, tar=tar, tar_mask=tar_mask)
    (src, src_mask), (src_null, src_null_mask), (tar, tar_mask), (tar_null, tar_null_mask) = out
    return EditConditions(
        src=src,
        src_mask=src_mask,
        tar=tar,
        tar_mask=tar_mask,
        src_null=src_null,
        src_null_mask=src_null_mask,
        tar_null=tar_null,
        tar_null_mask=tar_null_mask,
    )
