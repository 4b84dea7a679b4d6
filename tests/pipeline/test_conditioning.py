"""Conditioning: ERG q-scale rows, the instrumental lyrics, and the batched text and condition
encoder calls (which rows each guidance variant gets), with fake graphs that record their feeds.

The routing follows upstream ``acestep/pipeline_ace_step.py: text2music_diffusion_process``: the
null branch uses the ERG weak prompt and lyric ERG when ``use_erg_lyric`` (zeros for the text
when ``use_erg_tag`` is off), else zero text and zero lyric ids; the double-condition text-only
branch keeps the prompt, with lyric ERG or zero lyric ids.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from lofi_daemon.pipeline.conditioning import (
    EditConditions,
    build_conditions,
    build_edit_conditions,
    empty_lyrics,
    encode_text,
    erg_scale_rows,
)
from lofi_daemon.pipeline.params import GenerationParams

S, D, SPEAKER, BLOCKS = 5, 4, 6, 6
LYRIC_ERG = (4, 5)


class Recorder:
    """A fake graph: records its feeds and returns ``outputs(feeds)``."""

    def __init__(self, outputs: Callable[[dict[str, np.ndarray]], list[np.ndarray]]) -> None:
        self.outputs = outputs
        self.calls: list[dict[str, np.ndarray]] = []

    def __call__(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.calls.append(feeds)
        return self.outputs(feeds)


# --- erg_scale_rows, empty_lyrics ---------------------------------------------------------------


def test_erg_rows_scale_only_the_listed_layers_of_flagged_rows() -> None:
    rows = erg_scale_rows(12, [8, 9], 0.01, [False, True, True])
    assert rows.dtype == np.float32
    assert rows.shape == (3, 12)
    np.testing.assert_array_equal(rows[0], np.ones(12))
    expected = np.ones(12, dtype=np.float32)
    expected[[8, 9]] = 0.01
    np.testing.assert_array_equal(rows[1], expected)
    np.testing.assert_array_equal(rows[2], expected)


def test_erg_layers_past_the_model_depth_are_ignored() -> None:
    rows = erg_scale_rows(9, [8, 9, 10], 0.5, [True])  # a model with 9 layers has only layer 8
    np.testing.assert_array_equal(rows[0], [1, 1, 1, 1, 1, 1, 1, 1, 0.5])
    np.testing.assert_array_equal(erg_scale_rows(4, [8, 9], 0.01, [True]), np.ones((1, 4)))


def test_no_flags_give_no_rows() -> None:
    assert erg_scale_rows(6, [4, 5], 0.01, []).shape == (0, 6)


def test_empty_lyrics_is_one_masked_token_zero() -> None:
    ids, mask = empty_lyrics()
    for array in (ids, mask):
        assert array.dtype == np.int64
        np.testing.assert_array_equal(array, [[0]])


# --- encode_text ------------------------------------------------------------------------------


def _text_encoder() -> Recorder:
    """Hidden state = the row's q-scale sum, so each output row shows which row it came from."""
    return Recorder(
        lambda feeds: [
            np.broadcast_to(
                feeds["q_scale"].sum(axis=1)[:, None, None], (len(feeds["input_ids"]), 3, D)
            ).astype(np.float16)
        ]
    )


@pytest.mark.parametrize("with_weak", [False, True])
def test_encode_text_batches_the_weak_prompt_in_the_same_call(with_weak: bool) -> None:
    run = _text_encoder()
    ids = np.array([[5, 6, 1]], dtype=np.int64)
    mask = np.ones_like(ids)
    hidden, weak = encode_text(
        run, ids, mask, n_layers=10, erg_layers=(8, 9), erg_scale=0.01, with_weak=with_weak
    )
    assert len(run.calls) == 1
    feeds = run.calls[0]
    batch = 2 if with_weak else 1
    np.testing.assert_array_equal(feeds["input_ids"], np.repeat(ids, batch, axis=0))
    np.testing.assert_array_equal(feeds["attention_mask"], np.repeat(mask, batch, axis=0))
    np.testing.assert_array_equal(
        feeds["q_scale"], erg_scale_rows(10, (8, 9), 0.01, [False, True][:batch])
    )
    assert hidden.dtype == np.float32
    assert hidden.shape == (1, 3, D)
    np.testing.assert_array_equal(hidden, 10.0)  # the plain row: ten ones
    if with_weak:
        assert weak is not None
        assert weak.dtype == np.float32
        assert weak.shape == (1, 3, D)
        np.testing.assert_allclose(weak, 8 + 2 * 0.01, rtol=1e-3)  # the ERG row
    else:
        assert weak is None


# --- build_conditions -------------------------------------------------------------------------

TEXT = np.full((1, S, D), 1.0, dtype=np.float32)
WEAK = np.full((1, S, D), 2.0, dtype=np.float32)
TEXT_MASK = np.array([[1, 1, 1, 0, 0]], dtype=np.int64)
LYRIC_IDS = np.array([[7, 8, 9]], dtype=np.int64)
LYRIC_MASK = np.array([[1, 1, 0]], dtype=np.int64)


def _condition_encoder() -> Recorder:
    """Condition row b = b + 10 everywhere; the mask comes back as int64 [B, S]."""
    return Recorder(
        lambda feeds: [
            np.broadcast_to(
                (np.arange(len(feeds["text_hidden"])) + 10.0)[:, None, None],
                (len(feeds["text_hidden"]), S + 3, D),
            ).astype(np.float16),
            np.ones((len(feeds["text_hidden"]), S + 3), dtype=np.int64),
            np.zeros(1),  # extra outputs are ignored
        ]
    )


def _row_kinds(feeds: dict[str, np.ndarray]) -> list[tuple[str, str, bool]]:
    """Describe each batch row as (text, lyric ids, lyric ERG on)."""
    texts = {1.0: "text", 2.0: "weak", 0.0: "zeros"}
    kinds = []
    for text, lyric, q in zip(
        feeds["text_hidden"], feeds["lyric_ids"], feeds["lyric_q_scale"], strict=True
    ):
        assert len(np.unique(text)) == 1
        lyric_kind = "ids" if np.array_equal(lyric, LYRIC_IDS[0]) else "zeros"
        assert lyric_kind == "ids" or not lyric.any()
        kinds.append((texts[float(text.flat[0])], lyric_kind, bool((q != 1).any())))
    return kinds


PLAIN = ("text", "ids", False)

# (use_erg_tag, use_erg_lyric, weak prompt computed, guided, double) → rows of the batch
ROUTING = [
    (True, True, True, False, False, [PLAIN]),
    (True, True, True, False, True, [PLAIN]),  # double without guidance: no extra rows
    (True, True, True, True, False, [PLAIN, ("weak", "ids", True)]),
    (False, True, False, True, False, [PLAIN, ("zeros", "ids", True)]),
    (True, True, False, True, False, [PLAIN, ("zeros", "ids", True)]),  # no weak prompt given
    (True, False, True, True, False, [PLAIN, ("zeros", "zeros", False)]),  # weak prompt unused
    (False, False, False, True, False, [PLAIN, ("zeros", "zeros", False)]),
    (True, True, True, True, True, [PLAIN, ("weak", "ids", True), ("text", "ids", True)]),
    (False, True, False, True, True, [PLAIN, ("zeros", "ids", True), ("text", "ids", True)]),
    (True, False, True, True, True, [PLAIN, ("zeros", "zeros", False), ("text", "zeros", False)]),
]


@pytest.mark.parametrize(("erg_tag", "erg_lyric", "has_weak", "guided", "double", "rows"), ROUTING)
def test_build_conditions_batches_the_variants_guidance_needs(
    erg_tag: bool,
    erg_lyric: bool,
    has_weak: bool,
    guided: bool,
    double: bool,
    rows: list[tuple[str, str, bool]],
) -> None:
    run = _condition_encoder()
    params = GenerationParams(prompt="lofi", use_erg_tag=erg_tag, use_erg_lyric=erg_lyric)
    conditions = build_conditions(
        run,
        params,
        TEXT,
        WEAK if has_weak else None,
        TEXT_MASK,
        LYRIC_IDS,
        LYRIC_MASK,
        speaker_dim=SPEAKER,
        n_blocks=BLOCKS,
        erg_layers=LYRIC_ERG,
        erg_scale=0.01,
        guided=guided,
        double=double,
    )
    assert len(run.calls) == 1  # one batched call for every variant
    feeds = run.calls[0]
    batch = len(rows)
    assert _row_kinds(feeds) == rows
    assert feeds["text_hidden"].dtype == np.float32
    np.testing.assert_array_equal(feeds["text_mask"], np.repeat(TEXT_MASK, batch, axis=0))
    np.testing.assert_array_equal(feeds["lyric_mask"], np.repeat(LYRIC_MASK, batch, axis=0))  # kept
    np.testing.assert_array_equal(feeds["speaker"], np.zeros((batch, SPEAKER), dtype=np.float32))
    assert feeds["speaker"].dtype == np.float32
    assert feeds["lyric_ids"].dtype == np.int64
    np.testing.assert_array_equal(
        feeds["lyric_q_scale"], erg_scale_rows(BLOCKS, LYRIC_ERG, 0.01, [r[2] for r in rows])
    )
    # outputs: the conditional row, then null, then text-only; one shared conditional mask
    assert conditions.cond.dtype == np.float32
    np.testing.assert_array_equal(conditions.cond, np.full((1, S + 3, D), 10.0))
    assert conditions.mask.dtype == np.float32
    np.testing.assert_array_equal(conditions.mask, np.ones((1, S + 3)))
    if guided:
        assert conditions.null is not None
        np.testing.assert_array_equal(conditions.null, np.full((1, S + 3, D), 11.0))
    else:
        assert conditions.null is None
    if guided and double:
        assert conditions.text_only is not None
        np.testing.assert_array_equal(conditions.text_only, np.full((1, S + 3, D), 12.0))
    else:
        assert conditions.text_only is None


# --- build_edit_conditions --------------------------------------------------------------------

TAR_TEXT = np.full((1, S, D), 3.0, dtype=np.float32)
TAR_MASK = np.array([[1, 1, 1, 1, 0]], dtype=np.int64)


def _edit_encoder() -> Recorder:
    """Like the real graph: mask = [1, text_mask, lyric_mask]; cond row b = text value + 10 b."""

    def outputs(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        b, length = feeds["text_hidden"].shape[:2]
        y = feeds["lyric_ids"].shape[1]
        cond = feeds["text_hidden"][:, :1, :1] + 10.0 * np.arange(b)[:, None, None]
        mask = np.concatenate(
            [np.ones((b, 1)), feeds["text_mask"], feeds["lyric_mask"]], axis=1
        ).astype(np.int64)
        return [np.broadcast_to(cond, (b, 1 + length + y, D)).astype(np.float16), mask]

    return Recorder(outputs)


def _edit(
    run: Recorder, tar_text: np.ndarray, tar_mask: np.ndarray, guided: bool
) -> EditConditions:
    return build_edit_conditions(
        run,
        TEXT,
        TEXT_MASK,
        tar_text,
        tar_mask,
        LYRIC_IDS,
        LYRIC_MASK,
        speaker_dim=SPEAKER,
        n_blocks=BLOCKS,
        guided=guided,
    )


def test_edit_conditions_null_rows_zero_text_speaker_lyrics_and_lyric_mask() -> None:
    run = _edit_encoder()
    c = _edit(run, TAR_TEXT, TAR_MASK, guided=True)
    assert len(run.calls) == 1  # equal text lengths: one batch of 4
    feeds = run.calls[0]
    np.testing.assert_array_equal(feeds["text_hidden"][:, 0, 0], [1.0, 0.0, 3.0, 0.0])
    np.testing.assert_array_equal(
        feeds["text_mask"], [TEXT_MASK[0], TEXT_MASK[0], TAR_MASK[0], TAR_MASK[0]]
    )
    np.testing.assert_array_equal(
        feeds["lyric_ids"], [LYRIC_IDS[0], [0, 0, 0], LYRIC_IDS[0], [0, 0, 0]]
    )
    np.testing.assert_array_equal(
        feeds["lyric_mask"], [LYRIC_MASK[0], [0, 0, 0], LYRIC_MASK[0], [0, 0, 0]]
    )
    np.testing.assert_array_equal(feeds["speaker"], np.zeros((4, SPEAKER)))
    np.testing.assert_array_equal(feeds["lyric_q_scale"], np.ones((4, BLOCKS)))  # no ERG
    assert c.guided
    assert c.src_null is not None and c.tar_null is not None
    assert c.src_null_mask is not None and c.tar_null_mask is not None
    np.testing.assert_array_equal(c.src[0, :, 0], 1.0)
    np.testing.assert_array_equal(c.src_null[0, :, 0], 10.0)
    np.testing.assert_array_equal(c.tar[0, :, 0], 23.0)
    np.testing.assert_array_equal(c.tar_null[0, :, 0], 30.0)
    np.testing.assert_array_equal(c.src_mask, [[1, 1, 1, 1, 0, 0, 1, 1, 0]])
    np.testing.assert_array_equal(c.src_null_mask, [[1, 1, 1, 1, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(c.tar_mask, [[1, 1, 1, 1, 1, 0, 1, 1, 0]])
    for a in (c.src, c.src_mask, c.tar, c.tar_mask, c.src_null, c.tar_null_mask):
        assert a.dtype == np.float32


def test_edit_conditions_with_different_prompt_lengths_use_two_calls() -> None:
    run = _edit_encoder()
    tar_text = np.full((1, S + 2, D), 3.0, dtype=np.float32)
    tar_mask = np.ones((1, S + 2), dtype=np.int64)
    c = _edit(run, tar_text, tar_mask, guided=True)
    assert [call["text_hidden"].shape for call in run.calls] == [(2, S, D), (2, S + 2, D)]
    assert c.src.shape == (1, 1 + S + 3, D)
    assert c.tar.shape == (1, 1 + S + 2 + 3, D)
    assert c.tar_null is not None
    np.testing.assert_array_equal(c.tar_null[0, :, 0], 10.0)  # second row of its own call


def test_edit_conditions_without_guidance_have_no_null_rows() -> None:
    run = _edit_encoder()
    c = _edit(run, TAR_TEXT, TAR_MASK, guided=False)
    assert run.calls[0]["text_hidden"].shape[0] == 2
    assert not c.guided
    assert c.src_null is None and c.tar_null is None
    np.testing.assert_array_equal(c.tar[0, :, 0], 13.0)
