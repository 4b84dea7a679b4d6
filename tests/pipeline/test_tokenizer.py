"""PromptTokenizer: the reference call's conventions (``</s>`` = 1 last, no padding, at most
``max_tokens`` with ``</s>`` kept), on tiny tokenizers built here, and its load errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from lofi_export.tokenizer_build import build_tokenizer
from tokenizers import Tokenizer, models, pre_tokenizers

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.pipeline.tokenizer import EOS_ID, PromptTokenizer

WORDS = ["lofi", "jazz", "piano", "rain", "night"]
VOCAB = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}


def _word_level(path: Path, *, padding: bool = False, truncation: bool = False) -> Path:
    """A word-level tokenizer without a post-processor (it appends no ``</s>`` itself)."""
    tokenizer = Tokenizer(models.WordLevel(VOCAB, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if padding:
        tokenizer.enable_padding(pad_id=0, pad_token="<pad>", length=32)
    if truncation:
        tokenizer.enable_truncation(max_length=2)
    tokenizer.save(str(path))
    return path


def _check_shape(ids: np.ndarray, mask: np.ndarray) -> None:
    for array in (ids, mask):
        assert array.dtype == np.int64
        assert array.ndim == 2
        assert array.shape[0] == 1
    assert ids.shape == mask.shape
    np.testing.assert_array_equal(mask, np.ones_like(ids))
    assert ids[0, -1] == EOS_ID == 1


def test_eos_is_appended_when_the_tokenizer_does_not(tmp_path: Path) -> None:
    tokenizer = PromptTokenizer(_word_level(tmp_path / "t.json"))
    ids, mask = tokenizer.encode("lofi jazz piano")
    _check_shape(ids, mask)
    np.testing.assert_array_equal(ids, [[3, 4, 5, 1]])


def test_eos_from_the_post_processor_is_not_doubled(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    build_tokenizer().save(str(path))  # the T5-style one the tiny checkpoints ship
    ids, mask = PromptTokenizer(path).encode("relaxed lofi, piano")
    _check_shape(ids, mask)
    np.testing.assert_array_equal(ids, [build_tokenizer().encode("relaxed lofi, piano").ids])
    assert list(ids[0]).count(EOS_ID) == 1


@pytest.mark.parametrize("prompt", ["", "   "])
def test_an_empty_prompt_is_just_eos(tmp_path: Path, prompt: str) -> None:
    ids, mask = PromptTokenizer(_word_level(tmp_path / "t.json")).encode(prompt)
    _check_shape(ids, mask)
    np.testing.assert_array_equal(ids, [[1]])


def test_padding_and_truncation_saved_in_the_file_are_switched_off(tmp_path: Path) -> None:
    path = _word_level(tmp_path / "t.json", padding=True, truncation=True)
    ids, mask = PromptTokenizer(path).encode("lofi jazz piano rain")
    _check_shape(ids, mask)
    np.testing.assert_array_equal(ids, [[3, 4, 5, 6, 1]])  # no pad ids, nothing cut at 2


@pytest.mark.parametrize(("words", "max_tokens"), [(300, 256), (10, 5), (4, 5), (5, 5), (3, 1)])
def test_truncation_keeps_eos_last(tmp_path: Path, words: int, max_tokens: int) -> None:
    tokenizer = PromptTokenizer(_word_level(tmp_path / "t.json"), max_tokens=max_tokens)
    prompt = " ".join(WORDS[i % len(WORDS)] for i in range(words))
    ids, mask = tokenizer.encode(prompt)
    _check_shape(ids, mask)
    full = [VOCAB[WORDS[i % len(WORDS)]] for i in range(words)] + [1]
    expected = full if len(full) <= max_tokens else [*full[: max_tokens - 1], 1]
    assert ids.shape == (1, min(len(full), max_tokens))
    assert ids[0].tolist() == expected


def test_the_default_limit_is_256(tmp_path: Path) -> None:
    tokenizer = PromptTokenizer(_word_level(tmp_path / "t.json"))
    assert tokenizer.max_tokens == 256
    ids, _ = tokenizer.encode("lofi " * 1000)
    assert ids.shape == (1, 256)


def test_a_custom_eos_id(tmp_path: Path) -> None:
    tokenizer = PromptTokenizer(_word_level(tmp_path / "t.json"), max_tokens=3, eos_id=7)
    ids, _ = tokenizer.encode("lofi jazz piano rain")
    assert ids[0].tolist() == [3, 4, 7]


@pytest.mark.parametrize(
    "content", [None, b"", b"{not json", b'{"version": "1.0"}', b"\xff\xfe\x00garbage"]
)
def test_a_missing_or_corrupt_file_is_model_load_failed(
    tmp_path: Path, content: bytes | None
) -> None:
    path = tmp_path / "tokenizer.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(LofiError) as info:
        PromptTokenizer(path)
    assert info.value.code == errors.MODEL_LOAD_FAILED
    assert str(path) in info.value.message
