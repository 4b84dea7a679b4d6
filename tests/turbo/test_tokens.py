import json
from pathlib import Path

import pytest

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.turbo import prompt
from lofi_daemon.turbo.tokens import TurboTokenizer


@pytest.fixture
def tokenizer(synthetic_turbo_source: Path) -> TurboTokenizer:
    return TurboTokenizer(synthetic_turbo_source / "tokenizer.json", 256, 2048)


def _eot(tokenizer_path: Path) -> int:
    data = json.loads(tokenizer_path.read_text())
    return next(t["id"] for t in data["added_tokens"] if t["content"] == "<|endoftext|>")


def test_caption_ends_with_the_literal_and_the_appended_end_of_text(
    tokenizer: TurboTokenizer, synthetic_turbo_source: Path
) -> None:
    eot = _eot(synthetic_turbo_source / "tokenizer.json")
    ids = tokenizer.caption_ids(prompt.caption_text("piano", prompt.metas_text(30)))
    assert ids.dtype.name == "int64" and ids.shape[0] == 1
    # ...<|endoftext|> "\n" <|endoftext|>: the template's token, its newline, the appended one
    assert ids[0, -1] == eot and ids[0, -3] == eot and ids[0, -2] != eot
    assert list(ids[0]).count(eot) == 2


def test_caption_is_truncated_to_256_keeping_the_appended_token(
    tokenizer: TurboTokenizer, synthetic_turbo_source: Path
) -> None:
    eot = _eot(synthetic_turbo_source / "tokenizer.json")
    ids = tokenizer.caption_ids(prompt.caption_text("word " * 400, prompt.metas_text(30)))
    assert ids.shape == (1, 256)
    assert ids[0, -1] == eot
    assert list(ids[0]).count(eot) == 1  # the template's own token was cut with the tail


def test_lyric_ids_end_with_two_end_of_text_tokens(
    tokenizer: TurboTokenizer, synthetic_turbo_source: Path
) -> None:
    eot = _eot(synthetic_turbo_source / "tokenizer.json")
    ids = tokenizer.lyric_ids(prompt.lyric_text())
    assert list(ids[0, -2:]) == [eot, eot]


def test_lyrics_over_the_limit_are_an_error_naming_the_count(synthetic_turbo_source: Path) -> None:
    small = TurboTokenizer(synthetic_turbo_source / "tokenizer.json", 256, 40)
    text = prompt.lyric_text("a" * 60)
    with pytest.raises(LofiError) as info:
        small.lyric_ids(text)
    assert info.value.code == errors.INVALID_PARAMETER
    # one byte-level token per character here, plus the two end-of-text tokens
    assert f"{len(text) - len('<|endoftext|>') + 2} tokens" in info.value.message
    assert "40" in info.value.message


def test_a_broken_tokenizer_file_is_a_load_error(tmp_path: Path) -> None:
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(LofiError) as info:
        TurboTokenizer(bad, 256, 2048)
    assert info.value.code == errors.MODEL_LOAD_FAILED
    assert "ace-step-1.5" in info.value.remedy
