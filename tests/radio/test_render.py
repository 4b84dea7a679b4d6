"""Rendering segment files: sample bookkeeping, continuity of the joins (synthetic signals),
reading engine outputs and writing segment files. The sub-sample alignment of continuations and
the tiny models' joins: ``test_render_alignment.py``."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from radio.continuity import boundary_metrics, inside_range, join_problems

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.radio.joins import (
    SAMPLE_RATE,
    JoinSettings,
    context_samples,
    crossfade,
)
from lofi_daemon.radio.render import (
    Rendered,
    min_fill_samples,
    read_wave,
    render_continuation,
    render_fill,
    render_first,
    write_segment,
)

JOIN = JoinSettings()  # X = 72000, H = 120000
X, H = JOIN.crossfade_samples, JOIN.hold_samples
CONTEXT_FRAMES = 53
C = context_samples(CONTEXT_FRAMES)


def tone(n: int, freq: float, level: float, seed: int, noise: float = 0.01) -> np.ndarray:
    """A stereo sine with a slow level swell and a little noise (``[n, 2]`` float32)."""
    t = np.arange(n) / SAMPLE_RATE
    swell = 1.0 + 0.2 * np.sin(2 * np.pi * 0.3 * t)
    left = level * swell * np.sin(2 * np.pi * freq * t)
    right = level * swell * np.sin(2 * np.pi * freq * 1.5 * t + 0.7)
    rng = np.random.default_rng(seed)
    wave = np.stack([left, right], axis=1) + noise * rng.standard_normal((n, 2))
    return wave.astype(np.float32)


def continue_signal(
    signal: np.ndarray, lengths: list[int], redecode_noise: float = 0.0
) -> list[Rendered]:
    """Cut ``signal`` into files as the radio does: a first segment of ``lengths[0]`` samples,
    then continuations whose (simulated) extend output re-reads the last ``C`` samples before
    the previous output's end and adds ``lengths[i]`` new ones. ``redecode_noise`` perturbs each
    output (a re-decoded context is close to, not exactly, what was played)."""
    rng = np.random.default_rng(99)

    def output(start: int, n: int) -> np.ndarray:
        part = signal[start : start + n]
        return (part + redecode_noise * rng.standard_normal(part.shape)).astype(np.float32)

    end = lengths[0]
    rendered = [render_first(output(0, end), JOIN)]
    for new in lengths[1:]:
        start = end - C
        rendered.append(render_continuation(rendered[-1].tail, output(start, C + new), C - H, JOIN))
        end += new
    return rendered


# ---------------------------------------------------------------------------------------------
# Bookkeeping
# ---------------------------------------------------------------------------------------------


def test_first_segment_fades_in_and_holds_back() -> None:
    wave = tone(5 * SAMPLE_RATE, 220.0, 0.3, 1)
    out = render_first(wave, JOIN)
    assert out.audio.shape == (wave.shape[0] - H, 2) and out.audio.dtype == np.float32
    assert np.all(out.audio[0] == 0.0)
    np.testing.assert_array_equal(
        out.audio[JOIN.fade_in_samples :], wave[JOIN.fade_in_samples : -H]
    )
    np.testing.assert_array_equal(out.tail, wave[-H : -H + X])
    assert out.tail.dtype == np.float32
    assert out.tail_at == wave.shape[0] - H


def test_continued_files_are_the_signal_itself() -> None:
    """With an exact re-decode the joins are invisible: the files played back to back are the
    original signal (after the fade-in), sample for sample up to float rounding."""
    lengths = [5 * SAMPLE_RATE, 4 * SAMPLE_RATE, 6 * SAMPLE_RATE + 17]
    signal = tone(sum(lengths) + 1000, 220.0, 0.3, 2)
    files = continue_signal(signal, lengths)
    assert [f.audio.shape[0] for f in files] == [lengths[0] - H, *lengths[1:]]
    played = np.concatenate([f.audio for f in files])
    start = JOIN.fade_in_samples
    np.testing.assert_allclose(played[start:], signal[start : played.shape[0]], atol=1e-6)
    np.testing.assert_array_equal(files[-1].tail, signal[sum(lengths) - H : sum(lengths) - H + X])


def test_continued_joins_are_continuous() -> None:
    lengths = [5 * SAMPLE_RATE, 5 * SAMPLE_RATE, 5 * SAMPLE_RATE]
    signal = tone(sum(lengths), 180.0, 0.3, 3, noise=0.05)
    files = continue_signal(signal, lengths, redecode_noise=0.01)
    for a, b in itertools.pairwise(files):
        assert join_problems(a.audio[JOIN.fade_in_samples :], b.audio) == []


def test_unrelated_fill_joins_without_click_or_level_jump() -> None:
    loud = tone(6 * SAMPLE_RATE, 220.0, 0.5, 4)
    quiet = tone(8 * SAMPLE_RATE, 330.0, 0.1, 5)
    first = render_first(loud, JOIN)
    fill = render_fill(first.tail, quiet, JOIN)
    a, b = first.audio[JOIN.fade_in_samples :], fill.audio
    assert join_problems(a, b) == []
    # The level moves from loud to quiet inside the fill's crossfade, not at the boundary: the
    # boundary is even within the range of the first file alone, which has no crossfade.
    at, inside_a = boundary_metrics(a, b), inside_range(a)
    assert at["jump"] <= inside_a["jump"] and at["rms_change"] <= inside_a["rms_change"]
    assert np.sqrt(np.mean(b[-4800:] ** 2)) < 0.3 * np.sqrt(np.mean(a[-4800:] ** 2))
    assert fill.audio.shape[0] == quiet.shape[0] - H
    np.testing.assert_array_equal(fill.tail, quiet[-H : -H + X])


def test_a_plain_cut_between_unrelated_signals_fails_the_metric() -> None:
    """Without the crossfade the same two signals click and jump in level, so the metric used
    above does detect discontinuities."""
    loud = tone(6 * SAMPLE_RATE, 220.0, 0.5, 4)
    quiet = tone(8 * SAMPLE_RATE, 330.0, 0.1, 5)
    peak = int(np.argmax(loud[SAMPLE_RATE : 2 * SAMPLE_RATE, 0])) + SAMPLE_RATE
    problems = join_problems(loud[: peak + 1], quiet)
    assert len(problems) == 2, problems  # both the jump and the RMS change
    assert any(p.startswith("jump") for p in problems)
    assert any(p.startswith("rms_change") for p in problems)


def test_fill_takes_an_excerpt_of_max_samples() -> None:
    lib = tone(20 * SAMPLE_RATE, 300.0, 0.2, 6)
    tail = tone(X, 200.0, 0.2, 7)
    m = 7 * SAMPLE_RATE + 5
    out = render_fill(tail, lib, JOIN, max_samples=m)
    assert out.audio.shape == (m - H, 2)
    np.testing.assert_allclose(out.audio[:X], crossfade(tail, lib[:X]))
    np.testing.assert_array_equal(out.audio[X:], lib[X : m - H])
    np.testing.assert_array_equal(out.tail, lib[m - H : m - H + X])
    assert out.tail_at == m - H
    # max_samples beyond the track: the whole track.
    assert render_fill(tail, lib, JOIN, max_samples=10**9).audio.shape[0] == lib.shape[0] - H


def test_fill_without_a_tail_fades_in() -> None:
    lib = tone(6 * SAMPLE_RATE, 300.0, 0.2, 8)
    out = render_fill(None, lib, JOIN)
    assert np.all(out.audio[0] == 0.0)
    np.testing.assert_array_equal(out.audio[JOIN.fade_in_samples :], lib[JOIN.fade_in_samples : -H])


def test_min_fill_samples_is_hold_plus_crossfade() -> None:
    assert min_fill_samples(JOIN) == H + X
    lib = tone(H + X, 300.0, 0.2, 9)
    assert render_fill(np.zeros((X, 2), np.float32), lib, JOIN).audio.shape == (X, 2)
    with pytest.raises(ValueError, match="a fill needs at least 192000"):
        render_fill(None, lib[:-1], JOIN)
    with pytest.raises(ValueError, match="max_samples is 1000; a fill needs at least 192000"):
        render_fill(None, lib, JOIN, max_samples=1000)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: render_first(np.zeros((H + 10, 2), np.float32), JOIN), "needs at least 122400"),
        (lambda: render_first(np.zeros((10**6,), np.float32), JOIN), r"must be \[samples, 2\]"),
        (lambda: render_first(np.zeros((10**6, 1), np.float32), JOIN), r"got shape \(1000000, 1\)"),
        (
            lambda: render_continuation(np.zeros((X - 1, 2)), np.zeros((10**6, 2)), C - H, JOIN),
            r"the held tail must have shape \(72000, 2\), got \(71999, 2\)",
        ),
        (
            lambda: render_continuation(np.zeros((X, 2)), np.zeros((10**6, 2)), -0.25, JOIN),
            "lies at sample -0.250, before the continuation's audio",
        ),
        (
            lambda: render_continuation(np.zeros((X, 2)), np.zeros((10**6, 2)), np.nan, JOIN),
            "position must be finite",
        ),
        (
            lambda: render_continuation(np.zeros((X, 2)), np.zeros((C + X - 1, 2)), C - H, JOIN),
            "needs at least 308286",
        ),
        (
            # 0.4 of a sample later: one sample more is needed (the file length rounds).
            lambda: render_continuation(np.zeros((X, 2)), np.zeros((C + X, 2)), C - H + 0.6, JOIN),
            "needs at least 308287",
        ),
        (
            lambda: render_fill(np.zeros((X, 3)), np.zeros((10**6, 2)), JOIN),
            "the held tail must have shape",
        ),
    ],
)
def test_bad_shapes_and_lengths_are_refused(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_continuation_of_exactly_a_crossfade_of_new_audio() -> None:
    out = render_continuation(np.zeros((X, 2), np.float32), np.ones((C + X, 2)), C - H, JOIN)
    assert out.audio.shape == (X, 2) and out.tail.shape == (X, 2)
    assert out.tail_at == C - H + X


# ---------------------------------------------------------------------------------------------
# read_wave / write_segment
# ---------------------------------------------------------------------------------------------


def test_read_wave_gives_float32_stereo(tmp_path: Path) -> None:
    mono = tone(4800, 440.0, 0.3, 10)[:, :1]
    sf.write(tmp_path / "mono.wav", mono, SAMPLE_RATE, subtype="FLOAT")
    wave = read_wave(tmp_path / "mono.wav")
    assert wave.dtype == np.float32 and wave.shape == (4800, 2)
    np.testing.assert_array_equal(wave[:, 0], mono[:, 0])
    np.testing.assert_array_equal(wave[:, 1], mono[:, 0])


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: sf.write(p, np.zeros((4410, 2)), 44100), "is 44100 Hz; the radio needs 48000"),
        (lambda p: sf.write(p, np.zeros((4800, 3)), SAMPLE_RATE), "has 3 channels"),
        (lambda p: p.write_bytes(b"not audio at all"), "cannot be read"),
        (lambda p: None, "cannot be read"),
        (
            lambda p: sf.write(p, np.full((10, 2), np.nan), SAMPLE_RATE, subtype="FLOAT"),
            "NaN or infinite",
        ),
    ],
)
def test_read_wave_refuses_what_the_radio_cannot_use(
    tmp_path: Path, setup: Callable[[Path], object], message: str
) -> None:
    path = tmp_path / "in.wav"
    setup(path)
    with pytest.raises(LofiError, match=message) as caught:
        read_wave(path)
    assert caught.value.code == errors.INVALID_SOURCE
    assert str(path) in caught.value.message


def test_write_segment_is_16_bit_flac(tmp_path: Path) -> None:
    wave = tone(48000, 440.0, 0.3, 11)
    wave[100] = [1.5, -1.5]  # out of range: saturated, not wrapped
    path = tmp_path / "seg.flac"
    write_segment(path, wave)
    info = sf.info(str(path))
    assert (info.format, info.subtype, info.samplerate, info.channels, info.frames) == (
        "FLAC",
        "PCM_16",
        SAMPLE_RATE,
        2,
        48000,
    )
    back = read_wave(path)
    np.testing.assert_allclose(back[:100], wave[:100], atol=1.0 / 32768 + 1e-7)
    assert back[100, 0] == pytest.approx(1.0, abs=1e-4) and back[100, 1] == -1.0
    assert sorted(os.listdir(tmp_path)) == ["seg.flac"]


@pytest.mark.parametrize("where", ["under_a_file", "missing_folder", "onto_a_folder"])
def test_write_segment_failure_leaves_nothing(tmp_path: Path, where: str) -> None:
    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "folder").mkdir()
    target = {
        "under_a_file": tmp_path / "file" / "seg.flac",
        "missing_folder": tmp_path / "nope" / "seg.flac",
        "onto_a_folder": tmp_path / "folder",
    }[where]
    with pytest.raises(LofiError, match=f"cannot write {target}") as caught:
        write_segment(target, tone(4800, 440.0, 0.3, 12))
    assert caught.value.code == errors.OUTPUT_WRITE_FAILED
    assert sorted(os.listdir(tmp_path)) == ["file", "folder"]
    assert (tmp_path / "file").read_bytes() == b"x" and os.listdir(tmp_path / "folder") == []


def test_write_segment_refuses_bad_audio(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is empty"):
        write_segment(tmp_path / "a.flac", np.zeros((0, 2), np.float32))
    with pytest.raises(ValueError, match=r"must be \[samples, 2\]"):
        write_segment(tmp_path / "a.flac", np.zeros((2, 4800), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        write_segment(tmp_path / "a.flac", np.full((10, 2), np.inf, np.float32))
    assert os.listdir(tmp_path) == []
