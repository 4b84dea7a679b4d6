"""A tiny byte-level BPE tokenizer in the layout of the Qwen3-Embedding-0.6B bundle.

The real Qwen vocabulary (151,643 BPE entries + 26 added tokens) is not downloadable here, so the
random checkpoints ship a small one with the same conventions: GPT-2 style byte-level BPE (any
text encodes, no unknown token), ``<|endoftext|>``, ``<|im_start|>`` and ``<|im_end|>`` as
special added tokens right after the BPE entries, and a post-processor that **appends**
``<|endoftext|>`` to every encoding, as the published tokenizer does (doc §3). No BOS.

The BPE is trained with the ``tokenizers`` library on a built-in corpus (lofi vocabulary, the
prompt templates, letters, digits, punctuation); ``build_tokenizer`` checks that the result has
exactly ``TINY_VOCAB_SIZE`` entries. Files are written from the trained tokenizer's serialisation,
which lists the vocabulary by id and the merges by rank, so the bytes are the same on every run.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from ..errors import ExportError
from .presets import TINY_EOS_ID, TINY_VOCAB_SIZE

EOS = "<|endoftext|>"
SPECIAL_TOKENS = (EOS, "<|im_start|>", "<|im_end|>")
BPE_SIZE = TINY_VOCAB_SIZE - len(SPECIAL_TOKENS)

_WORDS = (
    "lofi hip hop jazz chillhop ambient boom bap synthwave bossa nova downtempo house soul funk "
    "trip piano rhodes guitar bass drums vinyl crackle saxophone strings synth pad kick snare "
    "hi-hat flute trumpet vocals organ relaxed calm warm dreamy nostalgic mellow melancholic cozy "
    "rainy late night sunny focused soft dusty slow upbeat beat beats chill study sleep rain "
    "coffee tape lo-fi instrumental major minor seconds bpm keyscale timesignature duration "
    "Instruction Fill the audio semantic mask based on given conditions Caption Metas Languages "
    "Lyric Instrumental unknown en zh ja ko es fr de verse chorus bridge intro outro N/A"
)
_TEMPLATES = (
    (
        "# Instruction\nFill the audio semantic mask based on the given conditions:\n\n"
        "# Caption\nlofi hip hop beat, mellow rhodes, vinyl crackle\n\n"
        "# Metas\n- bpm: 80\n- timesignature: 4\n- keyscale: C major\n- duration: 30 seconds\n"
    ),
    "# Metas\n- bpm: N/A\n- timesignature: N/A\n- keyscale: N/A\n- duration: 120 seconds\n",
    "# Languages\nunknown\n\n# Lyric\n[Instrumental]",
    "# Languages\nen\n\n# Lyric\n[verse]\nrain on the window, coffee in my hand\n[chorus]\n",
    "F# minor, Bb major, A minor; 90 bpm; 3/4 time (slow) - \"quiet\" 'soft' 100% ok!?",
)


def _corpus() -> list[str]:
    letters = " ".join(string.ascii_letters)
    digits = " ".join(string.digits) + " " + " ".join(str(n) for n in range(10, 301, 10))
    punctuation = " ".join(string.punctuation)
    return [_WORDS, letters, digits, punctuation, *_TEMPLATES] * 3


def build_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_SIZE,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    if tokenizer.get_vocab_size() != BPE_SIZE:
        raise ExportError(
            f"tiny tokenizer: trained {tokenizer.get_vocab_size()} entries, not {BPE_SIZE}"
        )
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS]
    )
    if tokenizer.token_to_id(EOS) != TINY_EOS_ID:
        raise ExportError(f"tiny tokenizer: {EOS} has id {tokenizer.token_to_id(EOS)}")
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A:0 {EOS}:0",
        pair=f"$A:0 {EOS}:0 $B:1 {EOS}:1",
        special_tokens=[(EOS, TINY_EOS_ID)],
    )
    return tokenizer


def _added_tokens_decoder() -> dict[str, Any]:
    return {
        str(TINY_EOS_ID + i): {
            "content": token,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i, token in enumerate(SPECIAL_TOKENS)
    }


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_tokenizer_files(folder: Path) -> None:
    """Write tokenizer.json, tokenizer_config.json, vocab.json, merges.txt, added_tokens.json and
    special_tokens_map.json into ``folder`` (``transformers`` ``Qwen2Tokenizer`` layout)."""
    tokenizer = build_tokenizer()
    data = json.loads(tokenizer.to_str())
    _write_json(folder / "tokenizer.json", data)
    vocab = data["model"]["vocab"]
    (folder / "vocab.json").write_text(
        json.dumps(vocab, ensure_ascii=False, separators=(",", ":")), encoding="utf-8"
    )
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{m}\n" for m in merges), encoding="utf-8"
    )
    _write_json(
        folder / "added_tokens.json", {t: TINY_EOS_ID + i for i, t in enumerate(SPECIAL_TOKENS)}
    )
    eos = {
        "content": EOS,
        "lstrip": False,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
    }
    _write_json(
        folder / "special_tokens_map.json",
        {"additional_special_tokens": list(SPECIAL_TOKENS[1:]), "eos_token": eos, "pad_token": eos},
    )
    _write_json(
        folder / "tokenizer_config.json",
        {
            "add_bos_token": False,
            "add_prefix_space": False,
            "added_tokens_decoder": _added_tokens_decoder(),
            "additional_special_tokens": list(SPECIAL_TOKENS[1:]),
            "bos_token": None,
            "clean_up_tokenization_spaces": False,
            "eos_token": EOS,
            "errors": "replace",
            "model_max_length": 32768,
            "pad_token": EOS,
            "split_special_tokens": False,
            "tokenizer_class": "Qwen2Tokenizer",
            "unk_token": None,
        },
    )
