"""The ACE-Step 1.5 turbo engine: caption and lyrics → conditions → 8 Euler steps → VAE → file.

:class:`TurboEngine` has the public surface of :class:`lofi_daemon.pipeline.engine.Engine` and
returns the same :class:`~lofi_daemon.pipeline.engine.GenerationResult`. It follows upstream
DiT-only text2music (``acestep/core/generation/handler``: ``_prepare_text_conditioning_inputs``,
``infer_text_embeddings``/``infer_lyric_embeddings``; ``modeling_acestep_v15_turbo.py:
generate_audio``; ``tiled_decode``; ``normalize_audio``), with numpy and ONNX Runtime only.

Sessions: the text and condition encoders are created for one generation and dropped, the DiT is
kept for all steps (and between generations as the residency policy decides,
:mod:`lofi_daemon.pipeline.residency`), the VAE decoder stays resident.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model import turbo_layout as tl
from lofi_daemon.pipeline import audio
from lofi_daemon.pipeline.engine import GenerationResult
from lofi_daemon.pipeline.installed import ModelDirectory
from lofi_daemon.pipeline.memory import MemoryProbe
from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.pipeline.progress import ProgressCallback, ProgressTracker, StageTimer
from lofi_daemon.pipeline.residency import Residency, ResidencyConfig, Scheduler, thread_timer
from lofi_daemon.pipeline.sessions import GraphRunner, SessionPool
from lofi_daemon.turbo import decode, geometry, prompt
from lofi_daemon.turbo.conditions import encode_conditions
from lofi_daemon.turbo.manifest import REPAIR_REMEDY, TurboManifest, load_turbo_manifest
from lofi_daemon.turbo.schedule import dit_velocity, euler, timesteps
from lofi_daemon.turbo.tokens import TurboTokenizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Arrays:
    """The exported arrays: the Qwen3 embedding table (memory-mapped), silence and its timbre."""

    embed_tokens: np.ndarray  # [V, Dt]
    silence_latent: np.ndarray  # [F, C]
    silence_timbre: np.ndarray  # [1, 1, H]


def load_arrays(manifest: TurboManifest) -> Arrays:
    """Open the three arrays and check their shapes against the manifest's constants."""
    c = manifest.constants
    expected = {
        tl.ARRAY_EMBED_TOKENS: (c.vocab_size, c.text_hidden_size),
        tl.ARRAY_SILENCE_LATENT: (c.silence_frames, c.latent_channels),
        tl.ARRAY_SILENCE_TIMBRE: (1, 1, c.hidden_size),
    }
    loaded: dict[str, np.ndarray] = {}
    for name, shape in expected.items():
        path = manifest.array_path(name)
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise LofiError(
                errors.MODEL_LOAD_FAILED,
                f"cannot read {path}: {errors.first_line(exc, 300)}",
                remedy=REPAIR_REMEDY,
            ) from exc
        if array.shape != shape or array.dtype != np.float32:
            raise LofiError(
                errors.MODEL_LOAD_FAILED,
                f"{path} holds {array.dtype} {list(array.shape)}, expected float32 {list(shape)}",
                remedy=REPAIR_REMEDY,
            )
        loaded[name] = array
    return Arrays(
        embed_tokens=loaded[tl.ARRAY_EMBED_TOKENS],
        silence_latent=np.array(loaded[tl.ARRAY_SILENCE_LATENT]),
        silence_timbre=np.array(loaded[tl.ARRAY_SILENCE_TIMBRE]),
    )


class TurboEngine:
    """Owns the ONNX sessions of one 1.5 turbo model directory and runs generations (one at a
    time)."""

    def __init__(
        self,
        models_dir: Path,
        *,
        provider: str = "auto",
        threads: int | None = None,
        keep_loaded: bool | str | ResidencyConfig = False,
        memory_probe: MemoryProbe | None = None,
        clock: Callable[[], float] = time.monotonic,
        schedule: Scheduler = thread_timer,
    ) -> None:
        self.models_dir = Path(models_dir)
        self.provider = provider
        self.threads = threads
        self.keep_loaded = ResidencyConfig.of(keep_loaded)
        self._sessions = SessionPool(provider, threads)
        self._installed = ModelDirectory(self.models_dir, load_turbo_manifest)
        self._stale = False  # files changed: drop the tokenizer, arrays and sessions before a run
        self._tokenizer: TurboTokenizer | None = None
        self._arrays: Arrays | None = None
        self._lock = threading.Lock()  # one generation at a time
        self._residency = Residency(
            self._sessions,
            self.keep_loaded,
            tl.GRAPH_DIT,
            self.drop_idle,
            probe=memory_probe,
            clock=clock,
            schedule=schedule,
        )

    # -- models ---------------------------------------------------------------------------------
    @property
    def manifest(self) -> TurboManifest:
        return self._installed.manifest

    def _check_disk(self) -> None:
        """Forget the cached manifest when the model files changed on disk (stats only)."""
        if self._installed.changed():
            self._stale = True

    @property
    def model_version(self) -> str:
        return self.manifest.model_version

    def providers_in_use(self) -> list[str]:
        """Providers that actually ran (safe to call from another thread during a generation)."""
        return self._sessions.providers_in_use()

    def session_load_times(self) -> dict[str, float]:
        """Graph name → wall seconds of its most recent session creation (any thread)."""
        return self._sessions.load_times()

    def status(self) -> dict[str, Any]:
        """The installation's state as on disk now (the model files are re-checked each time)."""
        return self._installed.status(self.providers_in_use())

    def residency_status(self) -> dict[str, Any]:
        """What is resident and why (``status``; any thread; see docs/residency.md)."""
        return self._residency.status()

    def drop_idle(self) -> None:
        """The idle timer's callback: drop the kept graph when idle long enough; does nothing
        while a generation runs (it re-arms the timer when it ends)."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._residency.drop_if_idle()
        finally:
            self._lock.release()

    def close(self) -> None:
        self._residency.clear()

    def reload(self) -> None:
        """Forget the manifest, tokenizer, arrays and resident sessions (after a new install).

        Waits for a running generation to finish; the next use reads the model directory again.
        """
        with self._lock:
            self._forget()
            self._stale = False

    def _forget(self) -> None:
        self._installed.forget()
        self._tokenizer = None
        self._arrays = None
        self._residency.clear()

    def _runner(self, graph: str, *, resident: bool = False) -> GraphRunner:
        return self._residency.runner(graph, self.manifest, resident=resident)

    # -- the pipeline ------------------------------------------------------------------------------
    def generate(
        self,
        params: GenerationParams,
        out_path: Path,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        initial_noise: np.ndarray | None = None,
    ) -> GenerationResult:
        """Generate one track into ``out_path`` (audio only; see ``GenerationResult.sidecar``).

        ``initial_noise`` ``[1, T, C]`` float32 replaces the seed's draw (parity tests). Blocking;
        one generation at a time. On any error no file is written.
        """
        params.validate()
        if params.backend != tl.BACKEND:
            raise LofiError(
                errors.INVALID_PARAMETER,
                f"backend {params.backend!r} given to the {tl.BACKEND} engine",
            )
        if params.task != "text2music":
            raise LofiError(
                errors.INVALID_PARAMETER,
                f"task {params.task} is not available on the backend {tl.BACKEND} "
                "(only text2music)",
            )
        if Path(out_path).suffix.lower() == ".json":
            raise LofiError(
                errors.INVALID_FORMAT,
                f"{out_path}: the audio file cannot be a .json file "
                "(the sidecar is written next to it)",
            )
        with self._lock:
            self._check_disk()
            if self._stale:
                self._stale = False
                self._forget()
            try:
                return self._generate(params, Path(out_path), progress, cancel, initial_noise)
            finally:
                self._residency.after_generation()

    def _generate(
        self,
        params: GenerationParams,
        out_path: Path,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
        initial_noise: np.ndarray | None,
    ) -> GenerationResult:
        manifest = self.manifest
        c = manifest.constants
        if params.seed is None:
            params = params.with_seed(secrets.randbits(32))
        assert params.seed is not None

        # Everything checkable is checked before any model runs: noise, schedule, tokens.
        frames = c.latent_frames(params.duration_sec)
        noise = geometry.draw_noise(params.seed, frames, c.latent_channels, initial_noise)
        ts = timesteps(params.shift)
        if self._tokenizer is None:
            self._tokenizer = TurboTokenizer(
                manifest.path(manifest.tokenizer_file), c.text_max_tokens, c.lyric_max_tokens
            )
        metas = prompt.metas_text(
            params.duration_sec, params.bpm, params.time_signature, params.keyscale
        )
        caption_ids = self._tokenizer.caption_ids(prompt.caption_text(params.prompt, metas))
        lyric_ids = self._tokenizer.lyric_ids(
            prompt.lyric_text(params.lyrics, params.vocal_language)
        )
        if self._arrays is None:
            self._arrays = load_arrays(manifest)
        arrays = self._arrays
        windows = decode.plan_tiles(frames)
        tracker = ProgressTracker(2 + len(ts) + len(windows) + 1, progress, cancel)
        timer = StageTimer()
        started = time.monotonic()

        # caption → Qwen3 → text states; lyrics → embeddings → lyric encoder (loaded, run, dropped)
        tracker.check_cancel()
        t0 = time.monotonic()

        def encoded() -> None:
            tracker.advance("encode")
            tracker.check_cancel()

        encoder_states = encode_conditions(
            lambda: self._runner(tl.GRAPH_TEXT_ENCODER),
            lambda: self._runner(tl.GRAPH_CONDITION_ENCODER),
            caption_ids,
            lyric_ids,
            arrays.embed_tokens,
            arrays.silence_timbre,
            encoded,
        )
        timer.add("encode", t0)

        # noise → latents: 8 Euler steps (DiT loaded for all of them, then kept or dropped)
        t0 = time.monotonic()
        dit = self._residency.kept_runner(manifest)
        velocity = dit_velocity(
            dit.first, encoder_states, geometry.context_latents(arrays.silence_latent, frames)
        )
        latents = euler(
            noise,
            ts,
            velocity,
            before_step=lambda _i: tracker.check_cancel(),
            after_step=lambda _i: tracker.advance("diffusion"),
        )
        del dit, velocity
        timer.add("diffusion", t0)
        if not np.isfinite(latents).all():
            raise LofiError(errors.MODEL_INFERENCE_FAILED, "the DiT produced non-finite latents")

        # latents → waveform (VAE decoder resident), windowed as upstream's CPU tiled decode
        t0 = time.monotonic()
        wave = decode.decode_tiled(
            self._runner(tl.GRAPH_VAE_DECODER, resident=True).first,
            latents,
            windows,
            c.samples_per_latent_frame,
            check_cancel=tracker.check_cancel,
            on_window=lambda: tracker.advance("decode"),
        )
        timer.add("decode", t0)
        if not np.isfinite(wave).all():
            raise LofiError(errors.MODEL_INFERENCE_FAILED, "the VAE produced non-finite audio")

        # waveform → file
        tracker.check_cancel()
        wave = decode.finish(wave, round(params.duration_sec * c.sample_rate))
        result = self._write(out_path, wave, c.sample_rate, params, latents, timer, started)
        tracker.advance("decode")
        return result

    def _write(
        self,
        out_path: Path,
        wave: np.ndarray,
        sample_rate: int,
        params: GenerationParams,
        latents: np.ndarray,
        timer: StageTimer,
        started: float,
    ) -> GenerationResult:
        t0 = time.monotonic()
        try:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            audio.write_audio(out_path, wave, sample_rate, params.format, params.wav_subtype)
        except OSError as exc:
            raise LofiError(
                errors.OUTPUT_WRITE_FAILED, f"cannot write {out_path}: {exc.strerror or exc}"
            ) from exc
        timer.add("write", t0)
        timer.timings["total"] = time.monotonic() - started
        assert params.seed is not None
        return GenerationResult(
            path=out_path,
            duration_sec=wave.shape[1] / sample_rate,
            sample_rate=sample_rate,
            channels=wave.shape[0],
            seed=params.seed,
            params=params,
            model_version=self.model_version,
            timings={k: round(v, 4) for k, v in timer.timings.items()},
            providers=self.providers_in_use(),
            latents=np.ascontiguousarray(latents.transpose(0, 2, 1)),  # [1, C, T], time last
        )
