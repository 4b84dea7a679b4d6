"""The prompt walk (block 0 is the base, one tag moves per block, deterministic, variation 0
never moves) and the segment seeds (deterministic, distinct, in range)."""

from __future__ import annotations

import pytest

from lofi_daemon.pipeline.params import MAX_SEED
from lofi_daemon.radio.prompts import (
    MAX_TAG_SUFFIX_CHARS,
    TAG_GROUPS,
    TAG_POOL,
    block_of,
    prompt_for,
    segment_seeds,
    tags_for,
)

BASE = "lofi hip hop, chill"


def test_pool_shape() -> None:
    assert TAG_GROUPS == ("instrument", "mood", "tempo")
    assert set(TAG_POOL) == set(TAG_GROUPS)
    every = [tag for group in TAG_GROUPS for tag in TAG_POOL[group]]
    for group in TAG_GROUPS:
        assert len(TAG_POOL[group]) >= 6
    for tag in every:
        assert tag == tag.lower() == tag.strip() and tag and "," not in tag
    assert len(every) == len(set(every))


def test_block_zero_is_the_base() -> None:
    for seed in (0, 1, MAX_SEED):
        for gen_index in range(4):
            assert prompt_for(BASE, seed, gen_index, 4) == BASE
    assert tags_for(BASE, 5, 0) == {}


def test_blocks() -> None:
    assert [block_of(i, 4) for i in range(9)] == [0, 0, 0, 0, 1, 1, 1, 1, 2]
    assert [block_of(i, 1) for i in range(3)] == [0, 1, 2]
    assert {block_of(i, 0) for i in range(50)} == {0}
    with pytest.raises(ValueError):
        block_of(-1, 4)


def test_variation_zero_never_moves() -> None:
    assert {prompt_for(BASE, 3, i, 0) for i in range(200)} == {BASE}


def test_later_blocks_append_tags_after_the_prompt() -> None:
    prompt = prompt_for(BASE, 11, 4, 4)  # block 1: one tag
    tags = tags_for(BASE, 11, 1)
    assert len(tags) == 1
    assert prompt == f"{BASE}, {next(iter(tags.values()))}"
    # the segments of one block share its prompt
    assert {prompt_for(BASE, 11, i, 4) for i in range(4, 8)} == {prompt}


def test_one_tag_moves_per_block() -> None:
    for seed in (0, 1, 2, 99, 12345):
        previous: dict[str, str] = {}
        for block in range(1, 60):
            tags = tags_for(BASE, seed, block)
            changed = [g for g in TAG_GROUPS if tags.get(g) != previous.get(g)]
            assert len(changed) == 1, (seed, block, previous, tags)
            group = changed[0]
            assert tags[group] in TAG_POOL[group]
            if group in previous:  # a step of the walk goes to a neighbouring entry
                pool = TAG_POOL[group]
                assert abs(pool.index(tags[group]) - pool.index(previous[group])) == 1
            previous = tags
        assert set(previous) == set(TAG_GROUPS)  # after 59 blocks every group has a tag


def test_walk_is_deterministic_and_seeded() -> None:
    walk = [prompt_for(BASE, 42, i, 2) for i in range(80)]
    assert walk == [prompt_for(BASE, 42, i, 2) for i in range(80)]
    assert walk != [prompt_for(BASE, 43, i, 2) for i in range(80)]
    assert len(set(walk)) > 5  # it does wander


def test_tags_named_in_the_prompt_are_not_added() -> None:
    base = "Rhodes, mellow, lofi"
    for block in range(1, 40):
        tags = tags_for(base, 7, block)
        assert "rhodes" not in tags.values() and "mellow" not in tags.values()


def test_suffix_bound_and_trailing_comma() -> None:
    for seed in range(5):
        for block in range(1, 30):
            prompt = prompt_for("lofi,", seed, block, 1)
            assert prompt.startswith("lofi, ") and ",," not in prompt
            assert len(prompt) <= len("lofi,") + MAX_TAG_SUFFIX_CHARS


def test_segment_seeds() -> None:
    seeds = [segment_seeds(2024, i) for i in range(300)]
    assert seeds == [segment_seeds(2024, i) for i in range(300)]
    flat = [s for pair in seeds for s in pair]
    assert all(isinstance(s, int) and 0 <= s <= MAX_SEED for s in flat)
    assert len(set(flat)) == len(flat)
    assert segment_seeds(2025, 0) != segment_seeds(2024, 0)
    assert all(0 <= s <= MAX_SEED for s in segment_seeds(MAX_SEED, 10**9))
    with pytest.raises(ValueError):
        segment_seeds(1, -1)
