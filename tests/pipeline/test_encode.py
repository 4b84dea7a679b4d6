"""The encode path: mel front end from the manifest, padding, normalisation and latent scaling."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model.manifest import Manifest, load_manifest
from lofi_daemon.pipeline import mel
from lofi_daemon.pipeline.encode import (
    check_encoder_installed,
    encode_audio,
    latent_frames_of,
    load_mel_frontend,
    pad_to_frames,
)


@pytest.fixture(scope="module")
def manifest(tiny_models: Path) -> Manifest:
    return load_manifest(tiny_models)


def test_the_front_end_is_the_exported_one(manifest: Manifest) -> None:
    frontend = load_mel_frontend(manifest)
    assert (frontend.n_fft, frontend.hop) == (2048, 512)
    assert frontend.window.shape == (2048,) and frontend.filterbank.shape == (1025, 128)
    with np.load(manifest.root / "mel_frontend.npz") as data:
        np.testing.assert_array_equal(frontend.window, data["window"])
        np.testing.assert_array_equal(frontend.filterbank, data["filterbank"])


@pytest.mark.parametrize(("samples", "frames"), [(4096, 1), (4097, 2), (8191, 2), (266240, 65)])
def test_padding_to_whole_latent_frames(manifest: Manifest, samples: int, frames: int) -> None:
    wave = np.ones((2, samples), np.float32)
    assert latent_frames_of(samples, manifest.constants) == frames
    padded = pad_to_frames(wave, manifest.constants)
    assert padded.shape == (2, 4096 * frames)
    np.testing.assert_array_equal(padded[:, :samples], wave)
    assert not padded[:, samples:].any()  # zeros on the right


def test_encode_feeds_the_normalised_mel_and_scales_the_output(manifest: Manifest) -> None:
    constants = manifest.constants
    frontend = load_mel_frontend(manifest)
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal((2, 3 * 4096 + 100))).astype(np.float32)
    feeds: list[dict[str, np.ndarray]] = []

    def encoder(feed: dict[str, np.ndarray]) -> np.ndarray:
        feeds.append(feed)
        # z = shift + k / scale, so the latents must come back as exactly k
        k = np.arange(4, dtype=np.float32).reshape(1, 1, 1, 4)
        return np.broadcast_to(k / np.float32(0.1786) + np.float32(-1.9091), (1, 8, 16, 4))

    latents = encode_audio(encoder, wave, frontend, constants)
    (feed,) = feeds
    padded = np.pad(wave, ((0, 0), (0, 4 * 4096 - wave.shape[1])))
    expected = mel.normalize_mel(mel.log_mel(padded, frontend.window, frontend.filterbank))
    assert feed["mel"].shape == (1, 2, 128, 32) and feed["mel"].dtype == np.float32
    np.testing.assert_allclose(feed["mel"][0], expected, rtol=1e-6, atol=1e-6)
    assert latents.shape == (1, 8, 16, 4) and latents.dtype == np.float32
    np.testing.assert_allclose(latents[0, 3, 5], np.arange(4), atol=1e-5)


def test_a_wrong_encoder_output_is_an_inference_error(manifest: Manifest) -> None:
    frontend = load_mel_frontend(manifest)
    wave = np.zeros((2, 8192), np.float32)
    for bad in (np.zeros((1, 8, 16, 3), np.float32), np.full((1, 8, 16, 2), np.nan, np.float32)):

        def encoder(feed: dict[str, np.ndarray], out: np.ndarray = bad) -> np.ndarray:
            return out

        with pytest.raises(LofiError) as info:
            encode_audio(encoder, wave, frontend, manifest.constants)
        assert info.value.code == errors.MODEL_INFERENCE_FAILED
        assert "dcae_encoder" in info.value.message


def test_an_installation_without_the_encoder_says_so(manifest: Manifest) -> None:
    check_encoder_installed(manifest)  # the tiny export has it
    graphs = {k: v for k, v in manifest.graphs.items() if k != "dcae_encoder"}
    old = dataclasses.replace(manifest, graphs=graphs)
    with pytest.raises(LofiError) as info:
        load_mel_frontend(old)
    assert info.value.code == errors.MODEL_NOT_FOUND
    assert "dcae_encoder" in info.value.message and "setup" in info.value.remedy


def test_a_broken_front_end_file_is_a_load_error(manifest: Manifest, tmp_path: Path) -> None:
    (tmp_path / "mel_frontend.npz").write_bytes(b"not a zip archive")
    with pytest.raises(LofiError) as info:
        load_mel_frontend(dataclasses.replace(manifest, root=tmp_path))
    assert info.value.code == errors.MODEL_LOAD_FAILED
    assert "mel_frontend.npz" in info.value.message
    np.savez(tmp_path / "mel_frontend.npz", window=np.ones(16), filterbank=np.ones((9, 4)))
    with pytest.raises(LofiError) as info:
        load_mel_frontend(dataclasses.replace(manifest, root=tmp_path))
    assert info.value.code == errors.MODEL_LOAD_FAILED
    assert "n_fft 2048" in info.value.message
    (tmp_path / "mel_frontend.npz").unlink()
    with pytest.raises(LofiError) as info:
        load_mel_frontend(dataclasses.replace(manifest, root=tmp_path))
    assert info.value.code == errors.MODEL_NOT_FOUND
