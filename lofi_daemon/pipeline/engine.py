"""The engine: (source audio → latents) → prompt → conditions → denoising loop → latents →
waveform → file.

:class:`Engine` orchestrates the stages of ``lofi_daemon.pipeline`` over the sessions of one model
directory (see :mod:`lofi_daemon.pipeline.sessions` for which stay loaded). It follows upstream
``acestep/pipeline_ace_step.py: ACEStepPipeline.__call__`` for every task: text2music, retake,
repaint, extend, audio2audio and edit (:mod:`lofi_daemon.pipeline.sampling` picks the loop).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from lofi_daemon import __version__, errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model.manifest import Manifest, load_manifest
from lofi_daemon.pipeline import audio
from lofi_daemon.pipeline.decode import DecodeSettings, decode_latents, plan_decode
from lofi_daemon.pipeline.encode import (
    ENCODER_GRAPH,
    encode_audio,
    latent_frames_of,
    load_mel_frontend,
)
from lofi_daemon.pipeline.installed import ModelDirectory
from lofi_daemon.pipeline.memory import MemoryProbe
from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.pipeline.progress import ProgressCallback, ProgressTracker, StageTimer
from lofi_daemon.pipeline.residency import Residency, ResidencyConfig, Scheduler, thread_timer
from lofi_daemon.pipeline.sampling import diffuse, encode_conditions, encode_units, task_scheduler
from lofi_daemon.pipeline.sessions import GraphRunner, SessionPool
from lofi_daemon.pipeline.source import SourceAudio, load_audio
from lofi_daemon.pipeline.task_setup import (
    check_injected,
    check_source_given,
    checked_source_latents,
    draw_noises,
    plan_layout,
    resolve_seeds,
)
from lofi_daemon.pipeline.tokenizer import PromptTokenizer


@dataclass(frozen=True)
class GenerationResult:
    """One finished track. The engine writes only the audio file; whoever keeps the track writes
    :meth:`sidecar` once (the CLI beside the file, the daemon's cache as its metadata)."""

    path: Path
    duration_sec: float
    sample_rate: int
    channels: int
    seed: int
    params: GenerationParams
    model_version: str
    timings: dict[str, float]
    providers: list[str]
    latents: np.ndarray
    """The final latents ``[1, 8, 16, T]`` (float32); not part of :meth:`sidecar`."""

    def sidecar(self) -> dict[str, Any]:
        """What reproduces and describes the track: parameters, seed, model, timings."""
        return {
            "path": self.path.name,
            "params": self.params.to_dict(),
            "seed": self.seed,
            "model_version": self.model_version,
            "duration_sec": self.duration_sec,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "timings": self.timings,
            "providers": self.providers,
            "lofi_version": __version__,
        }


class Engine:
    """Owns the ONNX sessions of one model directory and runs generations (one at a time)."""

    def __init__(
        self,
        models_dir: Path,
        *,
        provider: str = "auto",
        threads: int | None = None,
        keep_loaded: bool | str | ResidencyConfig = False,
        decode: DecodeSettings | None = None,
        memory_probe: MemoryProbe | None = None,
        clock: Callable[[], float] = time.monotonic,
        schedule: Scheduler = thread_timer,
    ) -> None:
        self.models_dir = Path(models_dir)
        self.provider = provider
        self.threads = threads
        self.keep_loaded = ResidencyConfig.of(keep_loaded)
        self.decode_settings = decode or DecodeSettings()
        self._sessions = SessionPool(provider, threads)
        self._installed = ModelDirectory(self.models_dir, load_manifest)
        self._stale = False  # the files changed: drop the tokenizer and sessions before a run
        self._tokenizer: PromptTokenizer | None = None
        self._lock = threading.Lock()  # one generation at a time
        self._residency = Residency(
            self._sessions,
            self.keep_loaded,
            "denoiser",
            self.drop_idle,
            probe=memory_probe,
            clock=clock,
            schedule=schedule,
        )

    # -- models ---------------------------------------------------------------------------------
    @property
    def manifest(self) -> Manifest:
        return self._installed.manifest

    def _check_disk(self) -> None:
        """Forget the cached manifest when the model files changed on disk (cheap: stats only).

        Sessions and the tokenizer are dropped before the next generation (not now: one may be
        running on them).
        """
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
        """Forget the cached manifest, tokenizer and resident sessions (after a new install).

        Waits for a running generation to finish; the next use reads the model directory again.
        """
        with self._lock:
            self._installed.forget()
            self._stale = False
            self._tokenizer = None
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
        retake_noise: np.ndarray | None = None,
        source: SourceAudio | None = None,
    ) -> GenerationResult:
        """Generate one track into ``out_path`` (audio only; see :meth:`GenerationResult.sidecar`).

        ``source`` is the source (repaint, extend, edit) or reference (audio2audio) audio, given
        exactly for :data:`~lofi_daemon.pipeline.params.SOURCE_TASKS`. ``initial_noise`` and
        ``retake_noise`` replace the main-seed and retake-seed draws (parity tests); see
        :mod:`lofi_daemon.pipeline.task_setup` for their shapes. Blocking; one generation at a
        time.
        """
        params.validate()
        if Path(out_path).suffix.lower() == ".json":
            raise LofiError(
                errors.INVALID_FORMAT,
                f"{out_path}: the audio file cannot be a .json file "
                "(the sidecar is written next to it)",
            )
        check_source_given(params, source)
        with self._lock:
            self._check_disk()
            if self._stale:
                self._stale = False
                self._tokenizer = None
                self._residency.clear()
            try:
                return self._generate(
                    params, Path(out_path), progress, cancel, initial_noise, retake_noise, source
                )
            finally:
                self._residency.after_generation()

    def _generate(
        self,
        params: GenerationParams,
        out_path: Path,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
        initial_noise: np.ndarray | None,
        retake_noise: np.ndarray | None,
        source: SourceAudio | None,
    ) -> GenerationResult:
        manifest = self.manifest
        constants = manifest.constants
        params = resolve_seeds(params)

        # Everything checkable is checked before any model runs: the source file's header and
        # samples, the region or extension against its length, the injected noises.
        src, wave, frontend, src_frames = None, None, None, None
        if source is not None and source.latents is not None:
            src = checked_source_latents(source.latents, source.name, constants)
            src_frames = src.shape[-1]
        elif source is not None and source.path is not None:
            frontend = load_mel_frontend(manifest)
            wave = load_audio(source.path)
            src_frames = latent_frames_of(wave.shape[1], constants)
        layout = plan_layout(params, constants, src_frames)
        initial_noise, retake_noise = check_injected(
            params, constants, layout, initial_noise, retake_noise
        )
        if source is not None:
            params = replace(
                params,
                duration_sec=layout.out_frames
                * constants.samples_per_latent_frame
                / constants.sample_rate_model,
            )
        scheduler = task_scheduler(params, constants)
        decode_plan = plan_decode(layout.out_frames, constants, self.decode_settings)
        tracker = ProgressTracker(
            (wave is not None)
            + encode_units(params)
            + len(scheduler.timesteps)
            + decode_plan.units
            + 1,
            progress,
            cancel,
        )
        timer = StageTimer()
        started = time.monotonic()

        # source audio → latents (DCAE encoder loaded, run, dropped)
        tracker.check_cancel()
        t0 = time.monotonic()
        if wave is not None:
            assert frontend is not None
            src = encode_audio(self._runner(ENCODER_GRAPH).first, wave, frontend, constants)
            del wave
            tracker.advance("encode")
            tracker.check_cancel()

        # prompt(s) → tokens → text embeddings → condition sequences (encoders loaded, run, dropped)
        if self._tokenizer is None:
            self._tokenizer = PromptTokenizer(
                manifest.path(manifest.tokenizer_file), constants.text_max_tokens
            )

        def encoded() -> None:
            tracker.advance("encode")
            tracker.check_cancel()

        conditions = encode_conditions(self._runner, self._tokenizer, params, constants, encoded)
        timer.add("encode", t0)

        # noise → latents (denoiser loaded for all steps, then kept or dropped: residency policy)
        t0 = time.monotonic()
        noises = draw_noises(params, constants, layout, initial_noise, retake_noise)
        denoiser = self._residency.kept_runner(manifest)

        def on_step(i: int) -> None:
            tracker.check_cancel()
            if i:
                tracker.advance("diffusion")

        latents = diffuse(
            denoiser.first,
            scheduler,
            conditions,
            params,
            constants,
            layout,
            noises,
            src,
            on_step,
        )
        del denoiser
        tracker.advance("diffusion")
        timer.add("diffusion", t0)
        if not np.isfinite(latents).all():
            raise LofiError(
                errors.MODEL_INFERENCE_FAILED, "the denoiser produced non-finite latents"
            )

        # latents → mel → waveform (DCAE decoder and vocoder stay resident)
        t0 = time.monotonic()
        wave = decode_latents(
            self._runner("dcae_decoder", resident=True).first,
            self._runner("vocoder", resident=True).first,
            latents,
            constants,
            decode_plan,
            check_cancel=tracker.check_cancel,
            on_window=lambda: tracker.advance("decode"),
        )
        timer.add("decode", t0)

        # waveform → 48 kHz stereo file
        tracker.check_cancel()
        t0 = time.monotonic()
        wave = audio.resample_to_48k(wave)
        wave = audio.fit_length(wave, int(params.duration_sec * audio.SAMPLE_RATE_OUT))
        wave = audio.prevent_clipping(wave)
        result = self._write(out_path, wave, params, latents, timer, started)
        tracker.advance("decode")
        return result

    def _write(
        self,
        out_path: Path,
        wave: np.ndarray,
        params: GenerationParams,
        latents: np.ndarray,
        timer: StageTimer,
        started: float,
    ) -> GenerationResult:
        t0 = time.monotonic()
        try:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            audio.write_audio(
                out_path, wave, audio.SAMPLE_RATE_OUT, params.format, params.wav_subtype
            )
        except OSError as exc:
            raise LofiError(
                errors.OUTPUT_WRITE_FAILED, f"cannot write {out_path}: {exc.strerror or exc}"
            ) from exc
        timer.add("write", t0)
        timer.timings["total"] = time.monotonic() - started
        duration = wave.shape[1] / audio.SAMPLE_RATE_OUT
        assert params.seed is not None
        return GenerationResult(
            path=out_path,
            duration_sec=duration,
            sample_rate=audio.SAMPLE_RATE_OUT,
            channels=wave.shape[0],
            seed=params.seed,
            params=params,
            model_version=self.model_version,
            timings={k: round(v, 4) for k, v in timer.timings.items()},
            providers=self.providers_in_use(),
            latents=latents,
        )
