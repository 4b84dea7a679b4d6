"""Issue 3 acceptance: the text2music engine end to end on the tiny exported models.

Every test drives the real :class:`Engine` over the ONNX graphs exported by the session fixture
``tiny_models``. A spy on :class:`GraphRunner` records the feeds of every graph call, so the tests
can check how the engine batches the guidance branches and routes the ERG rows.

Building an ONNX Runtime session (graph optimisation) costs more than running the tiny graphs, so
this module creates each session once and hands the same session to every engine (see
``shared_sessions``). Sessions hold no per-run state, so sharing them changes no output; the CLI and
provider tests load their sessions normally.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf
from model_damage import corrupt_keep_size, truncate

from lofi_daemon import errors
from lofi_daemon.errors import CancelledError, LofiError
from lofi_daemon.pipeline import providers as providers_module
from lofi_daemon.pipeline.decode import DecodeSettings, plan_windows
from lofi_daemon.pipeline.engine import Engine, GenerationResult
from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.pipeline.progress import Progress
from lofi_daemon.pipeline.schedulers import make_scheduler
from lofi_daemon.pipeline.sessions import GraphRunner

PROMPT = "lofi hip hop, mellow rhodes, vinyl crackle, 80 bpm"
FAST: dict[str, Any] = {"duration_sec": 5.0, "infer_steps": 4, "seed": 7}
SCHEDULERS = ("euler", "heun", "pingpong")
CFG_TYPES = ("apg", "cfg", "cfg_star")
ERG_FLAGS = ("use_erg_tag", "use_erg_lyric", "use_erg_diffusion")


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def shared_sessions() -> Iterator[dict[tuple[str, tuple[str, ...], int | None], Any]]:
    """Create each (file, providers, threads) session once for the whole module."""
    real = providers_module.create_session
    sessions: dict[tuple[str, tuple[str, ...], int | None], ort.InferenceSession] = {}

    def cached(
        path: Path, providers: list[str], threads: int | None, *, strict: bool = False
    ) -> ort.InferenceSession:
        key = (str(path), tuple(providers), threads)
        if key not in sessions:
            sessions[key] = real(path, providers, threads, strict=strict)
        return sessions[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(providers_module, "create_session", cached)
        yield sessions


@pytest.fixture(scope="module")
def engine(tiny_models: Path) -> Engine:
    return Engine(tiny_models, provider="cpu")


@dataclasses.dataclass(frozen=True)
class GraphCall:
    graph: str
    feeds: dict[str, np.ndarray]
    outputs: list[np.ndarray]


@pytest.fixture
def graph_calls(monkeypatch: pytest.MonkeyPatch) -> list[GraphCall]:
    """Every graph call of the test, in order, with copies of its feeds and outputs."""
    calls: list[GraphCall] = []
    original = GraphRunner.__call__

    def recording(self: GraphRunner, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        copied = {name: np.array(value, copy=True) for name, value in feeds.items()}
        outputs = original(self, feeds)
        calls.append(GraphCall(self.graph, copied, [np.array(o, copy=True) for o in outputs]))
        return outputs

    monkeypatch.setattr(GraphRunner, "__call__", recording)
    return calls


def of(calls: list[GraphCall], graph: str) -> list[GraphCall]:
    return [call for call in calls if call.graph == graph]


def make_params(**overrides: Any) -> GenerationParams:
    return GenerationParams(**{"prompt": PROMPT, **FAST, **overrides})


def generate(engine: Engine, out: Path, **overrides: Any) -> GenerationResult:
    return engine.generate(make_params(**overrides), out)


def latent_frames(duration_sec: float) -> int:
    """T = int(d·44100/4096) as in upstream ``text2music_diffusion_process``, written out here
    independently of the engine."""
    return int(duration_sec * 44100 / 4096)


def expected_samples(duration_sec: float) -> int:
    """ceil(4096·T·160/147): the 48 kHz length of T latent frames (4096 samples each at 44.1 kHz)."""
    return -(-4096 * latent_frames(duration_sec) * 160 // 147)


def read(path: Path) -> np.ndarray:
    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    assert rate == 48000
    return samples


def assert_track(path: Path, duration_sec: float) -> np.ndarray:
    """A readable 48 kHz stereo file of the spec length, never longer than asked; returns samples."""
    info = sf.info(str(path))
    assert (info.samplerate, info.channels) == (48000, 2)
    assert info.frames == expected_samples(duration_sec)
    assert info.frames <= duration_sec * 48000
    samples = read(path)
    assert samples.shape == (expected_samples(duration_sec), 2)
    assert np.isfinite(samples).all()
    assert float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) > 1e-5, "silent output"
    return samples


def guided_indices(n_steps: int, loop_length: int, interval: float = 0.5) -> list[bool]:
    """Which loop entries are guided: ``int(N(1−gi)/2) ≤ i < int(N(gi/2+0.5))`` as in upstream
    ``text2music_diffusion_process``, computed from N, not the loop."""
    start = int(n_steps * ((1 - interval) / 2))
    end = int(n_steps * (interval / 2 + 0.5))
    return [start <= i < end for i in range(loop_length)]


def loop_length(scheduler: str, n_steps: int) -> int:
    return 2 * n_steps - 1 if scheduler == "heun" else n_steps


def erg_row(n_layers: int, layers: list[int], scale: float) -> np.ndarray:
    row = np.ones(n_layers, dtype=np.float32)
    row[layers] = scale
    return row


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


# ---------------------------------------------------------------------------------------------
# The whole pipeline
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("erg", [True, False], ids=["erg", "no-erg"])
@pytest.mark.parametrize("cfg_type", CFG_TYPES)
@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_pipeline_every_scheduler_and_guidance(
    engine: Engine,
    tmp_path: Path,
    graph_calls: list[GraphCall],
    scheduler: str,
    cfg_type: str,
    erg: bool,
) -> None:
    out = tmp_path / "track.wav"
    flags = dict.fromkeys(ERG_FLAGS, erg)
    result = generate(engine, out, scheduler=scheduler, cfg_type=cfg_type, **flags)

    assert_track(out, 5.0)
    assert result.path == out
    assert not out.with_suffix(".json").exists()  # the engine writes audio only
    assert result.sidecar()["path"] == "track.wav" and result.sidecar()["seed"] == 7
    assert (result.sample_rate, result.channels, result.seed) == (48000, 2, 7)
    assert result.duration_sec == pytest.approx(expected_samples(5.0) / 48000)
    # the final latents come back with the result, outside the sidecar
    assert result.latents.shape == (1, 8, 16, latent_frames(5.0))
    assert result.latents.dtype == np.float32 and "latents" not in result.sidecar()
    assert result.params.task == "text2music" and result.params.duration_sec == 5.0

    # The encoders run once per generation; the denoiser once per loop entry, with the
    # conditional and unconditional branches stacked in one batch inside the guidance interval.
    assert len(of(graph_calls, "text_encoder")) == 1
    assert len(of(graph_calls, "condition_encoder")) == 1
    denoiser = of(graph_calls, "denoiser")
    n = FAST["infer_steps"]
    guided = guided_indices(n, loop_length(scheduler, n))
    assert any(guided) and not all(guided)
    assert [c.feeds["latents"].shape[0] for c in denoiser] == [2 if g else 1 for g in guided]
    for call in denoiser:
        batch = call.feeds["latents"].shape[0]
        assert call.feeds["cond"].shape[0] == batch == call.feeds["q_scale"].shape[0]
        assert len(set(call.feeds["timestep"].tolist())) == 1
        # every row denoises the same state
        assert all(np.array_equal(row, call.feeds["latents"][0]) for row in call.feeds["latents"])

    # The loop walks the scheduler's own timestep list.
    timesteps = [float(c.feeds["timestep"][0]) for c in denoiser]
    expected = make_scheduler(scheduler, n, 3.0).timesteps
    np.testing.assert_array_equal(np.asarray(timesteps, dtype=np.float32), expected)


def test_double_condition_guidance_batches_three_branches(
    engine: Engine, tmp_path: Path, graph_calls: list[GraphCall]
) -> None:
    double = {"guidance_scale_text": 5.0, "guidance_scale_lyric": 2.0}
    generate(engine, tmp_path / "apg.wav", cfg_type="apg", **double)
    n = FAST["infer_steps"]
    guided = guided_indices(n, n)
    denoiser = of(graph_calls, "denoiser")
    assert [c.feeds["latents"].shape[0] for c in denoiser] == [3 if g else 1 for g in guided]
    conditions = of(graph_calls, "condition_encoder")
    assert len(conditions) == 1 and conditions[0].feeds["text_hidden"].shape[0] == 3
    assert len(of(graph_calls, "text_encoder")) == 1

    # Double condition ignores the cfg type (upstream checks it before cfg_type) and differs from
    # single-condition APG.
    generate(engine, tmp_path / "cfg.wav", cfg_type="cfg", **double)
    generate(engine, tmp_path / "single.wav", cfg_type="apg")
    audio = assert_track(tmp_path / "apg.wav", 5.0)
    assert (tmp_path / "apg.wav").read_bytes() == (tmp_path / "cfg.wav").read_bytes()
    assert not np.array_equal(audio, read(tmp_path / "single.wav"))


@pytest.mark.parametrize("scale", [1.0, 0.0])
def test_guidance_off_runs_only_the_conditional_pass(
    engine: Engine, tmp_path: Path, graph_calls: list[GraphCall], scale: float
) -> None:
    # Double-condition scales are set too: guidance_scale 0 or 1 disables CFG, and with it the
    # double condition (upstream: do_classifier_free_guidance gates both).
    generate(
        engine,
        tmp_path / "t.wav",
        guidance_scale=scale,
        guidance_scale_text=5.0,
        guidance_scale_lyric=2.0,
    )
    assert_track(tmp_path / "t.wav", 5.0)
    denoiser = of(graph_calls, "denoiser")
    assert [c.feeds["latents"].shape[0] for c in denoiser] == [1] * FAST["infer_steps"]
    assert all(np.all(c.feeds["q_scale"] == 1.0) for c in denoiser)
    (text,) = of(graph_calls, "text_encoder")
    (condition,) = of(graph_calls, "condition_encoder")
    assert text.feeds["input_ids"].shape[0] == 1
    assert condition.feeds["text_hidden"].shape[0] == 1


def test_timesteps_follow_the_scheduler(
    engine: Engine, tmp_path: Path, graph_calls: list[GraphCall]
) -> None:
    generate(engine, tmp_path / "t.wav", infer_steps=27, guidance_scale=1.0)
    timesteps = np.array([c.feeds["timestep"][0] for c in of(graph_calls, "denoiser")])
    assert len(timesteps) == 27
    assert timesteps[0] == pytest.approx(1000.0, abs=1e-3)
    assert timesteps[-1] == pytest.approx(
        8.928572, abs=1e-5
    )  # σ shifted twice: __init__ and set_timesteps
    assert np.all(np.diff(timesteps) < 0)


def test_long_prompt_is_truncated_to_256_tokens(
    engine: Engine, tmp_path: Path, graph_calls: list[GraphCall]
) -> None:
    prompt = ("lofi rain piano " * 80)[:1000]
    generate(engine, tmp_path / "t.wav", prompt=prompt, infer_steps=1)
    assert_track(tmp_path / "t.wav", 5.0)
    (text,) = of(graph_calls, "text_encoder")
    ids = text.feeds["input_ids"]
    assert ids.shape[1] == 256 and np.all(ids[:, -1] == 1)  # </s> kept as the last token
    assert np.all(text.feeds["attention_mask"] == 1)


# ---------------------------------------------------------------------------------------------
# Seeds, determinism and initial noise
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "subtype"),
    [("wav", "pcm16"), ("wav", "float"), ("flac", "pcm16"), ("ogg", "pcm16")],
)
def test_same_seed_gives_identical_bytes(
    engine: Engine, tmp_path: Path, fmt: str, subtype: str
) -> None:
    first, second = tmp_path / f"a.{fmt}", tmp_path / f"b.{fmt}"
    for out in (first, second):
        generate(engine, out, seed=11, format=fmt, wav_subtype=subtype, infer_steps=3)
    assert_track(first, 5.0)
    assert first.read_bytes() == second.read_bytes()


def test_different_seeds_give_different_audio(engine: Engine, tmp_path: Path) -> None:
    generate(engine, tmp_path / "a.wav", seed=1, infer_steps=3)
    generate(engine, tmp_path / "b.wav", seed=2, infer_steps=3)
    a, b = read(tmp_path / "a.wav"), read(tmp_path / "b.wav")
    assert np.mean(a != b) > 0.5


def seeded_noise(seed: int, duration_sec: float = 5.0) -> np.ndarray:
    """The x_T the engine draws for ``seed``: one standard normal [1, 8, 16, T] from numpy's PCG64
    (upstream draws it with torch; parity tests inject the noise)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    return rng.standard_normal((1, 8, 16, latent_frames(duration_sec)), dtype=np.float32)


def test_initial_noise_reproduces_a_seeded_run(engine: Engine, tmp_path: Path) -> None:
    # PingPong also draws its per-step noise from the seed's generator after x_T: with the same
    # seed and the injected x_T the whole run is reproduced.
    generate(engine, tmp_path / "seeded.wav", seed=21, scheduler="pingpong")
    engine.generate(
        make_params(seed=21, scheduler="pingpong"),
        tmp_path / "injected.wav",
        initial_noise=seeded_noise(21),
    )
    assert (tmp_path / "seeded.wav").read_bytes() == (tmp_path / "injected.wav").read_bytes()


def test_initial_noise_replaces_the_seeded_draw(engine: Engine, tmp_path: Path) -> None:
    # Euler uses no randomness after x_T: seed 5's noise under seed 6 gives seed 5's audio.
    generate(engine, tmp_path / "seeded.wav", seed=5)
    result = engine.generate(
        make_params(seed=6), tmp_path / "injected.wav", initial_noise=seeded_noise(5).astype(float)
    )
    assert result.seed == 6
    assert (tmp_path / "seeded.wav").read_bytes() == (tmp_path / "injected.wav").read_bytes()


@pytest.mark.parametrize(
    ("noise", "fragment"),
    [
        (np.zeros((1, 8, 16, latent_frames(5.0) + 1), np.float32), "shape [1, 8, 16, 53]"),
        (np.zeros((8, 16, latent_frames(5.0)), np.float32), "shape [1, 8, 16, 53]"),
        (np.zeros((1, 8, 16, latent_frames(5.0)), np.int64), "float array"),
        (np.full((1, 8, 16, latent_frames(5.0)), np.nan, np.float32), "NaN"),
    ],
    ids=["frames", "rank", "dtype", "nan"],
)
def test_bad_initial_noise_is_rejected(
    engine: Engine, tmp_path: Path, noise: np.ndarray, fragment: str
) -> None:
    with pytest.raises(LofiError) as info:
        engine.generate(make_params(), tmp_path / "out" / "t.wav", initial_noise=noise)
    assert info.value.code == errors.INVALID_PARAMETER
    assert fragment in info.value.message
    assert files_under(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# Windowed decode
# ---------------------------------------------------------------------------------------------


def error_db(test: np.ndarray, reference: np.ndarray) -> float:
    error = np.sum((test.astype(np.float64) - reference) ** 2)
    return float(10 * np.log10(max(error, 1e-30) / np.sum(reference.astype(np.float64) ** 2)))


def decoded(tiny_models: Path, out: Path, settings: DecodeSettings, duration: float) -> np.ndarray:
    engine = Engine(tiny_models, provider="cpu", decode=settings)
    params = make_params(duration_sec=duration, seed=3, infer_steps=2, wav_subtype="float")
    engine.generate(params, out)
    return read(out)


@pytest.mark.parametrize(
    ("duration", "settings"),
    [
        # the shipped defaults, on a track long enough to need two windows of each kind
        (30.0, DecodeSettings()),
        # many small windows with the default overlaps
        (10.0, dataclasses.replace(DecodeSettings(), dcae_window=16, vocoder_window=64)),
    ],
    ids=["defaults-30s", "small-windows-10s"],
)
def test_windowed_decode_matches_whole_track_decode(
    tiny_models: Path, tmp_path: Path, duration: float, settings: DecodeSettings
) -> None:
    frames = latent_frames(duration)
    assert len(plan_windows(frames, settings.dcae_window, settings.dcae_overlap)) > 1
    assert len(plan_windows(8 * frames, settings.vocoder_window, settings.vocoder_overlap)) > 1
    whole = decoded(tiny_models, tmp_path / "whole.wav", DecodeSettings(0, 0, 0, 0), duration)
    windowed = decoded(tiny_models, tmp_path / "windowed.wav", settings, duration)
    assert windowed.shape == whole.shape == (expected_samples(duration), 2)
    assert error_db(windowed, whole) <= -40.0


# ---------------------------------------------------------------------------------------------
# Progress and cancellation
# ---------------------------------------------------------------------------------------------


def test_progress_reports_phases_in_order_and_ends_at_100(engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "t.wav"
    events: list[Progress] = []
    files_at_event: list[bool] = []

    def on_progress(progress: Progress) -> None:
        events.append(progress)
        files_at_event.append(out.exists())

    engine.generate(make_params(scheduler="heun"), out, progress=on_progress)

    phases = [e.phase for e in events]
    runs = [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p]
    assert runs == ["encode", "diffusion", "decode"]
    assert phases.count("diffusion") == loop_length("heun", FAST["infer_steps"])
    percents = [e.percent for e in events]
    assert all(b > a for a, b in itertools.pairwise(percents))
    assert percents[-1] == 100.0 and max(percents[:-1]) < 100.0
    assert [e.step for e in events] == list(range(1, len(events) + 1))
    assert {e.total for e in events} == {len(events)}
    assert all(e.eta_sec is not None and e.eta_sec >= 0 for e in events)
    assert events[-1].eta_sec == 0
    # 100 % is announced only once the file is in place.
    assert files_at_event[-1] and not any(files_at_event[:-1])


@pytest.mark.parametrize("phase", ["encode", "diffusion", "decode"])
def test_cancel_from_the_progress_callback(
    engine: Engine, tmp_path: Path, graph_calls: list[GraphCall], phase: str
) -> None:
    out = tmp_path / "out" / "t.wav"
    cancel = threading.Event()
    seen: list[str] = []

    def on_progress(progress: Progress) -> None:
        seen.append(progress.phase)
        if progress.phase == phase:
            cancel.set()

    with pytest.raises(CancelledError) as info:
        engine.generate(make_params(), out, progress=on_progress, cancel=cancel)
    assert info.value.code == errors.GENERATION_CANCELLED
    assert seen.count(phase) == 1  # stopped at the next check, within the same phase
    assert files_under(tmp_path) == []  # no audio, no sidecar, no temporary file
    if phase == "diffusion":
        assert len(of(graph_calls, "denoiser")) < FAST["infer_steps"]
        assert of(graph_calls, "dcae_decoder") == []

    # The engine stays usable after a cancellation.
    generate(engine, out)
    assert_track(out, 5.0)


def test_a_cancel_set_before_the_start_runs_nothing(
    engine: Engine, tmp_path: Path, graph_calls: list[GraphCall]
) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CancelledError):
        engine.generate(make_params(), tmp_path / "t.wav", cancel=cancel)
    assert graph_calls == [] and files_under(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# ERG
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def erg_baseline(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    out = tmp_path_factory.mktemp("erg") / "all-on.wav"
    generate(engine, out)
    return read(out)


def test_erg_rows_are_routed_to_the_unconditional_branch(
    engine: Engine, tmp_path: Path, graph_calls: list[GraphCall], erg_baseline: np.ndarray
) -> None:
    constants = engine.manifest.raw["constants"]  # the manifest as written, not the parsed record
    erg = constants["erg"]
    generate(engine, tmp_path / "t.wav")
    np.testing.assert_array_equal(read(tmp_path / "t.wav"), erg_baseline)

    # UMT5: the prompt and its "weak" twin in one call, q × 0.01 in the tag layers of row 1 only.
    (text,) = of(graph_calls, "text_encoder")
    rows = text.feeds["q_scale"]
    n_text = constants["text_encoder_layers"]
    np.testing.assert_array_equal(rows[0], np.ones(n_text, np.float32))
    np.testing.assert_array_equal(rows[1], erg_row(n_text, erg["tag_layers"], erg["scale"]))
    np.testing.assert_array_equal(text.feeds["input_ids"][0], text.feeds["input_ids"][1])
    hidden = text.outputs[0]
    assert not np.allclose(hidden[0], hidden[1])

    # Condition encoder: [cond, null]; the null row gets the weak prompt and lyric ERG.
    (condition,) = of(graph_calls, "condition_encoder")
    np.testing.assert_array_equal(condition.feeds["text_hidden"], hidden)
    lyric_rows = condition.feeds["lyric_q_scale"]
    n_blocks = constants["conformer_blocks"]
    np.testing.assert_array_equal(lyric_rows[0], np.ones(n_blocks, np.float32))
    np.testing.assert_array_equal(
        lyric_rows[1], erg_row(n_blocks, erg["lyric_layers"], erg["scale"])
    )
    np.testing.assert_array_equal(condition.feeds["speaker"], 0.0)

    # Denoiser: diffusion ERG on the unconditional row of guided calls only; cond rows as encoded.
    n_layers = constants["denoiser_layers"]
    diffusion = erg_row(n_layers, erg["diffusion_layers"], erg["scale"])
    cond, null = condition.outputs[0][0], condition.outputs[0][1]
    for call in of(graph_calls, "denoiser"):
        q = call.feeds["q_scale"]
        np.testing.assert_array_equal(q[0], np.ones(n_layers, np.float32))
        np.testing.assert_array_equal(call.feeds["cond"][0], cond)
        np.testing.assert_array_equal(call.feeds["cond_mask"][0], condition.outputs[1][0])
        if q.shape[0] == 2:
            np.testing.assert_array_equal(q[1], diffusion)
            np.testing.assert_array_equal(call.feeds["cond"][1], null)
            np.testing.assert_array_equal(call.feeds["cond_mask"][1], condition.outputs[1][0])


@pytest.mark.parametrize("flag", ERG_FLAGS)
def test_each_erg_switch_changes_the_audio_and_the_routing(
    engine: Engine,
    tmp_path: Path,
    graph_calls: list[GraphCall],
    erg_baseline: np.ndarray,
    flag: str,
) -> None:
    generate(engine, tmp_path / "t.wav", **{flag: False})
    audio = assert_track(tmp_path / "t.wav", 5.0)
    assert not np.array_equal(audio, erg_baseline)

    (text,) = of(graph_calls, "text_encoder")
    (condition,) = of(graph_calls, "condition_encoder")
    guided = [c for c in of(graph_calls, "denoiser") if c.feeds["q_scale"].shape[0] == 2]
    assert guided
    null_text = condition.feeds["text_hidden"][1]
    null_ids = condition.feeds["lyric_ids"][1]
    lyric_erg = condition.feeds["lyric_q_scale"][1]
    diffusion_erg = np.stack([c.feeds["q_scale"][1] for c in guided])
    if flag == "use_erg_tag":
        # no weak prompt: the lyric-ERG null branch gets a zero text embedding (upstream
        # text2music_diffusion_process uses the ERG-tag embedding only with use_erg_lyric)
        assert text.feeds["input_ids"].shape[0] == 1
        assert np.all(null_text == 0) and np.any(lyric_erg != 1) and np.any(diffusion_erg != 1)
    elif flag == "use_erg_lyric":
        # the plain null branch: zero text, zero lyric ids, the lyric mask kept (as upstream)
        assert text.feeds["input_ids"].shape[0] == 1
        assert np.all(null_text == 0) and np.all(null_ids == 0) and np.all(lyric_erg == 1)
        np.testing.assert_array_equal(
            condition.feeds["lyric_mask"][1], condition.feeds["lyric_mask"][0]
        )
        assert np.any(diffusion_erg != 1)
    else:
        assert text.feeds["input_ids"].shape[0] == 2 and np.any(lyric_erg != 1)
        assert not np.all(null_text == 0)
        assert np.all(diffusion_erg == 1)


def test_all_erg_off_is_plain_guidance(
    engine: Engine, tmp_path: Path, graph_calls: list[GraphCall]
) -> None:
    generate(engine, tmp_path / "t.wav", **dict.fromkeys(ERG_FLAGS, False))
    for call in graph_calls:
        for name in ("q_scale", "lyric_q_scale"):
            if name in call.feeds:
                assert np.all(call.feeds[name] == 1.0), (call.graph, name)
    (condition,) = of(graph_calls, "condition_encoder")
    assert np.all(condition.feeds["text_hidden"][1] == 0)
    assert np.all(condition.feeds["lyric_ids"][1] == 0)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------

BAD_PARAMS = [
    ({"duration_sec": 4.9}, errors.INVALID_DURATION),
    ({"duration_sec": 240.5}, errors.INVALID_DURATION),
    ({"duration_sec": math.nan}, errors.INVALID_DURATION),
    ({"infer_steps": 0}, errors.INVALID_INFERENCE_STEPS),
    ({"infer_steps": -3}, errors.INVALID_INFERENCE_STEPS),
    ({"scheduler": "ddim"}, errors.INVALID_SCHEDULER),
    ({"cfg_type": "pag"}, errors.INVALID_CFG_TYPE),
    ({"guidance_scale": math.nan}, errors.INVALID_GUIDANCE_SCALE),
    ({"guidance_scale": -1.0}, errors.INVALID_GUIDANCE_SCALE),
    ({"guidance_scale_text": math.inf}, errors.INVALID_GUIDANCE_SCALE),
    ({"guidance_scale_lyric": -2.0}, errors.INVALID_GUIDANCE_SCALE),
    ({"prompt": ""}, errors.INVALID_PROMPT),
    ({"prompt": " \n\t"}, errors.INVALID_PROMPT),
    ({"prompt": "x" * 1001}, errors.INVALID_PROMPT),
    ({"format": "mp3"}, errors.INVALID_FORMAT),
]


@pytest.mark.parametrize(("overrides", "code"), BAD_PARAMS)
def test_bad_parameters_give_a_specific_error_and_no_file(
    engine: Engine,
    tmp_path: Path,
    graph_calls: list[GraphCall],
    overrides: dict[str, Any],
    code: int,
) -> None:
    with pytest.raises(LofiError) as info:
        generate(engine, tmp_path / "out" / "t.wav", **overrides)
    assert info.value.code == code
    assert next(iter(overrides)) in info.value.message  # the message names the parameter
    assert graph_calls == []
    assert files_under(tmp_path) == []


def test_missing_models_directory(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "nowhere", provider="cpu")
    with pytest.raises(LofiError) as info:
        generate(engine, tmp_path / "t.wav")
    assert info.value.code == errors.MODEL_NOT_FOUND
    assert str(tmp_path / "nowhere") in info.value.message
    assert "setup" in info.value.remedy
    assert files_under(tmp_path) == []
    assert engine.status()["status"] == "not_installed"


def damaged_copy(tiny_models: Path, target: Path, damage: Callable[[Path], None]) -> Path:
    shutil.copytree(tiny_models, target)
    damage(target / "denoiser.onnx")
    return target


@pytest.mark.parametrize(
    ("damage", "fragments"),
    [
        (corrupt_keep_size, ["denoiser.onnx", "cannot load"]),
        (truncate, ["denoiser.onnx", "bytes", "manifest"]),
    ],
    ids=["corrupt", "truncated"],
)
def test_damaged_model_file_gives_model_load_failed(
    tiny_models: Path,
    tmp_path: Path,
    damage: Callable[[Path], None],
    fragments: list[str],
) -> None:
    models = damaged_copy(tiny_models, tmp_path / "models", damage)
    out_dir = tmp_path / "out"
    engine = Engine(models, provider="cpu")
    with pytest.raises(LofiError) as info:
        generate(engine, out_dir / "t.wav", infer_steps=1)
    assert info.value.code == errors.MODEL_LOAD_FAILED
    for fragment in fragments:
        assert fragment in info.value.message
    assert "setup" in info.value.remedy
    assert files_under(out_dir) == []


# ---------------------------------------------------------------------------------------------
# The status follows the disk (issue 10, item 24)
# ---------------------------------------------------------------------------------------------


def _edit_manifest(models: Path, **fields: Any) -> None:
    path = models / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest.update(fields)
    path.write_text(json.dumps(manifest), encoding="utf-8")


@pytest.mark.parametrize(
    ("damage", "state", "code"),
    [
        (lambda m: shutil.rmtree(m), "not_installed", errors.MODEL_NOT_FOUND),
        (lambda m: (m / "manifest.json").unlink(), "not_installed", errors.MODEL_NOT_FOUND),
        (lambda m: truncate(m / "vocoder.onnx"), "error", errors.MODEL_LOAD_FAILED),
        (lambda m: (m / "tokenizer.json").unlink(), "not_installed", errors.MODEL_NOT_FOUND),
        (lambda m: _edit_manifest(m, defaults=[]), "error", errors.MODEL_LOAD_FAILED),
    ],
    ids=["folder-deleted", "manifest-deleted", "graph-truncated", "file-deleted", "wrong-types"],
)
def test_status_follows_the_model_files_on_disk(
    tiny_models: Path,
    tmp_path: Path,
    damage: Callable[[Path], None],
    state: str,
    code: int,
) -> None:
    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    engine = Engine(models, provider="cpu")
    assert engine.status()["status"] == "ready"
    damage(models)
    status = engine.status()
    assert status["status"] == state, status
    assert "setup" in status["remedy"]
    with pytest.raises(LofiError) as info:
        generate(engine, tmp_path / "t.wav", infer_steps=1)
    assert info.value.code == code
    assert not (tmp_path / "t.wav").exists()
    # Repaired on disk: ready again without a restart.
    shutil.rmtree(models, ignore_errors=True)
    shutil.copytree(tiny_models, models)
    assert engine.status()["status"] == "ready"
