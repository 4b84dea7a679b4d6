"""Caption and lyric ids → the DiT's cross-attention sequence ``[1, Ly + 1 + Lt, H]``.

Upstream ``ConditioningEmbedMixin.infer_text_embeddings`` runs the Qwen3 model on the caption ids
(no attention mask, ``last_hidden_state``); ``infer_lyric_embeddings`` only looks the lyric ids
up in its embedding table. ``AceStepConditionEncoder.forward`` projects the text, encodes the
lyrics, and packs ``[lyrics | timbre | text]`` (``pack_sequences``; with one unpadded item the
packing is a plain concatenation). With no reference audio the timbre vector is a constant the
exporter computed (``silence_timbre``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.pipeline.sessions import GraphRunner


def named_outputs(runner: GraphRunner, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``runner`` and return its outputs by name."""
    names = [o.name for o in runner.session.get_outputs()]
    return dict(zip(names, runner(feeds), strict=True))


def embed_lyrics(table: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``[1, Ly, Dt]`` float32 rows of ``table`` ``[V, Dt]`` (may be memory-mapped)."""
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= table.shape[0]):
        raise LofiError(
            errors.MODEL_LOAD_FAILED,
            f"the tokenizer produced id {int(ids.max())}, outside the embedding table "
            f"of {table.shape[0]} rows",
            remedy="Run :Lofi setup ace-step-1.5 to repair the installation.",
        )
    return np.asarray(table[ids[0]], dtype=np.float32)[None]


def pack(lyric_states: np.ndarray, timbre: np.ndarray, text_states: np.ndarray) -> np.ndarray:
    """``[lyrics | timbre | text]`` along the sequence axis."""
    return np.ascontiguousarray(
        np.concatenate([lyric_states, timbre, text_states], axis=1), dtype=np.float32
    )


def encode_conditions(
    text_encoder: Callable[[], GraphRunner],
    condition_encoder: Callable[[], GraphRunner],
    caption_ids: np.ndarray,
    lyric_ids: np.ndarray,
    embed_tokens: np.ndarray,
    silence_timbre: np.ndarray,
    after_unit: Callable[[], None],
) -> np.ndarray:
    """The packed condition sequence. Each encoder is created when needed and dropped after
    its run; ``after_unit`` runs after each (progress and cancellation)."""
    runner = text_encoder()
    text_hidden = np.asarray(runner.first({"input_ids": caption_ids}), dtype=np.float32)
    del runner
    after_unit()
    lyric_embeds = embed_lyrics(embed_tokens, lyric_ids)
    runner = condition_encoder()
    out = named_outputs(runner, {"text_hidden": text_hidden, "lyric_embeds": lyric_embeds})
    del runner
    try:
        text_states, lyric_states = out["text_states"], out["lyric_states"]
    except KeyError as exc:
        raise LofiError(
            errors.MODEL_LOAD_FAILED,
            f"condition_encoder has no output {exc}",
            remedy="Run :Lofi setup ace-step-1.5 to repair the installation.",
        ) from exc
    after_unit()
    timbre = np.asarray(silence_timbre, dtype=np.float32).reshape(1, 1, -1)
    return pack(lyric_states, timbre, text_states)
