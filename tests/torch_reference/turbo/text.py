"""Prompts, tokens and the Qwen3 text encoder, the upstream way.

Prompt text: ``acestep/constants.py`` (``SFT_GEN_PROMPT``, ``DEFAULT_DIT_INSTRUCTION``),
``MetadataMixin._build_metadata_dict`` / ``_dict_to_meta_string``
(``handler/metadata_utils.py``) and ``PromptMixin._format_lyrics`` (``handler/prompt_utils.py``).
Tokens: ``ConditioningTextMixin._prepare_text_conditioning_inputs`` — the checkpoint's tokenizer
through ``AutoTokenizer`` (padding "longest", truncation at 256 / 2048). Encoder:
``ConditioningEmbedMixin.infer_text_embeddings`` (``Qwen3Model(input_ids)`` with no mask,
``last_hidden_state``) and ``infer_lyric_embeddings`` (``embed_tokens`` lookup only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer

from .layers import AttnShape, additive_mask, pre_norm_layer, rms_norm, rope_tables
from .weights import Checkpoint

INSTRUCTION = "Fill the audio semantic mask based on the given conditions:"
PROMPT_TEMPLATE = "# Instruction\n{}\n\n# Caption\n{}\n\n# Metas\n{}<|endoftext|>\n"
TEXT_MAX_LENGTH = 256
LYRIC_MAX_LENGTH = 2048


def build_metadata(
    bpm: int | None, keyscale: str | None, time_signature: int | str | None, duration: float
) -> dict[str, Any]:
    """``_build_metadata_dict(bpm, key_scale, time_signature, duration)`` as
    ``prepare_batch_data`` calls it for text2music (duration > 0)."""
    ts = "" if time_signature is None else str(time_signature)
    key = keyscale or ""
    return {
        "bpm": bpm if bpm else "N/A",
        "keyscale": key if key.strip() else "N/A",
        "timesignature": ts if ts.strip() and ts != "N/A" else "N/A",
        "duration": f"{int(duration)} seconds",
    }


def meta_string(meta: dict[str, Any]) -> str:
    """``_dict_to_meta_string``: four ``- key: value`` lines."""
    bpm = meta.get("bpm", meta.get("tempo", "N/A"))
    ts = meta.get("timesignature", meta.get("time_signature", "N/A"))
    key = meta.get("keyscale", meta.get("key", meta.get("scale", "N/A")))
    duration = meta.get("duration", meta.get("length", 30))
    if isinstance(duration, (int, float)):
        duration = f"{int(duration)} seconds"
    elif not isinstance(duration, str):
        duration = "30 seconds"
    return f"- bpm: {bpm}\n- timesignature: {ts}\n- keyscale: {key}\n- duration: {duration}\n"


def caption_prompt(caption: str, meta: dict[str, Any]) -> str:
    return PROMPT_TEMPLATE.format(INSTRUCTION, caption, meta_string(meta))


def lyric_prompt(lyrics: str, language: str) -> str:
    """``_format_lyrics``: no trailing newline after ``<|endoftext|>``."""
    return f"# Languages\n{language}\n\n# Lyric\n{lyrics}<|endoftext|>"


def tokenize(tokenizer_dir: Path, text: str, max_length: int) -> torch.Tensor:
    """``self.text_tokenizer(text, padding="longest", truncation=True, max_length=…)`` →
    ``input_ids`` ``[1, L]`` (the tokenizer's post-processor adds what it adds)."""
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    out = tok(text, padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
    ids: torch.Tensor = out.input_ids
    return ids.to(torch.int64)


def qwen3_forward(ck: Checkpoint, input_ids: torch.Tensor) -> torch.Tensor:
    """transformers ``Qwen3Model(input_ids).last_hidden_state``: causal, no padding mask, final
    RMSNorm; ``[1, L]`` → ``[1, L, hidden]``."""
    cfg, state = ck.text_config, ck.text
    assert not cfg.get("use_sliding_window", False), "Qwen3-Embedding runs without a window"
    heads = int(cfg["num_attention_heads"])
    head_dim = int(cfg.get("head_dim") or cfg["hidden_size"] // heads)
    shape = AttnShape(heads, int(cfg["num_key_value_heads"]), head_dim, float(cfg["rms_norm_eps"]))
    x = state["embed_tokens.weight"][input_ids]
    length = x.shape[1]
    rope = rope_tables(length, head_dim, float(cfg["rope_theta"]), x.dtype)
    mask = additive_mask(length, length, x.dtype, causal=True)
    for i in range(int(cfg["num_hidden_layers"])):
        x = pre_norm_layer(state, f"layers.{i}", x, shape, rope, mask)
    return rms_norm(x, state["norm.weight"], shape.eps)


def lyric_embeddings(ck: Checkpoint, lyric_ids: torch.Tensor) -> torch.Tensor:
    """``text_encoder.embed_tokens(lyric_ids)``: a table lookup, no transformer."""
    return ck.text["embed_tokens.weight"][lyric_ids]
