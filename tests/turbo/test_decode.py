import numpy as np
import pytest

from lofi_daemon.turbo import decode


@pytest.mark.parametrize("frames", [128, 255, 256, 257, 300, 383, 384, 385, 1000, 15000])
def test_window_cores_cover_every_frame_exactly_once(frames: int) -> None:
    windows = decode.plan_tiles(frames)
    covered = np.zeros(frames, dtype=int)
    for w in windows:
        covered[w.start : w.stop] += 1
        assert 0 <= w.context_start <= w.start < w.stop <= w.context_stop <= frames
        assert w.context_stop - w.context_start <= 256
        assert w.start - w.context_start in (0, 64)
    assert (covered == 1).all()


def test_windows_follow_upstreams_stride_and_overlap() -> None:
    # upstream _tiled_decode_inner: stride = 256 − 2·64, num_steps = ceil(T / stride)
    windows = decode.plan_tiles(300)
    assert [(w.start, w.stop, w.context_start, w.context_stop) for w in windows] == [
        (0, 128, 0, 192),
        (128, 256, 64, 300),
        (256, 300, 192, 300),
    ]
    assert decode.plan_tiles(256) == [decode.Window(0, 256, 0, 256)]


def test_decode_tiled_keeps_each_windows_core() -> None:
    # a per-frame "decoder": each frame becomes 3 samples of its own value (2 channels)
    def vae(feeds: dict[str, np.ndarray]) -> np.ndarray:
        z = feeds["latents"]  # [1, C, F]
        frame_values = z.sum(axis=1)  # [1, F]
        return np.repeat(np.stack([frame_values, -frame_values], axis=1), 3, axis=-1)

    latents = np.random.default_rng(0).standard_normal((1, 700, 4)).astype(np.float32)
    calls = []
    wave = decode.decode_tiled(
        vae,
        latents,
        decode.plan_tiles(700),
        3,
        check_cancel=lambda: calls.append("check"),
        on_window=lambda: calls.append("window"),
    )
    expected = np.repeat(latents.sum(axis=2), 3, axis=-1)[0]
    assert wave.shape == (2, 2100)
    np.testing.assert_allclose(wave[0], expected, rtol=1e-6)
    np.testing.assert_allclose(wave[1], -expected, rtol=1e-6)
    assert calls.count("window") == len(decode.plan_tiles(700)) == 6


def test_finish_limits_normalises_to_minus_1_dbfs_and_trims() -> None:
    wave = np.array([[0.5, -3.0, 1.0, 2.0], [0.1, 0.2, 0.3, 0.4]], dtype=np.float32)
    out = decode.finish(wave, 3)
    assert out.shape == (2, 3)
    assert np.max(np.abs(out)) == pytest.approx(10 ** (-1 / 20), rel=1e-6)
    np.testing.assert_allclose(out[0], wave[0, :3] / 3.0 * 10 ** (-1 / 20), rtol=1e-6)


def test_quiet_audio_is_raised_and_silence_left_alone() -> None:
    quiet = np.full((2, 10), 0.01, dtype=np.float32)
    assert np.max(decode.finish(quiet, 10)) == pytest.approx(0.891251, rel=1e-5)
    silent = np.full((2, 10), 1e-7, dtype=np.float32)
    np.testing.assert_array_equal(decode.finish(silent, 10), silent)
