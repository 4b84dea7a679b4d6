"""The station's prompt walk and seeds: pure functions of the station seed and the segment index.

Every generated segment ``gen_index`` belongs to the prompt block ``gen_index // variation``.
Block 0 plays the user's prompt as given. Each later block appends up to one tag per group of
:data:`TAG_POOL` (instrument, mood, tempo) and differs from the previous block in exactly one
tag: a reflecting random walk over each group's ordered list, where neighbouring entries are
related sounds, so consecutive blocks stay close while an hour of music drifts.

All randomness is drawn from SHA-256 digests of the station seed and the block (or segment)
index, so a station with the same seed and prompt replays the same prompts and seeds on any
machine and Python version (no ``hash()``, no global ``random``).
"""

from __future__ import annotations

import hashlib
from typing import Final

from lofi_daemon.pipeline.params import MAX_SEED

TAG_GROUPS: Final = ("instrument", "mood", "tempo")
"""The groups of :data:`TAG_POOL`, in the order their tags are appended to the prompt."""

TAG_POOL: Final[dict[str, tuple[str, ...]]] = {
    # Ordered so that neighbours are related: keys, then mallets, strings, then winds.
    "instrument": (
        "rhodes",
        "electric piano",
        "soft piano",
        "vibraphone",
        "kalimba",
        "nylon guitar",
        "jazz guitar",
        "upright bass",
        "muted trumpet",
        "saxophone",
        "flute",
    ),
    # From quiet to wistful.
    "mood": (
        "calm",
        "mellow",
        "cozy",
        "warm",
        "dreamy",
        "nostalgic",
        "melancholic",
        "rainy",
    ),
    # Slow to less slow; a step moves by about 5 bpm.
    "tempo": (
        "very slow",
        "slow",
        "70 bpm",
        "75 bpm",
        "80 bpm",
        "85 bpm",
        "90 bpm",
    ),
}

TAG_SEPARATOR: Final = ", "
MAX_TAG_SUFFIX_CHARS: Final = sum(
    len(TAG_SEPARATOR) + max(len(tag) for tag in TAG_POOL[group]) for group in TAG_GROUPS
)
"""The most characters :func:`prompt_for` appends to the base prompt (one tag per group)."""

_SEED_DOMAIN: Final = b"lofi.nvim radio seeds"
_PROMPT_DOMAIN: Final = b"lofi.nvim radio prompt"


def _digest(domain: bytes, *values: int) -> bytes:
    text = domain + b"".join(b":" + str(value).encode("ascii") for value in values)
    return hashlib.sha256(text).digest()


def _word(digest: bytes, i: int) -> int:
    """The ``i``-th big-endian 32-bit word of ``digest`` (0..2**32-1 = 0..MAX_SEED)."""
    return int.from_bytes(digest[4 * i : 4 * i + 4], "big")


def segment_seeds(station_seed: int, gen_index: int) -> tuple[int, int]:
    """``(seed, retake_seed)`` of the generated segment ``gen_index``, both in ``0..MAX_SEED``.

    Derived from SHA-256 of the station seed and the index: deterministic, and distinct across
    indexes except for a 2**-32 chance per pair.
    """
    if gen_index < 0:
        raise ValueError(f"gen_index must not be negative, got {gen_index}")
    digest = _digest(_SEED_DOMAIN, station_seed, gen_index)
    seed, retake_seed = _word(digest, 0), _word(digest, 1)
    assert seed <= MAX_SEED and retake_seed <= MAX_SEED
    return seed, retake_seed


def block_of(gen_index: int, variation: int) -> int:
    """The prompt block of the generated segment ``gen_index`` (always 0 when variation is 0)."""
    if gen_index < 0:
        raise ValueError(f"gen_index must not be negative, got {gen_index}")
    return 0 if variation <= 0 else gen_index // variation


def _base_tags(base: str) -> set[str]:
    return {part.strip().lower() for part in base.split(",")}


def _candidates(base: str) -> dict[str, tuple[str, ...]]:
    """Each group's entries that the base prompt does not already name, for groups that can
    still move (two entries or more)."""
    named = _base_tags(base)
    pools = {group: tuple(t for t in TAG_POOL[group] if t not in named) for group in TAG_GROUPS}
    return {group: tags for group, tags in pools.items() if len(tags) >= 2}


def tags_for(base: str, station_seed: int, block: int) -> dict[str, str]:
    """The tags (group → tag) of prompt block ``block``; empty for block 0.

    Block ``b`` takes block ``b - 1``'s tags and moves one group chosen from the digest of
    ``(station_seed, b)``: a group without a tag gets a random entry, a group with one steps to a
    neighbouring entry (reflecting at the ends of the list).
    """
    if block < 0:
        raise ValueError(f"block must not be negative, got {block}")
    pools = _candidates(base)
    groups = [group for group in TAG_GROUPS if group in pools]
    position: dict[str, int] = {}
    if not groups:
        return {}
    for b in range(1, block + 1):
        digest = _digest(_PROMPT_DOMAIN, station_seed, b)
        group = groups[_word(digest, 0) % len(groups)]
        tags = pools[group]
        current = position.get(group)
        if current is None:
            position[group] = _word(digest, 1) % len(tags)
        elif current == 0:
            position[group] = 1
        elif current == len(tags) - 1:
            position[group] = current - 1
        else:
            position[group] = current + (1 if _word(digest, 1) % 2 else -1)
    return {group: pools[group][position[group]] for group in TAG_GROUPS if group in position}


def prompt_for(base: str, station_seed: int, gen_index: int, variation: int) -> str:
    """The prompt of the generated segment ``gen_index``: ``base`` for block 0 (and always when
    ``variation`` is 0), else ``base`` followed by the block's tags, comma-separated."""
    block = block_of(gen_index, variation)
    tags = tags_for(base, station_seed, block)
    if not tags:
        return base
    head = base.rstrip().rstrip(",").rstrip()
    words = [tags[group] for group in TAG_GROUPS if group in tags]
    return TAG_SEPARATOR.join([head, *words] if head else words)
