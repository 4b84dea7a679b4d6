"""Windowed decode: window plans, the windowed runner against whole-array results, the latent and
mel closed forms, and ``decode_latents`` with fake DCAE and vocoder graphs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from lofi_daemon.errors import CancelledError
from lofi_daemon.model.constants import ErgLayers, ModelConstants
from lofi_daemon.pipeline.decode import (
    DecodeSettings,
    Window,
    decode_latents,
    denormalize_mel,
    latents_to_dcae_input,
    plan_decode,
    plan_windows,
    run_windowed,
)

CONSTANTS = ModelConstants(
    sample_rate_model=44100,
    sample_rate_output=48000,
    samples_per_latent_frame=4096,
    latent_frames_per_second=44100 / 4096,
    mel_frames_per_latent_frame=8,
    vocoder_hop_length=512,
    latent_channels=8,
    latent_height=16,
    dcae_scale=0.1786,
    dcae_shift=-1.9091,
    mel_min=-11.0,
    mel_max=3.0,
    text_max_tokens=256,
    text_hidden_size=32,
    speaker_embedding_dim=512,
    text_encoder_layers=10,
    conformer_blocks=6,
    denoiser_layers=20,
    scheduler_shift=3.0,
    num_train_timesteps=1000,
    erg=ErgLayers(0.01, (8, 9), (4, 5), (15, 16, 17, 18, 19)),
)


# --- plan_windows -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "window", "overlap", "min_frames"),
    [
        (1000, 256, 32, 1),
        (1000, 100, 0, 1),
        (257, 256, 0, 4),  # last kept piece is one frame: context grows left to 4
        (300, 64, 16, 4),
        (2583 * 8, 2048, 64, 2),
        (50, 7, 3, 10),  # min_frames bigger than window + overlap
        (10, 3, 1, 1),
    ],
)
def test_windows_cover_the_track_once(
    length: int, window: int, overlap: int, min_frames: int
) -> None:
    windows = plan_windows(length, window, overlap, min_frames)
    assert len(windows) > 1
    kept = [i for w in windows for i in range(w.start, w.stop)]
    assert kept == list(range(length))  # every frame kept exactly once, in order
    for w in windows:
        assert w.stop - w.start <= window
        assert w.context_stop == min(length, w.stop + overlap)
        # context clamped at the track start, widened (to the left only) up to min_frames
        assert w.context_start == max(0, min(w.start - overlap, w.context_stop - min_frames))
        assert 0 <= w.context_start <= w.start < w.stop <= w.context_stop <= length
        assert w.context_stop - w.context_start >= min(min_frames, length)


def test_first_and_last_windows_are_clamped_at_the_ends() -> None:
    windows = plan_windows(1000, 256, 32)
    assert windows[0] == Window(0, 256, 0, 288)
    assert windows[1] == Window(256, 512, 224, 544)
    assert windows[-1] == Window(768, 1000, 736, 1000)


def test_min_frames_widens_a_short_last_window() -> None:
    assert plan_windows(257, 256, 0, min_frames=4)[-1] == Window(256, 257, 253, 257)


@pytest.mark.parametrize(
    ("length", "window", "overlap"),
    [(100, 256, 32), (320, 256, 32), (5, 0, 2), (5, -1, 0), (0, 16, 4)],
)
def test_a_short_track_is_one_window(length: int, window: int, overlap: int) -> None:
    assert plan_windows(length, window, overlap) == [Window(0, length, 0, length)]


def test_one_frame_more_than_a_single_window_splits() -> None:
    assert len(plan_windows(321, 256, 32)) == 2


# --- run_windowed -------------------------------------------------------------------------------


def _moving_sum(radius: int) -> Callable[[np.ndarray], np.ndarray]:
    """A model with a receptive field: each frame is the sum of its ±radius neighbours (zero padded)."""

    def run(x: np.ndarray) -> np.ndarray:
        padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(radius, radius)])
        shifted = [padded[..., i : i + x.shape[-1]] for i in range(2 * radius + 1)]
        return np.stack(shifted).sum(axis=0)

    return run


def _joined(
    run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, windows: list[Window], scale: int
) -> np.ndarray:
    return np.concatenate(list(run_windowed(run, x, windows, scale)), axis=-1)


def test_a_pointwise_model_gives_the_whole_array_result() -> None:
    x = np.random.default_rng(0).standard_normal((2, 3, 203)).astype(np.float32)
    windows = plan_windows(203, 32, 4, min_frames=4)
    np.testing.assert_array_equal(_joined(np.tanh, x, windows, 1), np.tanh(x))


def test_an_upsampling_model_gives_the_whole_array_result() -> None:
    x = np.random.default_rng(1).standard_normal((1, 4, 97)).astype(np.float32)

    def model(a: np.ndarray) -> np.ndarray:
        return np.repeat(a * 2.0 - 1.0, 8, axis=-1)

    for windows in (plan_windows(97, 16, 2, min_frames=4), plan_windows(97, 10, 0, min_frames=4)):
        np.testing.assert_array_equal(_joined(model, x, windows, 8), model(x))


def test_enough_context_makes_a_convolution_exact_and_too_little_does_not() -> None:
    x = np.random.default_rng(2).standard_normal((2, 120)).astype(np.float64)
    model = _moving_sum(3)
    whole = model(x)
    np.testing.assert_allclose(_joined(model, x, plan_windows(120, 20, 3), 1), whole, rtol=1e-12)
    assert not np.allclose(_joined(model, x, plan_windows(120, 20, 2), 1), whole)


def test_the_model_sees_each_context_slice_and_on_window_runs_before_it() -> None:
    x = np.arange(40, dtype=np.float32)[None]
    windows = plan_windows(40, 16, 4)
    events: list[object] = []

    def model(a: np.ndarray) -> np.ndarray:
        assert a.flags.c_contiguous
        events.append((int(a[0, 0]), int(a[0, -1]) + 1))
        return a

    pieces = run_windowed(model, x, windows, 1, on_window=lambda: events.append("window"))
    assert events == []  # lazy: nothing runs until the pieces are consumed
    list(pieces)
    expected: list[object] = []
    for w in windows:
        expected += ["window", (w.context_start, w.context_stop)]
    assert events == expected


# --- closed forms ------------------------------------------------------------------------------


def test_latents_to_dcae_input_divides_then_shifts() -> None:
    latents = np.array([0.0, 0.1786, -0.3572, 1.0], dtype=np.float32)
    z = latents_to_dcae_input(latents, 0.1786, -1.9091)
    assert z.dtype == np.float32
    np.testing.assert_allclose(
        z, [-1.9091, 1 - 1.9091, -2 - 1.9091, 1 / 0.1786 - 1.9091], rtol=1e-6
    )


def test_denormalize_mel_maps_minus_one_and_one_to_the_range() -> None:
    mel_n = np.array([-1.0, 0.0, 1.0, 0.5], dtype=np.float32)
    mel = denormalize_mel(mel_n, -11.0, 3.0)
    assert mel.dtype == np.float32
    np.testing.assert_allclose(mel, [-11.0, -4.0, 3.0, -0.5])
    np.testing.assert_allclose(denormalize_mel(mel_n, 0.0, 1.0), [0.0, 0.5, 1.0, 0.75])


# --- plan_decode and decode_latents -------------------------------------------------------------


def test_plan_decode_counts_one_unit_per_window() -> None:
    settings = DecodeSettings(dcae_window=8, dcae_overlap=0, vocoder_window=71, vocoder_overlap=0)
    plan = plan_decode(9, CONSTANTS, settings)
    assert plan.dcae == plan_windows(9, 8, 0, min_frames=4)
    assert plan.dcae[-1] == Window(8, 9, 5, 9)  # the DCAE needs 4 frames of input
    assert plan.vocoder == plan_windows(72, 71, 0, min_frames=2)  # 9 latent frames = 72 mel frames
    assert plan.vocoder[-1] == Window(71, 72, 70, 72)  # the vocoder needs 2
    assert plan.units == 2 + 2


def test_default_settings_decode_a_short_track_in_one_window_each() -> None:
    plan = plan_decode(CONSTANTS.latent_frames(30.0), CONSTANTS, DecodeSettings())
    assert (len(plan.dcae), len(plan.vocoder), plan.units) == (2, 2, 4)  # 322 frames, 2576 mel
    assert len(plan_decode(100, CONSTANTS, DecodeSettings()).dcae) == 1


SMALL = dataclasses.replace(CONSTANTS, mel_frames_per_latent_frame=4, vocoder_hop_length=3)
SMALL_SETTINGS = DecodeSettings(dcae_window=6, dcae_overlap=2, vocoder_window=20, vocoder_overlap=4)


class FakeGraphs:
    """A DCAE (channels 0-1, heights 0-2 of the latents, repeated per mel frame) and a vocoder
    (mean over mel bins, repeated per hop), both pointwise along time, recording every call."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    def dcae(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        assert list(feeds) == ["latents"]
        self.events.append("dcae")
        return dcae_model(feeds["latents"])

    def vocoder(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        assert list(feeds) == ["mel"]
        self.events.append("vocoder")
        return vocoder_model(feeds["mel"])


def dcae_model(z: np.ndarray) -> np.ndarray:
    return np.repeat(np.tanh(z[:, :2, :3, :]), SMALL.mel_frames_per_latent_frame, axis=-1)


def vocoder_model(mel: np.ndarray) -> np.ndarray:
    return np.repeat(mel.mean(axis=1, keepdims=True) * 0.1, SMALL.vocoder_hop_length, axis=-1)


def _latents(frames: int) -> np.ndarray:
    return np.random.default_rng(3).standard_normal((1, 8, 16, frames)).astype(np.float32)


def test_decode_latents_equals_the_whole_track_formula() -> None:
    latents = _latents(23)
    plan = plan_decode(23, SMALL, SMALL_SETTINGS)
    assert len(plan.dcae) > 1 and len(plan.vocoder) > 1
    events: list[str] = []
    graphs = FakeGraphs(events)
    wave = decode_latents(
        graphs.dcae,
        graphs.vocoder,
        latents,
        SMALL,
        plan,
        check_cancel=lambda: events.append("check"),
        on_window=lambda: events.append("done"),
    )
    z = latents_to_dcae_input(latents, SMALL.dcae_scale, SMALL.dcae_shift)
    mel = denormalize_mel(dcae_model(z)[0], SMALL.mel_min, SMALL.mel_max)
    expected = vocoder_model(mel)[:, 0, :]
    assert wave.dtype == np.float32
    assert wave.shape == (2, 23 * 4 * 3)
    np.testing.assert_allclose(wave, expected, rtol=1e-6, atol=1e-7)
    # every DCAE window before any vocoder window; check before and on_window after each
    assert events == ["check", "dcae", "done"] * len(plan.dcae) + [
        "check",
        "vocoder",
        "done",
    ] * len(plan.vocoder)


@pytest.mark.parametrize("cancel_at", [1, 2, 4, 5])  # 5: the first vocoder window
def test_cancel_stops_the_decode_at_the_next_window(cancel_at: int) -> None:
    plan = plan_decode(23, SMALL, SMALL_SETTINGS)
    assert len(plan.dcae) == 4
    events: list[str] = []
    graphs = FakeGraphs(events)
    checks = 0

    def check_cancel() -> None:
        nonlocal checks
        checks += 1
        if checks == cancel_at:
            raise CancelledError()

    with pytest.raises(CancelledError):
        decode_latents(
            graphs.dcae,
            graphs.vocoder,
            _latents(23),
            SMALL,
            plan,
            check_cancel=check_cancel,
            on_window=lambda: None,
        )
    assert events == ["dcae"] * (cancel_at - 1)  # nothing ran after the cancelling check
