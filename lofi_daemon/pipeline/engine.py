"""The text2music engine: prompt → tokens → conditions → denoising loop → latents → mel → waveform → file.

Sessions follow the memory plan of the issue: the text and condition encoders are loaded, run and
dropped; the denoiser is loaded, run for every step and dropped (unless ``keep_loaded``); the DCAE
decoder and the vocoder stay resident between generations.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from lofi_daemon import __version__, errors
from lofi_daemon.errors import CancelledError, LofiError
from lofi_daemon.model.manifest import Manifest, load_manifest
from lofi_daemon.pipeline import audio
from lofi_daemon.pipeline.conditioning import build_conditions, empty_lyrics, encode_text
from lofi_daemon.pipeline.decode import (
    denormalize_mel,
    latents_to_dcae_input,
    plan_windows,
    run_windowed,
)
from lofi_daemon.pipeline.denoise import denoise
from lofi_daemon.pipeline.guidance import cfg_enabled, double_condition_enabled
from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.pipeline.providers import create_session, requested_providers
from lofi_daemon.pipeline.schedulers import make_scheduler
from lofi_daemon.pipeline.tokenizer import PromptTokenizer

LOG = logging.getLogger(__name__)

Phase = Literal["encode", "diffusion", "decode"]


@dataclass(frozen=True)
class Progress:
    phase: Phase
    step: int
    total: int
    percent: float
    eta_sec: float | None


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


@dataclass(frozen=True)
class DecodeSettings:
    """Window sizes for the bounded-memory decode (latent frames for the DCAE, mel frames for the vocoder)."""

    dcae_window: int = 256
    dcae_overlap: int = 32
    vocoder_window: int = 2048
    vocoder_overlap: int = 64


def latent_frames(duration_sec: float, constants: dict) -> int:
    """T = int(duration·44100/4096) (spec §10)."""
    return int(
        duration_sec * constants["sample_rate_model"] / constants["samples_per_latent_frame"]
    )


class _ProgressTracker:
    def __init__(
        self,
        total: int,
        callback: Callable[[Progress], None] | None,
        cancel: threading.Event | None,
    ) -> None:
        self.total = total
        self.done = 0
        self.callback = callback
        self.cancel = cancel
        self.started = time.monotonic()

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise CancelledError()

    def advance(self, phase: Phase, units: int = 1) -> None:
        self.done = min(self.total, self.done + units)
        if self.callback is None:
            return
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done) if self.done else None
        self.callback(Progress(phase, self.done, self.total, 100.0 * self.done / self.total, eta))


@dataclass
class _Timer:
    timings: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, started: float) -> None:
        self.timings[name] = self.timings.get(name, 0.0) + time.monotonic() - started


class _GraphRunner:
    """Runs one session; inference errors become MODEL_INFERENCE_FAILED. Dropping it frees the session."""

    def __init__(self, graph: str, session: ort.InferenceSession) -> None:
        self.graph = graph
        self.session = session

    def __call__(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return self.session.run(None, feeds)
        except Exception as exc:
            raise LofiError(
                errors.MODEL_INFERENCE_FAILED,
                f"{self.graph} failed: {str(exc).splitlines()[0][:300]}",
            ) from exc

    def first(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self(feeds)[0]


class Engine:
    """Owns the ONNX sessions of one model directory and runs generations (one at a time)."""

    def __init__(
        self,
        models_dir: Path,
        *,
        provider: str = "auto",
        threads: int | None = None,
        keep_loaded: bool = False,
        decode: DecodeSettings | None = None,
    ) -> None:
        self.models_dir = Path(models_dir)
        self.provider = provider
        self.threads = threads
        self.keep_loaded = keep_loaded
        self.decode_settings = decode or DecodeSettings()
        self._providers = requested_providers(provider)
        self._manifest: Manifest | None = None
        self._tokenizer: PromptTokenizer | None = None
        self._resident: dict[str, ort.InferenceSession] = {}
        self._providers_used: set[str] = set()
        self._lock = threading.Lock()  # one generation at a time
        self._state_lock = threading.Lock()  # guards what status() reads

    # -- models ---------------------------------------------------------------------------------
    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            self._manifest = load_manifest(self.models_dir)
        return self._manifest

    @property
    def model_version(self) -> str:
        return self.manifest.model_version

    def providers_in_use(self) -> list[str]:
        """Providers that actually ran (safe to call from another thread during a generation)."""
        with self._state_lock:
            return sorted(self._providers_used) or list(self._providers)

    def status(self) -> dict:
        try:
            manifest = self.manifest
        except LofiError as exc:
            state = "not_installed" if exc.code == errors.MODEL_NOT_FOUND else "error"
            return {
                "status": state,
                "message": exc.message,
                "remedy": exc.remedy,
                "model_version": None,
                "providers": self.providers_in_use(),
            }
        return {
            "status": "ready",
            "message": "ready",
            "model_version": manifest.model_version,
            "providers": self.providers_in_use(),
        }

    def _session(self, graph: str) -> ort.InferenceSession:
        session = create_session(
            self.manifest.graph_path(graph),
            self._providers,
            self.threads,
            strict=self.provider != "auto",
        )
        got = session.get_providers()
        if self._providers[0] not in got:
            self._providers = [got[0]]  # the preferred provider failed once: stop retrying it
        with self._state_lock:
            self._providers_used.update(got[:1])
        return session

    def _resident_session(self, graph: str) -> ort.InferenceSession:
        if graph not in self._resident:
            self._resident[graph] = self._session(graph)
        return self._resident[graph]

    def close(self) -> None:
        self._resident.clear()

    def reload(self) -> None:
        """Forget the cached manifest, tokenizer and resident sessions (after a new install).

        Waits for a running generation to finish; the next use reads the model directory again.
        """
        with self._lock, self._state_lock:
            self._manifest = None
            self._tokenizer = None
            self._resident.clear()
            self._providers_used.clear()

    def _runner(self, graph: str, *, resident: bool = False) -> _GraphRunner:
        session = self._resident_session(graph) if resident else self._session(graph)
        return _GraphRunner(graph, session)

    # -- the pipeline ------------------------------------------------------------------------------
    def generate(
        self,
        params: GenerationParams,
        out_path: Path,
        *,
        progress: Callable[[Progress], None] | None = None,
        cancel: threading.Event | None = None,
        initial_noise: np.ndarray | None = None,
    ) -> GenerationResult:
        """Generate one track into ``out_path`` (audio only; see :meth:`GenerationResult.sidecar`).

        Blocking; one generation at a time.
        """
        params.validate()
        if Path(out_path).suffix.lower() == ".json":
            raise LofiError(
                errors.INVALID_FORMAT,
                f"{out_path}: the audio file cannot be a .json file "
                "(the sidecar is written next to it)",
            )
        with self._lock:
            return self._generate(params, Path(out_path), progress, cancel, initial_noise)

    def _generate(
        self,
        params: GenerationParams,
        out_path: Path,
        progress: Callable[[Progress], None] | None,
        cancel: threading.Event | None,
        initial_noise: np.ndarray | None,
    ) -> GenerationResult:
        manifest = self.manifest
        constants = manifest.constants
        erg = constants["erg"]
        seed = params.seed if params.seed is not None else secrets.randbits(32)
        params = params.with_seed(seed)
        frames = latent_frames(params.duration_sec, constants)
        shape = (1, constants["latent_channels"], constants["latent_height"], frames)
        if initial_noise is not None:
            initial_noise = np.asarray(initial_noise)
            if initial_noise.shape != shape or not np.issubdtype(initial_noise.dtype, np.floating):
                raise LofiError(
                    errors.INVALID_PARAMETER,
                    f"initial noise must be a float array of shape {list(shape)}, "
                    f"got {initial_noise.dtype} {list(initial_noise.shape)}",
                )
            if not np.isfinite(initial_noise).all():
                raise LofiError(errors.INVALID_PARAMETER, "initial noise contains NaN or infinity")
        scheduler = make_scheduler(
            params.scheduler, params.infer_steps, constants["scheduler_shift"]
        )
        settings = self.decode_settings
        mel_frames = frames * constants["mel_frames_per_latent_frame"]
        dcae_windows = plan_windows(
            frames, settings.dcae_window, settings.dcae_overlap, min_frames=4
        )
        vocoder_windows = plan_windows(
            mel_frames, settings.vocoder_window, settings.vocoder_overlap, min_frames=2
        )
        tracker = _ProgressTracker(
            2 + len(scheduler.timesteps) + len(dcae_windows) + len(vocoder_windows) + 1,
            progress,
            cancel,
        )
        timer = _Timer()
        started = time.monotonic()
        guided = cfg_enabled(params.guidance_scale)
        double = guided and double_condition_enabled(
            params.guidance_scale_text, params.guidance_scale_lyric
        )

        # prompt → tokens → text embeddings (text encoder loaded, run, dropped)
        tracker.check_cancel()
        t0 = time.monotonic()
        if self._tokenizer is None:
            self._tokenizer = PromptTokenizer(
                manifest.path(manifest.tokenizer_file), constants["text_max_tokens"]
            )
        ids, text_mask = self._tokenizer.encode(params.prompt)
        text_encoder = self._runner("text_encoder")
        text, text_weak = encode_text(
            text_encoder,
            ids,
            text_mask,
            n_layers=constants["text_encoder_layers"],
            erg_layers=erg["tag_layers"],
            erg_scale=erg["scale"],
            with_weak=guided and params.use_erg_tag and params.use_erg_lyric,
        )
        del text_encoder
        tracker.advance("encode")
        tracker.check_cancel()

        # text embeddings → condition sequences (condition encoder loaded, run, dropped)
        lyric_ids, lyric_mask = empty_lyrics()
        condition_encoder = self._runner("condition_encoder")
        conditions = build_conditions(
            condition_encoder,
            params,
            text,
            text_weak,
            text_mask,
            lyric_ids,
            lyric_mask,
            speaker_dim=constants["speaker_embedding_dim"],
            n_blocks=constants["conformer_blocks"],
            erg_layers=erg["lyric_layers"],
            erg_scale=erg["scale"],
            guided=guided,
            double=double,
        )
        del condition_encoder
        tracker.advance("encode")
        timer.add("encode", t0)

        # noise → latents (denoiser loaded for all steps, dropped unless keep_loaded)
        t0 = time.monotonic()
        rng = np.random.Generator(np.random.PCG64(seed))
        noise = rng.standard_normal(shape, dtype=np.float32)
        if initial_noise is not None:
            noise = initial_noise.astype(np.float32)
        denoiser = self._runner("denoiser", resident=self.keep_loaded)

        def on_step(i: int) -> None:
            tracker.check_cancel()
            if i:
                tracker.advance("diffusion")

        latents = denoise(
            denoiser.first,
            scheduler,
            conditions,
            params,
            noise,
            rng,
            n_layers=constants["denoiser_layers"],
            erg_layers=erg["diffusion_layers"],
            erg_scale=erg["scale"],
            on_step=on_step,
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
        wave = self._decode(latents, constants, dcae_windows, vocoder_windows, tracker)
        timer.add("decode", t0)

        # waveform → 48 kHz stereo file
        tracker.check_cancel()
        t0 = time.monotonic()
        wave = audio.resample_to_48k(wave)
        wave = audio.fit_length(wave, int(params.duration_sec * audio.SAMPLE_RATE_OUT))
        wave = audio.prevent_clipping(wave)
        result = self._write(out_path, wave, params, seed, timer, started)
        tracker.advance("decode")
        return result

    def _decode(
        self,
        latents: np.ndarray,
        constants: dict,
        dcae_windows: list,
        vocoder_windows: list,
        tracker: _ProgressTracker,
    ) -> np.ndarray:
        dcae = self._runner("dcae_decoder", resident=True)
        vocoder = self._runner("vocoder", resident=True)
        z = latents_to_dcae_input(latents, constants["dcae_scale"], constants["dcae_shift"])
        mel_n = self._windowed(
            lambda x: dcae.first({"latents": x}),
            z,
            dcae_windows,
            constants["mel_frames_per_latent_frame"],
            tracker,
        )
        mel = denormalize_mel(mel_n[0], constants["mel_min"], constants["mel_max"])
        wave = self._windowed(
            lambda m: vocoder.first({"mel": m}),
            mel,
            vocoder_windows,
            constants["vocoder_hop_length"],
            tracker,
        )
        return wave[:, 0, :].astype(np.float32)  # [2 channels, N]

    @staticmethod
    def _windowed(
        run: Callable[[np.ndarray], np.ndarray],
        x: np.ndarray,
        windows: list,
        scale: int,
        tracker: _ProgressTracker,
    ) -> np.ndarray:
        """Run ``run`` over the windows (cancel checked before each) and join the kept pieces."""
        pieces = []
        for piece in run_windowed(run, x, windows, scale, tracker.check_cancel):
            pieces.append(piece)
            tracker.advance("decode")
        return np.concatenate(pieces, axis=-1)

    def _write(
        self,
        out_path: Path,
        wave: np.ndarray,
        params: GenerationParams,
        seed: int,
        timer: _Timer,
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
        return GenerationResult(
            path=out_path,
            duration_sec=duration,
            sample_rate=audio.SAMPLE_RATE_OUT,
            channels=wave.shape[0],
            seed=seed,
            params=params,
            model_version=self.model_version,
            timings={k: round(v, 4) for k, v in timer.timings.items()},
            providers=self.providers_in_use(),
        )
