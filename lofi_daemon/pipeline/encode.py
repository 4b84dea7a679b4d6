"""Audio → latents: the DCAE encode path the audio tasks start from (acestep-v1.md §11.4).

Upstream ``acestep/music_dcae/music_dcae_pipeline.py: MusicDCAE.encode``: 44.1 kHz stereo audio,
right-padded with zeros to a multiple of 4096 samples → the vocoder's log-mel (window and
filterbank from the checkpoint, exported as ``mel_frontend.npz``) → ``((mel + 11) / 14 − 0.5) / 0.5``
→ the ``dcae_encoder`` graph → ``(z − shift_factor) · scale_factor``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model.constants import ModelConstants
from lofi_daemon.model.manifest import Manifest
from lofi_daemon.pipeline import mel

ENCODER_GRAPH = "dcae_encoder"

RunGraph = Callable[[dict[str, np.ndarray]], np.ndarray]

_REINSTALL = "Run :Lofi setup ace-step (or lofi-daemon setup ace-step) to reinstall the models."


@dataclass(frozen=True)
class MelFrontend:
    """The STFT window ``[n_fft]`` and mel filterbank ``[n_fft/2 + 1, n_mels]`` of the encoder."""

    window: np.ndarray
    filterbank: np.ndarray
    n_fft: int
    hop: int


def check_encoder_installed(manifest: Manifest) -> None:
    """Raise MODEL_NOT_FOUND when the installation cannot encode audio (an older export without
    the ``dcae_encoder`` graph or the ``mel_frontend`` file); text2music does not need them."""
    missing = []
    if ENCODER_GRAPH not in manifest.graphs:
        missing.append(f"the {ENCODER_GRAPH} graph")
    if not isinstance(manifest.raw.get("mel_frontend"), dict):
        missing.append("the mel_frontend file")
    if missing:
        raise LofiError(
            errors.MODEL_NOT_FOUND,
            f"the models at {manifest.root} have no {' and no '.join(missing)}, which the audio "
            "tasks need to read a source",
            remedy=_REINSTALL,
        )


def load_mel_frontend(manifest: Manifest) -> MelFrontend:
    """Read the window and filterbank named by the manifest's ``mel_frontend`` entry."""
    check_encoder_installed(manifest)
    entry: dict[str, Any] = manifest.raw["mel_frontend"]
    path = manifest.path(str(entry["file"]))
    try:
        with np.load(path, allow_pickle=False) as data:
            window = np.asarray(data["window"], dtype=np.float32)
            filterbank = np.asarray(data["filterbank"], dtype=np.float32)
    except FileNotFoundError:
        raise LofiError(
            errors.MODEL_NOT_FOUND, f"model file missing: {path}", remedy=_REINSTALL
        ) from None
    except (OSError, ValueError, KeyError) as exc:
        raise LofiError(
            errors.MODEL_LOAD_FAILED,
            f"cannot read the mel front end {path}: {errors.first_line(exc, 200)}",
            remedy=_REINSTALL,
        ) from None
    n_fft, hop = int(entry["n_fft"]), int(entry["hop_length"])
    if window.shape != (n_fft,) or filterbank.ndim != 2 or filterbank.shape[0] != n_fft // 2 + 1:
        raise LofiError(
            errors.MODEL_LOAD_FAILED,
            f"the mel front end {path} has window {list(window.shape)} and filterbank "
            f"{list(filterbank.shape)}, which do not fit n_fft {n_fft}",
            remedy=_REINSTALL,
        )
    return MelFrontend(window=window, filterbank=filterbank, n_fft=n_fft, hop=hop)


def latent_frames_of(n_samples: int, constants: ModelConstants) -> int:
    """Latent frames of ``n_samples`` at 44.1 kHz after the zero padding: ``ceil(N / 4096)``."""
    return math.ceil(n_samples / constants.samples_per_latent_frame)


def pad_to_frames(wave: np.ndarray, constants: ModelConstants) -> np.ndarray:
    """Right-pad ``wave`` ``[C, N]`` with zeros to a whole number of latent frames."""
    frames = latent_frames_of(wave.shape[1], constants)
    missing = frames * constants.samples_per_latent_frame - wave.shape[1]
    return np.pad(wave, ((0, 0), (0, missing))) if missing else wave


def encode_audio(
    run: RunGraph, wave: np.ndarray, frontend: MelFrontend, constants: ModelConstants
) -> np.ndarray:
    """Stereo 44.1 kHz audio ``[2, N]`` → latents ``[1, 8, 16, ceil(N / 4096)]`` (float32).

    The whole track goes through the encoder in one call, as upstream.
    """
    padded = pad_to_frames(np.asarray(wave, dtype=np.float32), constants)
    log_mel = mel.log_mel(
        padded, frontend.window, frontend.filterbank, frontend.n_fft, frontend.hop
    )
    span = constants.mel_max - constants.mel_min
    mel_n = ((log_mel - constants.mel_min) / span - 0.5) / 0.5  # no clamping, as upstream
    z = run({"mel": mel_n[None].astype(np.float32)})
    latents = (z.astype(np.float32) - np.float32(constants.dcae_shift)) * np.float32(
        constants.dcae_scale
    )
    frames = latent_frames_of(wave.shape[1], constants)
    expected = (1, constants.latent_channels, constants.latent_height, frames)
    if latents.shape != expected:
        raise LofiError(
            errors.MODEL_INFERENCE_FAILED,
            f"{ENCODER_GRAPH} returned latents {list(latents.shape)}, expected {list(expected)}",
        )
    if not np.isfinite(latents).all():
        raise LofiError(
            errors.MODEL_INFERENCE_FAILED, f"{ENCODER_GRAPH} produced non-finite latents"
        )
    return latents.astype(np.float32, copy=False)
