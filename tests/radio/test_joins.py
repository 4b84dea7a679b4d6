"""Join settings, sample alignment and the correlation-corrected crossfade."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lofi_daemon.model.layout import SAMPLE_RATE_MODEL, SAMPLES_PER_LATENT_FRAME
from lofi_daemon.pipeline.params import seconds_to_frames
from lofi_daemon.radio.joins import (
    JOIN_MARGIN_SEC,
    SAMPLE_RATE,
    JoinSettings,
    context_samples,
    correlation,
    crossfade,
    crossfade_gains,
    fade_in,
    frames_to_samples,
    read_at,
    tail_position,
)

RNG_SEED = 12


def noise(n: int, seed: int, channels: int = 2, level: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (level * rng.standard_normal((n, channels))).astype(np.float32)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


# ---------------------------------------------------------------------------------------------
# JoinSettings
# ---------------------------------------------------------------------------------------------


def test_default_settings_in_samples() -> None:
    join = JoinSettings()
    assert (join.crossfade_samples, join.hold_samples, join.fade_in_samples) == (
        72000,
        120000,
        2400,
    )
    assert join.to_json() == {"crossfade_sec": 1.5, "hold_sec": 2.5, "fade_in_sec": 0.05}


def test_for_crossfade_holds_one_margin_more() -> None:
    join = JoinSettings.for_crossfade(0.4)
    assert join.crossfade_sec == 0.4
    assert join.hold_sec == pytest.approx(0.4 + JOIN_MARGIN_SEC)
    assert join.hold_samples == round((0.4 + JOIN_MARGIN_SEC) * SAMPLE_RATE)
    assert JoinSettings.for_crossfade(1.5) == JoinSettings()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crossfade_sec": 0.0}, "crossfade_sec must be at least one sample"),
        ({"crossfade_sec": -1.0}, "crossfade_sec must be at least one sample"),
        ({"crossfade_sec": 2.0, "hold_sec": 1.0}, "hold_sec (1.0) must be at least crossfade_sec"),
        ({"fade_in_sec": -0.1}, "fade_in_sec must be >= 0"),
        ({"hold_sec": math.nan}, "hold_sec must be a finite number"),
        ({"crossfade_sec": math.inf}, "crossfade_sec must be a finite number"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        JoinSettings(**kwargs)


# ---------------------------------------------------------------------------------------------
# context_samples
# ---------------------------------------------------------------------------------------------


def test_context_samples_rounds_the_exact_position() -> None:
    for frames in [0, 1, 53, 322, seconds_to_frames(30.0), 2583]:
        exact = frames * SAMPLES_PER_LATENT_FRAME * SAMPLE_RATE / SAMPLE_RATE_MODEL
        assert context_samples(frames) == round(exact)
        assert abs(context_samples(frames) - exact) <= 0.5
    assert context_samples(53) == 236286  # 53·4096·48000/44100 = 236286.3


def test_context_samples_refuses_negative_frames() -> None:
    with pytest.raises(ValueError, match="context_frames must be >= 0"):
        context_samples(-1)


def test_frames_to_samples_is_exact() -> None:
    assert frames_to_samples(0) == 0.0
    assert frames_to_samples(147) == 147 * 4096 * 48000 / 44100 == 655360.0  # a whole sample
    assert frames_to_samples(54) == pytest.approx(240744.4898, abs=1e-4)
    assert round(frames_to_samples(53)) == context_samples(53)


def test_tail_position_moves_to_the_continuation_clock() -> None:
    # A tail 2.5 s before the end of 120 frames, continued from their last 54 frames: the
    # continuation's sample 0 is frame 66 of the source, 294240.8163 samples after its start.
    start = frames_to_samples(120) - 120000
    at = tail_position(start, 120, 54)
    assert at == pytest.approx(frames_to_samples(54) - 120000, abs=1e-9)
    assert at == pytest.approx(start - 66 * 4096 * 48000 / 44100, abs=1e-9)
    assert tail_position(1000.25, 10, 10) == 1000.25  # the whole source is the context


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0.0, 10, 11), r"context_frames must be within 0..10"),
        ((0.0, 10, -1), r"context_frames must be within 0..10"),
        ((math.inf, 10, 5), "tail_start must be a finite"),
    ],
)
def test_tail_position_refuses_bad_values(args: tuple[float, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tail_position(*args)


# ---------------------------------------------------------------------------------------------
# read_at: the fractional delay
# ---------------------------------------------------------------------------------------------


def sines(times: np.ndarray, top_hz: float, seed: int) -> np.ndarray:
    """A band-limited stereo test signal (32 sines up to ``top_hz``) at ``times`` (samples)."""
    rng = np.random.default_rng(seed)
    freqs = rng.uniform(30.0, top_hz, (32, 1)) / SAMPLE_RATE
    phases = rng.uniform(0.0, 2 * math.pi, (32, 1))
    left = np.sum(np.sin(2 * math.pi * freqs * times[None, :] + phases), axis=0) / 16
    return np.stack([left, -0.5 * left], axis=1)


@pytest.mark.parametrize("position", [1000.5, 1000.25, 999.9, 2000.0 - 1e-3, 1234.49])
def test_read_at_interpolates_a_band_limited_signal(position: float) -> None:
    """Within 1e-6 of the signal's true values (peak ~1.5) for content up to 22 kHz, the
    engine's band (44.1 kHz audio resampled): the kernel's 4e-7 plus float32 rounding."""
    wave = sines(np.arange(6000, dtype=np.float64), 22000.0, 3).astype(np.float32)
    out = read_at(wave, position, 3000)
    expected = sines(position + np.arange(3000, dtype=np.float64), 22000.0, 3)
    assert out.dtype == np.float32 and out.shape == (3000, 2)
    assert np.abs(out - expected).max() < 1e-6
    assert np.abs(wave).max() > 1.0


def test_read_at_a_whole_sample_is_an_exact_copy() -> None:
    wave = noise(500, 4)
    np.testing.assert_array_equal(read_at(wave, 100.0, 300), wave[100:400])
    np.testing.assert_array_equal(read_at(wave, 100.0 + 1e-7, 300), wave[100:400])
    assert read_at(wave, 12.5, 0).shape == (0, 2)


def test_read_at_takes_zeros_beyond_the_edges() -> None:
    wave = np.ones((1000, 2), np.float32)
    np.testing.assert_array_equal(read_at(wave, 990.0, 20)[10:], 0.0)  # a copy: zeros past it
    out = read_at(wave, 0.5, 999)
    # Where the kernel (64 taps each side) stays inside the wave a constant stays that constant;
    # at the edges the step to the zeros rings (not exact there, as documented).
    np.testing.assert_allclose(out[64:-64], 1.0, atol=1e-6)
    assert abs(out[0, 0] - 1.0) > 1e-2 and abs(out[-1, 0] - 1.0) > 1e-2


@pytest.mark.parametrize(
    ("wave", "position", "count", "message"),
    [
        (np.zeros(100), 0.5, 10, r"wave must be \[samples, channels\]"),
        (np.zeros((100, 2)), 0.5, -1, "count must be >= 0"),
        (np.zeros((100, 2)), math.nan, 10, "position must be a finite"),
    ],
)
def test_read_at_refuses_bad_values(
    wave: np.ndarray, position: float, count: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        read_at(wave, position, count)


# ---------------------------------------------------------------------------------------------
# crossfade
# ---------------------------------------------------------------------------------------------


def test_gains_are_equal_power_for_uncorrelated_and_sum_to_one_for_equal_parts() -> None:
    a, b = crossfade_gains(1000, 0.0)
    np.testing.assert_allclose(a * a + b * b, 1.0, atol=1e-12)
    a, b = crossfade_gains(1000, 1.0)
    np.testing.assert_allclose(a + b, 1.0, atol=1e-12)
    for r in (0.25, 0.5, 0.9):
        a, b = crossfade_gains(1000, r)
        np.testing.assert_allclose(a * a + 2 * a * b * r + b * b, 1.0, atol=1e-12)
        assert np.all(np.diff(a) <= 1e-12) and np.all(np.diff(b) >= 0)  # monotonic fades
    assert (a[0], b[0]) == (1.0, 0.0)


def test_identical_parts_pass_through_unchanged() -> None:
    part = noise(4800, RNG_SEED)
    out = crossfade(part, part.copy())
    assert out.dtype == np.float32 and out.shape == part.shape
    np.testing.assert_allclose(out, part, atol=1e-6)  # r = 1: no +3 dB bump in the middle


def test_unrelated_parts_keep_their_level() -> None:
    x = 48000
    tail, head = noise(x, 1), noise(x, 2)
    r = correlation(tail, head)
    assert np.all(r < 0.05)
    out = crossfade(tail, head)
    middle = out[x // 2 - 2400 : x // 2 + 2400]
    assert rms(middle) == pytest.approx(0.3, rel=0.05)  # a plain linear fade would dip to 0.21
    linear = 0.5 * tail[x // 2 - 2400 : x // 2 + 2400] + 0.5 * head[x // 2 - 2400 : x // 2 + 2400]
    assert rms(linear) < 0.25  # the dip the correction avoids, so the check above means something
    assert np.array_equal(out[0], tail[0])


def test_negative_correlation_is_treated_as_unrelated() -> None:
    tail = noise(9600, 3)
    r = correlation(tail, -tail)
    assert np.all(r == 0.0)
    out = crossfade(tail, -tail)
    a, b = crossfade_gains(9600, 0.0)
    np.testing.assert_allclose(out[:, 0], (a - b) * tail[:, 0], atol=1e-6)


def test_silence_gives_zero_correlation_and_no_nan() -> None:
    silent = np.zeros((2400, 2), dtype=np.float32)
    sound = noise(2400, 4)
    assert np.all(correlation(silent, sound) == 0.0)
    assert np.all(correlation(silent, silent) == 0.0)
    np.testing.assert_array_equal(crossfade(silent, silent), silent)
    out = crossfade(silent, sound)
    assert np.all(np.isfinite(out))
    _, b = crossfade_gains(2400, 0.0)
    np.testing.assert_allclose(out, b[:, None] * sound, atol=1e-6)


def test_channels_are_faded_independently() -> None:
    """Left: the same music (r = 1, passes through); right: unrelated (equal-power fade)."""
    tail, other = noise(9600, 5), noise(9600, 6)
    head = np.stack([tail[:, 0], other[:, 1]], axis=1)
    r = correlation(tail, head)
    assert r[0] == pytest.approx(1.0) and r[1] < 0.1
    out = crossfade(tail, head)
    np.testing.assert_allclose(out[:, 0], tail[:, 0], atol=1e-6)
    a, b = crossfade_gains(9600, float(r[1]))
    np.testing.assert_allclose(out[:, 1], a * tail[:, 1] + b * head[:, 1], atol=1e-6)


@pytest.mark.parametrize(
    ("tail_shape", "head_shape", "message"),
    [
        ((100, 2), (101, 2), "differ in shape"),
        ((100, 2), (100, 1), "differ in shape"),
        ((100,), (100,), r"must be \[samples, channels\]"),
        ((0, 2), (0, 2), "are empty"),
    ],
)
def test_bad_parts_are_refused(
    tail_shape: tuple[int, ...], head_shape: tuple[int, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        crossfade(np.zeros(tail_shape, np.float32), np.zeros(head_shape, np.float32))


def test_fade_in_ramps_from_zero_and_leaves_the_rest() -> None:
    audio = np.ones((1000, 2), dtype=np.float64)
    out = fade_in(audio, 100)
    assert out.dtype == np.float32
    assert np.all(out[0] == 0.0)
    assert np.all(np.diff(out[:100, 0]) > 0)
    np.testing.assert_array_equal(out[100:], 1.0)
    assert np.all(audio == 1.0)  # the input is not modified
    np.testing.assert_array_equal(fade_in(audio, 0), audio)
