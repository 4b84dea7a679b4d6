"""The tiny byte-level BPE tokenizer written into ``Qwen3-Embedding-0.6B/``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lofi_export.turbo.presets import TINY
from lofi_export.turbo.tokenizer import EOS, SPECIAL_TOKENS, write_tokenizer_files
from tokenizers import Tokenizer

FILES = {
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "special_tokens_map.json",
}
CAPTION = (
    "# Instruction\nFill the audio semantic mask based on the given conditions:\n\n"
    "# Caption\nrainy lofi, café ☕, 3/4 — “warm” tape\n\n"
    "# Metas\n- bpm: 85\n- timesignature: 4\n- keyscale: F# minor\n- duration: 30 seconds\n"
    "<|endoftext|>\n"
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("qwen_tokenizer")
    write_tokenizer_files(out)
    return out


@pytest.fixture(scope="module")
def tok(folder: Path) -> Tokenizer:
    return Tokenizer.from_file(str(folder / "tokenizer.json"))


def test_files_and_vocabulary(folder: Path, tok: Tokenizer) -> None:
    assert {p.name for p in folder.iterdir()} == FILES
    assert tok.get_vocab_size() == TINY.text.vocab_size
    added = json.loads((folder / "added_tokens.json").read_text())
    assert added == {t: TINY.text.eos_token_id + i for i, t in enumerate(SPECIAL_TOKENS)}
    assert tok.token_to_id(EOS) == TINY.text.eos_token_id
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "Qwen2Tokenizer"
    assert config["eos_token"] == config["pad_token"] == EOS
    assert config["bos_token"] is None
    vocab = json.loads((folder / "vocab.json").read_text())
    merges = (folder / "merges.txt").read_text().splitlines()
    assert merges[0] == "#version: 0.2"
    assert len(vocab) == len(merges) - 1 + 256  # byte alphabet + one entry per merge


def test_post_processor_appends_one_endoftext(tok: Tokenizer) -> None:
    ids = tok.encode("lofi hip hop").ids
    assert ids[-1] == TINY.text.eos_token_id
    assert ids.count(TINY.text.eos_token_id) == 1
    assert tok.encode("lofi hip hop", add_special_tokens=False).ids == ids[:-1]


def test_literal_endoftext_is_the_special_id(tok: Tokenizer) -> None:
    enc = tok.encode(CAPTION)
    eos = TINY.text.eos_token_id
    # template's literal token, then "\n", then the post-processor's token
    assert enc.ids[-3:] == [eos, tok.token_to_id("Ċ"), eos]
    assert enc.ids.count(eos) == 2
    assert all(0 <= i < TINY.text.vocab_size for i in enc.ids)


def test_any_text_round_trips(tok: Tokenizer) -> None:
    text = CAPTION.removesuffix("<|endoftext|>\n") + "[Instrumental] 日本語 ~`|\\^"
    ids = tok.encode(text).ids
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_transformers_reads_it_like_upstream(folder: Path, tok: Tokenizer) -> None:
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(folder))
    assert hf(CAPTION, truncation=True, max_length=256)["input_ids"] == tok.encode(CAPTION).ids
    assert hf.pad_token_id == TINY.text.eos_token_id


def test_file_bytes_are_deterministic(folder: Path, tmp_path: Path) -> None:
    write_tokenizer_files(tmp_path)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (folder / name).read_bytes(), name
