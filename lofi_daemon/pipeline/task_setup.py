"""Everything a task needs decided before any model runs: seeds, frame counts, noise arrays.

The checks here run before the text encoder (and, for an audio source, before the DCAE encoder),
so a region outside the source, an extension past 240 s or a wrongly shaped injected noise costs
nothing. Frame geometry follows upstream ``acestep/pipeline_ace_step.py:
text2music_diffusion_process``: x_T has the source's length (the duration's for text2music and
retake); extend's output adds ``left`` and ``right`` frames around the source.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace

import numpy as np

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model.constants import ModelConstants
from lofi_daemon.pipeline.params import GenerationParams, seconds_to_frames
from lofi_daemon.pipeline.source import SourceAudio
from lofi_daemon.pipeline.tasks import MAX_FRAMES

MAX_SOURCE_FRAMES = MAX_FRAMES + 1
"""A 240 s source padded to whole frames: ``ceil(240·44100/4096)`` = 2584."""


def resolve_seeds(params: GenerationParams) -> GenerationParams:
    """Fill the random seeds (``seed``; ``retake_seed`` for the tasks that draw a retake noise)
    and the task's default ``retake_variance``."""
    params = params.resolved()
    if params.seed is None:
        params = params.with_seed(secrets.randbits(32))
    if params.uses_retake_noise and params.retake_seed is None:
        params = replace(params, retake_seed=secrets.randbits(32))
    return params


@dataclass(frozen=True)
class Layout:
    """The latent frame counts of one generation.

    Attributes:
        noise_frames: frames of x_T (the main-seed noise).
        retake_frames: frames of the retake-seed noise (0 when the task draws none).
        out_frames: frames of the result.
        region: repaint's ``[s0, s1)`` frames.
        left, right: frames extend adds before and after the source.
    """

    noise_frames: int
    retake_frames: int
    out_frames: int
    region: tuple[int, int] | None = None
    left: int = 0
    right: int = 0


def plan_layout(
    params: GenerationParams, constants: ModelConstants, src_frames: int | None
) -> Layout:
    """Frame counts for ``params`` over a source of ``src_frames`` (None without a source).

    Raises:
        LofiError: INVALID_PARAMETER when the repaint region leaves the source or the extended
            track would pass 240 s (upstream trims and restores such an extension wrongly).
    """
    task = params.task
    if src_frames is None:
        frames = constants.latent_frames(params.duration_sec)
        return Layout(frames, frames if params.uses_retake_noise else 0, frames)
    if task == "repaint":
        s0, s1 = seconds_to_frames(params.repaint_start), seconds_to_frames(params.repaint_end)
        if not 0 <= s0 < s1 <= src_frames:
            seconds = src_frames * constants.samples_per_latent_frame / constants.sample_rate_model
            raise LofiError(
                errors.INVALID_PARAMETER,
                f"repaint_start {params.repaint_start:g} s to repaint_end {params.repaint_end:g} s "
                f"(frames {s0} to {s1}) must lie inside the source of {seconds:.2f} s "
                f"({src_frames} frames)",
            )
        return Layout(src_frames, src_frames, src_frames, region=(s0, s1))
    if task == "extend":
        left, right = seconds_to_frames(params.extend_left), seconds_to_frames(params.extend_right)
        total = left + src_frames + right
        if total > MAX_FRAMES:
            raise LofiError(
                errors.INVALID_PARAMETER,
                f"extend_left {params.extend_left:g} s and extend_right {params.extend_right:g} s "
                f"would make the track {total} latent frames "
                f"({total * constants.samples_per_latent_frame / constants.sample_rate_model:.1f}"
                f" s); the limit is {MAX_FRAMES} frames (240 s)",
            )
        retake = max(src_frames, left, right)
        return Layout(src_frames, retake, total, left=left, right=right)
    return Layout(src_frames, 0, src_frames)  # audio2audio, edit


def checked_noise(name: str, noise: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """An injected noise as float32, or a clear INVALID_PARAMETER (shape, float, finite)."""
    if noise is None:
        return None
    array = np.asarray(noise)
    if array.shape != shape or not np.issubdtype(array.dtype, np.floating):
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"{name} must be a float array of shape {list(shape)}, "
            f"got {array.dtype} {list(array.shape)}",
        )
    if not np.isfinite(array).all():
        raise LofiError(errors.INVALID_PARAMETER, f"{name} contains NaN or infinity")
    return array.astype(np.float32)


def checked_source_latents(
    latents: np.ndarray, label: str, constants: ModelConstants
) -> np.ndarray:
    """Saved source latents as float32 ``[1, 8, 16, T]``, or INVALID_SOURCE naming ``label``."""
    array = np.asarray(latents)
    channels, height = constants.latent_channels, constants.latent_height
    if (
        array.ndim != 4
        or array.shape[:3] != (1, channels, height)
        or not np.issubdtype(array.dtype, np.floating)
    ):
        raise LofiError(
            errors.INVALID_SOURCE,
            f"{label}: saved latents must be a float array of shape [1, {channels}, {height}, T], "
            f"got {array.dtype} {list(array.shape)}",
        )
    min_frames = constants.latent_frames(5.0)
    if not min_frames <= array.shape[3] <= MAX_SOURCE_FRAMES:
        raise LofiError(
            errors.INVALID_SOURCE,
            f"{label}: saved latents have {array.shape[3]} frames; a source has "
            f"{min_frames} to {MAX_SOURCE_FRAMES} (5 to 240 s)",
        )
    if not np.isfinite(array).all():
        raise LofiError(errors.INVALID_SOURCE, f"{label}: saved latents contain NaN or infinity")
    return array.astype(np.float32)


@dataclass(frozen=True)
class Noises:
    """The task's noise draws: x_T, the retake noise, and the main-seed generator after x_T
    (PingPong and FlowEdit draw from it next)."""

    noise: np.ndarray | None
    retake: np.ndarray | None
    rng: np.random.Generator


def draw_noises(
    params: GenerationParams,
    constants: ModelConstants,
    layout: Layout,
    initial_noise: np.ndarray | None,
    retake_noise: np.ndarray | None,
) -> Noises:
    """Draw x_T from ``seed`` and the retake noise from ``retake_seed`` (PCG64 standard normals,
    float32), or take the injected arrays in their place (checked with :func:`check_injected`).

    The main generator still draws x_T when it is injected, so what it draws next (PingPong
    noise) is the same as in the seeded run. Edit draws no x_T: FlowEdit takes every noise from
    the fresh main-seed generator (upstream draws them from the retake generators; here the
    user has one seed).
    """
    assert params.seed is not None  # resolve_seeds ran
    rng = np.random.Generator(np.random.PCG64(params.seed))
    if params.task == "edit":
        return Noises(None, None, rng)
    noise = rng.standard_normal(noise_shape(constants, layout.noise_frames), dtype=np.float32)
    if initial_noise is not None:
        noise = initial_noise
    retake = None
    if layout.retake_frames:
        assert params.retake_seed is not None
        retake = retake_noise
        if retake is None:
            retake_rng = np.random.Generator(np.random.PCG64(params.retake_seed))
            shape = noise_shape(constants, layout.retake_frames)
            retake = retake_rng.standard_normal(shape, dtype=np.float32)
    return Noises(noise, retake, rng)


def noise_shape(constants: ModelConstants, frames: int) -> tuple[int, int, int, int]:
    return (1, constants.latent_channels, constants.latent_height, frames)


def check_injected(
    params: GenerationParams,
    constants: ModelConstants,
    layout: Layout,
    initial_noise: np.ndarray | None,
    retake_noise: np.ndarray | None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Check the injected noises against the task: shapes, dtype, finiteness, and that the task
    draws them at all (edit draws no x_T; only retake, repaint and extend draw a retake noise)."""
    if initial_noise is not None and params.task == "edit":
        raise LofiError(
            errors.INVALID_PARAMETER, "edit draws no initial noise; do not pass initial noise"
        )
    if retake_noise is not None and not layout.retake_frames:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"{params.task} draws no retake noise; only retake, repaint and extend use it",
        )
    initial = checked_noise(
        "initial noise", initial_noise, noise_shape(constants, layout.noise_frames)
    )
    retake = checked_noise(
        "retake noise", retake_noise, noise_shape(constants, layout.retake_frames)
    )
    return initial, retake


def check_source_given(params: GenerationParams, source: SourceAudio | None) -> None:
    """A source exactly for the source tasks, given as a file or as latents (one of them)."""
    if params.uses_source and source is None:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"{params.task} needs a source audio (a file or a cached track)",
        )
    if not params.uses_source and source is not None:
        raise LofiError(
            errors.INVALID_PARAMETER, f"{params.task} takes no source audio; drop the source"
        )
    if source is not None and (source.path is None) == (source.latents is None):
        raise LofiError(
            errors.INVALID_PARAMETER,
            "a source is either an audio file or saved latents, exactly one of them",
        )
