"""Tests for the log-mel front-end: filterbank, torch reference and the numpy runtime version."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from lofi_export.modules.mel import (
    LogMel,
    hann_window_periodic,
    hz_to_mel_slaney,
    mel_to_hz_slaney,
    slaney_mel_filterbank,
)

from lofi_daemon.pipeline.mel import MAX_MEL, MIN_MEL, denormalize_mel, log_mel, normalize_mel

SR, N_FFT, HOP, N_MELS, F_MIN, F_MAX = 44100, 2048, 512, 128, 40.0, 16000.0


@pytest.fixture(scope="module")
def official_fb() -> np.ndarray:
    return slaney_mel_filterbank(N_FFT // 2 + 1, F_MIN, F_MAX, N_MELS, SR)


def _expected_centres_hz(f_min: float, f_max: float, n_mels: int) -> np.ndarray:
    """Filter centres from the Slaney formula written out independently of the module."""

    def to_mel(f: float) -> float:
        return 3.0 * f / 200.0 if f < 1000.0 else 15.0 + 27.0 * math.log(f / 1000.0) / math.log(6.4)

    def to_hz(m: float) -> float:
        return 200.0 * m / 3.0 if m < 15.0 else 1000.0 * 6.4 ** ((m - 15.0) / 27.0)

    mels = np.linspace(to_mel(f_min), to_mel(f_max), n_mels + 2)
    return np.array([to_hz(m) for m in mels[1:-1]])


# --------------------------------------------------------------------------------------------
# Filterbank
# --------------------------------------------------------------------------------------------


def test_slaney_scale_anchor_points() -> None:
    assert hz_to_mel_slaney(1000.0) == pytest.approx(15.0, abs=1e-12)
    assert hz_to_mel_slaney(6400.0) == pytest.approx(42.0, abs=1e-12)  # 27 mels per factor 6.4
    assert hz_to_mel_slaney(300.0) == pytest.approx(4.5, abs=1e-12)
    mels = np.linspace(0.0, 60.0, 241)
    np.testing.assert_allclose(hz_to_mel_slaney(mel_to_hz_slaney(mels)), mels, atol=1e-9)


def test_filterbank_shape_and_sign(official_fb: np.ndarray) -> None:
    assert official_fb.shape == (1025, 128)
    assert official_fb.dtype == np.float32
    assert official_fb.min() >= 0.0
    assert np.all(official_fb.sum(axis=0) > 0.0)
    bin_hz = np.linspace(0, SR // 2, 1025)
    assert np.all(official_fb[bin_hz < F_MIN] == 0.0)
    assert np.all(official_fb[bin_hz > F_MAX] == 0.0)


def test_filterbank_hand_computed_values() -> None:
    # sr 2000 → bins every 100 Hz; 0..1000 Hz is the linear part of the scale, so the 6 edges
    # are 0, 200, 400, 600, 800, 1000 Hz and every filter spans 400 Hz (peak 2/400 = 0.005).
    fb = slaney_mel_filterbank(11, 0.0, 1000.0, 4, 2000)
    want = np.zeros((11, 4))
    for m in range(4):
        want[2 * m + 1, m] = 0.0025
        want[2 * m + 2, m] = 0.005
        want[2 * m + 3, m] = 0.0025
    np.testing.assert_allclose(fb, want, rtol=1e-6, atol=1e-9)


def test_filterbank_triangles_have_unit_area() -> None:
    # Sampled finely, each Slaney-normalised triangle integrates to 1 over frequency in Hz.
    n_freqs = 50_001
    fb = slaney_mel_filterbank(n_freqs, F_MIN, F_MAX, N_MELS, SR).astype(np.float64)
    step = (SR // 2) / (n_freqs - 1)
    np.testing.assert_allclose(fb.sum(axis=0) * step, 1.0, rtol=1e-3)


def test_filterbank_peaks_at_mel_centres(official_fb: np.ndarray) -> None:
    bin_hz = np.linspace(0, SR // 2, 1025)
    centres = _expected_centres_hz(F_MIN, F_MAX, N_MELS)
    peak_hz = bin_hz[np.argmax(official_fb, axis=0)]
    assert np.all(np.abs(peak_hz - centres) <= bin_hz[1] / 2 + 1e-9)


def test_hann_window_matches_torch() -> None:
    for n in (8, 2048):  # torch evaluates the cosine in float32: allow 2 ulp near 1
        np.testing.assert_allclose(
            hann_window_periodic(n), torch.hann_window(n).numpy(), rtol=0, atol=2.5e-7
        )
    assert hann_window_periodic(2048)[0] == 0.0


# --------------------------------------------------------------------------------------------
# Log-mel: torch reference vs numpy runtime
# --------------------------------------------------------------------------------------------


def _torch_log_mel(wave: np.ndarray, window: np.ndarray, fb: np.ndarray) -> np.ndarray:
    module = LogMel(torch.from_numpy(window), torch.from_numpy(fb), hop_length=HOP)
    with torch.no_grad():
        return module(torch.from_numpy(wave)).numpy()


@pytest.mark.parametrize("n_samples", [512 * 40, 512 * 40 + 300])
def test_numpy_log_mel_matches_torch(official_fb: np.ndarray, n_samples: int) -> None:
    rng = np.random.default_rng(0)
    wave = (rng.standard_normal((2, n_samples)) * 0.3).astype(np.float32)
    window = hann_window_periodic(N_FFT)
    got = log_mel(wave, window, official_fb, n_fft=N_FFT, hop=HOP)
    want = _torch_log_mel(wave, window, official_fb)
    assert got.dtype == np.float32
    assert got.shape == want.shape == (2, N_MELS, 1 + (n_samples - HOP) // HOP)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_log_mel_uses_the_given_buffers(official_fb: np.ndarray) -> None:
    # The runtime must use the checkpoint's (16-bit) buffers; results follow whatever is passed.
    rng = np.random.default_rng(1)
    wave = (rng.standard_normal((1, 512 * 8)) * 0.3).astype(np.float32)
    window = hann_window_periodic(N_FFT)
    window16 = torch.from_numpy(window).to(torch.bfloat16).float().numpy()
    fb16 = torch.from_numpy(official_fb).to(torch.bfloat16).float().numpy()
    got = log_mel(wave, window16, fb16)
    np.testing.assert_allclose(got, _torch_log_mel(wave, window16, fb16), rtol=0, atol=1e-4)
    assert np.abs(got - log_mel(wave, window, official_fb)).max() > 1e-4


def test_log_mel_of_silence_is_floor_bounded(official_fb: np.ndarray) -> None:
    wave = np.zeros((2, 512 * 4), dtype=np.float32)
    out = log_mel(wave, hann_window_periodic(N_FFT), official_fb)
    # |X| = sqrt(1e-6) = 1e-3 in every bin, so mel = 1e-3 * (filter sum) unless below the floor.
    expected = np.log(np.maximum(1e-3 * official_fb.astype(np.float64).sum(axis=0), 1e-5))
    np.testing.assert_allclose(out[0, :, 0], expected, rtol=0, atol=1e-5)


def test_log_mel_rejects_bad_input(official_fb: np.ndarray) -> None:
    window = hann_window_periodic(N_FFT)
    with pytest.raises(ValueError):
        log_mel(np.zeros(4096, np.float32), window, official_fb)
    with pytest.raises(ValueError):
        log_mel(np.zeros((1, 700), np.float32), window, official_fb)  # shorter than the padding
    with pytest.raises(ValueError):
        log_mel(np.zeros((1, 4096), np.float32), window[:1024], official_fb)


# --------------------------------------------------------------------------------------------
# Normalisation: ((mel + 11) / 14 − 0.5) / 0.5 and its inverse 7x − 4, with no clamping
# (upstream acestep/music_dcae/music_dcae_pipeline.py: MusicDCAE.encode / decode)
# --------------------------------------------------------------------------------------------


def test_normalisation_constants_and_formulas() -> None:
    assert (MIN_MEL, MAX_MEL) == (-11.0, 3.0)
    mel = np.array([-11.0, 3.0, -4.0, 10.0, -20.0], dtype=np.float32)
    np.testing.assert_allclose(normalize_mel(mel), (mel + 11.0) / 7.0 - 1.0, rtol=1e-6)
    assert normalize_mel(mel)[0] == -1.0 and normalize_mel(mel)[1] == 1.0
    assert normalize_mel(mel)[3] > 1.0 and normalize_mel(mel)[4] < -1.0  # no clamping
    x = np.linspace(-1.5, 1.5, 13, dtype=np.float32)
    np.testing.assert_allclose(denormalize_mel(x), 7.0 * x - 4.0, rtol=0, atol=1e-5)


def test_normalisation_round_trip_keeps_float32() -> None:
    rng = np.random.default_rng(2)
    mel = rng.uniform(-14.0, 5.0, size=(2, 128, 50)).astype(np.float32)
    norm = normalize_mel(mel)
    assert norm.dtype == np.float32
    np.testing.assert_allclose(denormalize_mel(norm), mel, rtol=0, atol=1e-5)
