"""The text2music engine: prompt → tokens → conditions → denoising loop → latents → waveform → file.

:class:`Engine` orchestrates the stages of ``lofi_daemon.pipeline`` over the sessions of one model
directory (see :mod:`lofi_daemon.pipeline.sessions` for which stay loaded). It follows upstream
``acestep/pipeline_ace_step.py: ACEStepPipeline.__call__`` for the text2music task.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lofi_daemon import __version__, errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model.manifest import MANIFEST_NAME, Manifest, load_manifest
from lofi_daemon.pipeline import audio
from lofi_daemon.pipeline.conditioning import build_conditions, empty_lyrics, encode_text
from lofi_daemon.pipeline.decode import DecodeSettings, decode_latents, plan_decode
from lofi_daemon.pipeline.denoise import denoise
from lofi_daemon.pipeline.guidance import cfg_enabled, double_condition_enabled
from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.pipeline.progress import ProgressCallback, ProgressTracker, StageTimer
from lofi_daemon.pipeline.schedulers import make_scheduler
from lofi_daemon.pipeline.sessions import GraphRunner, SessionPool
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


#: ``(manifest.json, the listed files)``, each as ``(name, inode, size, mtime_ns)`` or None if gone.
FileStamp = tuple[str, int, int, int] | None
Fingerprint = tuple[FileStamp, tuple[FileStamp, ...]]


def _stamp(path: Path) -> FileStamp:
    try:
        st = path.stat()
    except OSError:
        return None
    return (path.name, st.st_ino, st.st_size, st.st_mtime_ns)


def disk_fingerprint(models_dir: Path, manifest: Manifest | None) -> Fingerprint:
    """What changes when the installation is replaced, deleted or damaged on disk."""
    files = (
        () if manifest is None else tuple(_stamp(models_dir / n) for n in sorted(manifest.files))
    )
    return (_stamp(models_dir / MANIFEST_NAME), files)


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
        self._sessions = SessionPool(provider, threads)
        self._manifest: Manifest | None = None
        self._fingerprint: Fingerprint | None = None  # the disk state _manifest was read from
        self._stale = (
            False  # the files changed: drop the tokenizer and sessions before the next run
        )
        self._tokenizer: PromptTokenizer | None = None
        self._lock = threading.Lock()  # one generation at a time

    # -- models ---------------------------------------------------------------------------------
    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            fingerprint = disk_fingerprint(self.models_dir, None)
            manifest = load_manifest(self.models_dir)
            self._manifest = manifest
            self._fingerprint = disk_fingerprint(self.models_dir, manifest)
            if self._fingerprint[0] != fingerprint[0]:  # the manifest changed while being read
                self._fingerprint = None
        return self._manifest

    def _check_disk(self) -> None:
        """Forget the cached manifest when the model files changed on disk (cheap: stats only).

        Sessions and the tokenizer are dropped before the next generation (not now: one may be
        running on them).
        """
        manifest = self._manifest
        if manifest is None:
            return
        if disk_fingerprint(self.models_dir, manifest) != self._fingerprint:
            self._manifest = None
            self._fingerprint = None
            self._stale = True

    @property
    def model_version(self) -> str:
        return self.manifest.model_version

    def providers_in_use(self) -> list[str]:
        """Providers that actually ran (safe to call from another thread during a generation)."""
        return self._sessions.providers_in_use()

    def status(self) -> dict[str, Any]:
        """The installation's state as on disk now (the model files are re-checked each time)."""
        self._check_disk()
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

    def close(self) -> None:
        self._sessions.clear()

    def reload(self) -> None:
        """Forget the cached manifest, tokenizer and resident sessions (after a new install).

        Waits for a running generation to finish; the next use reads the model directory again.
        """
        with self._lock:
            self._manifest = None
            self._fingerprint = None
            self._stale = False
            self._tokenizer = None
            self._sessions.clear()

    def _runner(self, graph: str, *, resident: bool = False) -> GraphRunner:
        return self._sessions.runner(graph, self.manifest.graph_path(graph), resident=resident)

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
            self._check_disk()
            if self._stale:
                self._stale = False
                self._tokenizer = None
                self._sessions.clear()
            return self._generate(params, Path(out_path), progress, cancel, initial_noise)

    def _generate(
        self,
        params: GenerationParams,
        out_path: Path,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
        initial_noise: np.ndarray | None,
    ) -> GenerationResult:
        manifest = self.manifest
        constants = manifest.constants
        erg = constants.erg
        seed = params.seed if params.seed is not None else secrets.randbits(32)
        params = params.with_seed(seed)
        frames = constants.latent_frames(params.duration_sec)
        shape = (1, constants.latent_channels, constants.latent_height, frames)
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
        scheduler = make_scheduler(params.scheduler, params.infer_steps, constants.scheduler_shift)
        decode_plan = plan_decode(frames, constants, self.decode_settings)
        tracker = ProgressTracker(
            2 + len(scheduler.timesteps) + decode_plan.units + 1, progress, cancel
        )
        timer = StageTimer()
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
                manifest.path(manifest.tokenizer_file), constants.text_max_tokens
            )
        ids, text_mask = self._tokenizer.encode(params.prompt)
        text_encoder = self._runner("text_encoder")
        text, text_weak = encode_text(
            text_encoder,
            ids,
            text_mask,
            n_layers=constants.text_encoder_layers,
            erg_layers=erg.tag_layers,
            erg_scale=erg.scale,
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
            speaker_dim=constants.speaker_embedding_dim,
            n_blocks=constants.conformer_blocks,
            erg_layers=erg.lyric_layers,
            erg_scale=erg.scale,
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
            n_layers=constants.denoiser_layers,
            erg_layers=erg.diffusion_layers,
            erg_scale=erg.scale,
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
        result = self._write(out_path, wave, params, seed, timer, started)
        tracker.advance("decode")
        return result

    def _write(
        self,
        out_path: Path,
        wave: np.ndarray,
        params: GenerationParams,
        seed: int,
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
