"""Rendering continuations on the held tail's grid (:mod:`lofi_daemon.radio.render`, the
sub-sample alignment of :func:`~lofi_daemon.radio.render.render_continuation`): synthetic decodes
on grids a fraction of a sample apart, and the tiny models' text2music segment and its extend
continuation. The rest of ``render.py``: ``test_render.py``."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from radio.continuity import boundary_metrics, inside_range, join_problems

from lofi_daemon.pipeline.engine import Engine
from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.pipeline.source import SourceAudio
from lofi_daemon.radio.joins import (
    SAMPLE_RATE,
    JoinSettings,
    context_samples,
    correlation,
    frames_to_samples,
    read_at,
    tail_position,
)
from lofi_daemon.radio.render import (
    Rendered,
    read_wave,
    render_continuation,
    render_first,
    write_segment,
)

JOIN = JoinSettings()  # X = 72000, H = 120000
X, H = JOIN.crossfade_samples, JOIN.hold_samples
CONTEXT_FRAMES = 53
C = context_samples(CONTEXT_FRAMES)


# ---------------------------------------------------------------------------------------------
# Sub-sample alignment: continuations decoded on grids a fraction of a sample apart
# ---------------------------------------------------------------------------------------------

SMALL = JoinSettings.for_crossfade(0.5)  # X = 24000, H = 72000: small synthetic outputs
SX, SH = SMALL.crossfade_samples, SMALL.hold_samples
EXACT_BOUND = 1e-6
"""How closely the aligned files reproduce the band-limited signal (its peak is about 0.6): the
interpolation is within 4e-7 of an exact delay below 22.05 kHz, plus float32 rounding; 16-bit
files quantise 30 times coarser."""


class BandLimited:
    """A sum of 48 sines at random frequencies up to 20 kHz, evaluated at any time (in samples
    at 48 kHz): audio that two decodes can sample on grids offset by a fraction of a sample."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.freq = rng.uniform(40.0, 20000.0, 48) / SAMPLE_RATE
        self.phase = rng.uniform(0.0, 2 * np.pi, 48)
        self.amp = rng.uniform(0.2, 1.0, 48) / 24

    def at(self, times: np.ndarray) -> np.ndarray:
        """``[len(times), 2]`` float32 (the right channel a little quieter)."""
        left = np.zeros(len(times))
        for f, p, a in zip(self.freq, self.phase, self.amp, strict=True):
            left += a * np.sin(2 * np.pi * f * times + p)
        return np.stack([left, 0.8 * left], axis=1).astype(np.float32)


def decoded_chain(
    signal: BandLimited, frames: list[int], context_frames: int, *, aligned: bool
) -> tuple[list[Rendered], list[tuple[np.ndarray, np.ndarray]], list[float]]:
    """Render a station's chain from simulated decodes of ``signal``.

    The first segment has ``frames[0]`` latent frames and an output one sample past their end
    (text2music's ``ceil`` resampled length); each continuation re-decodes the last
    ``context_frames`` frames of the one before plus ``frames[i]`` new ones (its output
    floored, as ``extend``'s). An output's sample 0 is its first frame's exact time on the
    first output's clock, so consecutive outputs sample ``signal`` on grids a fraction of a
    sample apart. ``aligned``: each head at :func:`tail_position`, else at the rounded context
    end. Returns the files, each join's crossfaded parts (the tail, the head read as placed)
    and where each head was placed.
    """
    origin, latents = 0.0, frames[0]  # the source segment's first frame (clock) and frames
    wave = signal.at(np.arange(math.ceil(frames_to_samples(latents)), dtype=np.float64))
    rendered = [render_first(wave, SMALL)]
    parts, places = [], []
    for new in frames[1:]:
        origin += frames_to_samples(latents - context_frames)
        n = int(frames_to_samples(context_frames + new))
        wave = signal.at(origin + np.arange(n, dtype=np.float64))
        previous = rendered[-1]
        if aligned:
            at = tail_position(previous.tail_at, latents, context_frames)
        else:
            at = float(context_samples(context_frames) - SH)
        parts.append((previous.tail, read_at(wave, at, SX)))
        places.append(at)
        rendered.append(render_continuation(previous.tail, wave, at, SMALL))
        latents = context_frames + new
    return rendered, parts, places


def test_aligned_continuations_reproduce_a_signal_decoded_on_offset_grids() -> None:
    """Three decodes of one band-limited signal, each on a grid a fraction of a sample off the
    one before: the aligned files played back to back are the signal on the first grid, the
    crossfades included, to within EXACT_BOUND; the rounded placement is far off."""
    signal = BandLimited(21)
    frames, context = [53, 36, 39], 30
    files, parts, places = decoded_chain(signal, frames, context, aligned=True)
    # The heads lie well between samples, and 0.6 of a sample or more from the rounded place.
    rounded_place = context_samples(context) - SH
    assert all(abs(at - round(at)) > 0.3 and abs(at - rounded_place) > 0.6 for at in places)
    played = np.concatenate([f.audio for f in files])
    expected = signal.at(np.arange(played.shape[0], dtype=np.float64))
    start = SMALL.fade_in_samples
    error = np.abs(played[start:] - expected[start:]).max()
    rounded_files, rounded_parts, _ = decoded_chain(signal, frames, context, aligned=False)
    rounded = np.concatenate([f.audio for f in rounded_files])
    n = min(len(rounded), len(played))
    rounded_error = np.abs(rounded[start:n] - expected[start:n]).max()
    r_aligned = [float(correlation(t, h).min()) for t, h in parts]
    r_rounded = [float(correlation(t, h).min()) for t, h in rounded_parts]
    print(
        f"\nsynthetic: max error {error:.2e} aligned, {rounded_error:.2e} rounded; "
        f"r {r_aligned} aligned, {r_rounded} rounded"
    )
    assert error < EXACT_BOUND
    assert rounded_error > 100 * EXACT_BOUND
    assert min(r_aligned) > 1 - 1e-9
    assert max(r_rounded) < 0.99
    # The files tile the clock: each starts where the previous one ended, on the first grid.
    ends = np.cumsum([f.audio.shape[0] for f in files])
    for a, b, end in zip(files, files[1:], ends, strict=False):
        assert join_problems(a.audio[start:], b.audio) == []
        np.testing.assert_allclose(b.audio[0], expected[end], atol=EXACT_BOUND)
    np.testing.assert_allclose(
        files[-1].tail, signal.at(ends[-1] + np.arange(SX, dtype=np.float64)), atol=EXACT_BOUND
    )


# ---------------------------------------------------------------------------------------------
# The tiny models' audio: a text2music segment and its extend continuation
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TinyJoin:
    first: np.ndarray  # the first segment file, read back
    second: np.ndarray  # the continuation's file (aligned), read back
    extend_out: np.ndarray  # the continuation's engine output
    at: float  # where the held tail lies in it (tail_position)
    parts: dict[str, tuple[np.ndarray, np.ndarray]]  # "aligned"/"rounded": (tail, head)


@pytest.fixture(scope="module")
def tiny_join(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyJoin]:
    """Two consecutive segment files, rendered and written as the station does, read back; and
    the crossfade's parts with the head aligned and at the rounded context end (before)."""
    out = tmp_path_factory.mktemp("radio-join")
    engine = Engine(tiny_models, provider="cpu")
    try:
        prompt = "lofi hip hop, rainy"
        first = engine.generate(
            GenerationParams(
                prompt, duration_sec=10, seed=1, infer_steps=4, format="wav", wav_subtype="float"
            ),
            out / "gen0.wav",
        )
        source = SourceAudio(latents=first.latents[..., -CONTEXT_FRAMES:], label="prev")
        cont = engine.generate(
            GenerationParams(
                prompt,
                infer_steps=4,
                format="wav",
                seed=2,
                retake_seed=3,
                task="extend",
                extend_right=5.0,
                wav_subtype="float",
            ),
            out / "gen1.wav",
            source=source,
        )
    finally:
        engine.close()
    seg0 = render_first(read_wave(first.path), JOIN)
    wave = read_wave(cont.path)
    at = tail_position(seg0.tail_at, first.latents.shape[-1], CONTEXT_FRAMES)
    seg1 = render_continuation(seg0.tail, wave, at, JOIN)
    write_segment(out / "seg0.flac", seg0.audio)
    write_segment(out / "seg1.flac", seg1.audio)
    parts = {
        "aligned": (seg0.tail, read_at(wave, at, X)),
        "rounded": (seg0.tail, wave[C - H : C - H + X]),
    }
    yield TinyJoin(read_wave(out / "seg0.flac"), read_wave(out / "seg1.flac"), wave, at, parts)


def test_tiny_model_join_is_within_the_inside_range(tiny_join: TinyJoin) -> None:
    a, b = tiny_join.first, tiny_join.second
    # The file holds the new audio: from the held tail's place to the hold before the end.
    assert b.shape[0] == round(tiny_join.extend_out.shape[0] - H - tiny_join.at)
    assert abs(b.shape[0] - (tiny_join.extend_out.shape[0] - C)) <= 1
    a = a[JOIN.fade_in_samples :]  # the station's own fade-in is not a join
    inside = {
        key: max(inside_range(a)[key], inside_range(b)[key]) for key in ("jump", "rms_change")
    }
    at = boundary_metrics(a, b)
    print(f"\ntiny-model join: boundary {at}, inside {inside}")
    assert max(np.abs(a).max(), np.abs(b).max()) > 0.0  # real audio, not silence
    assert join_problems(a, b, inside=inside) == []


def test_tiny_model_crossfade_parts_line_up(tiny_join: TinyJoin) -> None:
    """The held tail and the re-decoded head are the same music at the same instants once the
    head is read at the tail's exact place: their correlation is close to 1, far closer than
    at the rounded place (a fraction of a sample off: a comb filter over the crossfade)."""
    r, diff = {}, {}
    for name, (tail, head) in tiny_join.parts.items():
        r[name] = float(correlation(tail, head).min())
        diff[name] = float(np.sqrt(np.mean((tail.astype(np.float64) - head) ** 2)))
    level = float(np.sqrt(np.mean(tiny_join.parts["aligned"][0].astype(np.float64) ** 2)))
    offset = tiny_join.at - (C - H)
    print(
        f"\ntiny-model crossfade (head {offset:+.3f} samples from the rounded place, tail RMS "
        f"{level:.4f}): r {r['rounded']:.4f} -> {r['aligned']:.6f}, "
        f"RMS of tail - head {diff['rounded']:.2e} -> {diff['aligned']:.2e}"
    )
    assert abs(offset) > 0.1  # the rounded place is off by a fraction of a sample
    assert r["aligned"] > 0.999
    assert 1 - r["aligned"] < 0.1 * (1 - r["rounded"])
    assert diff["aligned"] < 0.25 * diff["rounded"]
