"""A small T5-convention tokenizer built locally with the ``tokenizers`` library.

The real checkpoint ships the 256,384-entry UMT5 SentencePiece tokenizer; random-weight checkpoints
need one with the same conventions (pad 0, ``</s>`` 1 appended to every sequence, unk 2,
Metaspace pre-tokenization) and ids inside the embedding table.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from pathlib import Path

from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
)

SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")

_GENRES = (
    "lofi",
    "hip hop",
    "jazz",
    "chillhop",
    "ambient",
    "boom bap",
    "synthwave",
    "bossa nova",
    "downtempo",
    "house",
    "soul",
    "funk",
    "trip hop",
    "piano",
    "acoustic",
    "electronic",
)
_INSTRUMENTS = (
    "piano",
    "rhodes",
    "guitar",
    "bass",
    "drums",
    "vinyl crackle",
    "saxophone",
    "strings",
    "synth pad",
    "kick",
    "snare",
    "hi-hat",
    "flute",
    "trumpet",
    "vocals",
    "organ",
)
_MOODS = (
    "relaxed",
    "calm",
    "warm",
    "dreamy",
    "nostalgic",
    "mellow",
    "melancholic",
    "cozy",
    "rainy",
    "late night",
    "sunny",
    "focused",
    "soft",
    "dusty",
    "slow",
    "upbeat",
)
_TEMPOS = ("70 bpm", "80 bpm", "85 bpm", "90 bpm", "100 bpm", "120 bpm")


def _corpus() -> list[str]:
    lines = []
    for genre, instrument, mood, tempo in itertools.product(
        _GENRES, _INSTRUMENTS, _MOODS[:6], _TEMPOS[:3]
    ):
        lines.append(f"{mood} {genre}, {instrument}, {tempo}")
    return lines


def _vocabulary() -> list[tuple[str, float]]:
    """Unigram pieces with log-frequency scores, computed (not trained) so that they are the same
    bytes on every run: the ``tokenizers`` Unigram trainer is not bit-for-bit reproducible.

    Pieces: the special tokens (ids 0, 1, 2), every corpus word with its ``▁`` prefix (trailing
    commas split off) and every single character, so any corpus text can be segmented.
    """
    counts: Counter[str] = Counter()
    for line in _corpus():
        for word in line.split():
            counts["▁" + word.rstrip(",")] += 1
            counts.update("▁" + word)
    total = sum(counts.values())
    pieces = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [(token, 0.0) for token in SPECIAL_TOKENS] + [
        (piece, math.log(count / total)) for piece, count in pieces
    ]


def build_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(
        models.Unigram(_vocabulary(), unk_id=SPECIAL_TOKENS.index("<unk>"), byte_fallback=False)
    )
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))  # already ids 0-2; marks them special
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return tokenizer


def write_tokenizer_files(folder: Path) -> None:
    """tokenizer.json plus the two small JSON files transformers expects beside it."""
    tokenizer = build_tokenizer()
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}, indent=2)
    )
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "T5Tokenizer",
                "model_max_length": 512,
                "eos_token": "</s>",
                "pad_token": "<pad>",
                "unk_token": "<unk>",
                "extra_ids": 0,
            },
            indent=2,
        )
    )
