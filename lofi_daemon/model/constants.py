"""The runtime constants a model directory declares in its manifest, as a typed record.

The exporter measures them from the checkpoint (layer counts, widths) or takes them from the
reference pipeline (sample rates, DCAE scaling, ERG layers) and writes them under ``constants`` in
``manifest.json``; the runtime reads them back here and nowhere else, so a missing or mistyped
value is one clear load error instead of a ``KeyError`` in the middle of a generation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, get_type_hints


@dataclass(frozen=True)
class ErgLayers:
    """Energy-based guidance: which layers get their attention queries scaled, and by how much.

    Upstream: ``acestep/pipeline_ace_step.py`` (``text2music_diffusion_process``) registers the
    forward hooks on ``text_encoder`` layers 8–9 (tags), ``lyric_encoder`` blocks 4–5 (lyrics) and
    transformer blocks 15–19 (diffusion) and scales the query by 0.01 in the null branch.
    """

    scale: float
    tag_layers: tuple[int, ...]
    lyric_layers: tuple[int, ...]
    diffusion_layers: tuple[int, ...]


@dataclass(frozen=True)
class ModelConstants:
    """Shapes and fixed numbers of one exported model (see ``export/manifest_writer.py``)."""

    sample_rate_model: int
    sample_rate_output: int
    samples_per_latent_frame: int
    latent_frames_per_second: float
    mel_frames_per_latent_frame: int
    vocoder_hop_length: int
    latent_channels: int
    latent_height: int
    dcae_scale: float
    dcae_shift: float
    mel_min: float
    mel_max: float
    text_max_tokens: int
    text_hidden_size: int
    speaker_embedding_dim: int
    text_encoder_layers: int
    conformer_blocks: int
    denoiser_layers: int
    scheduler_shift: float
    num_train_timesteps: int
    erg: ErgLayers

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelConstants:
        """Parse the manifest's ``constants`` object.

        Raises:
            ValueError: a field is missing or unknown, or a whole number has a fraction.
            TypeError: a field has the wrong type.
        """
        if not isinstance(data, Mapping):
            raise TypeError("constants: not an object")
        hints = get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"constants: unknown field(s) {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name in names:
            if name not in data:
                raise ValueError(f"constants.{name} is missing")
            if name == "erg":
                values[name] = _erg(data[name])
            else:
                # Counts and sizes are positive; the float constants may be anything finite.
                values[name] = _number(
                    f"constants.{name}", data[name], hints[name], positive=hints[name] is int
                )
        return cls(**values)

    def latent_frames(self, duration_sec: float) -> int:
        """Latent frames for ``duration_sec``: ``int(d · 44100 / 4096)``, rounded down as upstream
        (``acestep/pipeline_ace_step.py: text2music_diffusion_process``, ``frame_length``)."""
        return int(duration_sec * self.sample_rate_model / self.samples_per_latent_frame)

    def to_json(self) -> dict[str, Any]:
        """The manifest form (lists for layer ranges), the inverse of :meth:`from_json`."""
        out = dataclasses.asdict(self)
        out["erg"] = {k: list(v) if isinstance(v, tuple) else v for k, v in out["erg"].items()}
        return out


def _number(where: str, value: Any, kind: type, *, positive: bool = False) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{where} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{where} must be finite, got {value!r}")
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{where} must be a whole number, got {value!r}")
        if positive and value <= 0:
            raise ValueError(f"{where} must be positive, got {value!r}")
        return int(value)
    return float(value)


def _erg(value: Any) -> ErgLayers:
    if not isinstance(value, Mapping):
        raise TypeError("constants.erg must be an object")
    names = [f.name for f in dataclasses.fields(ErgLayers)]
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise ValueError(f"constants.erg: unknown field(s) {', '.join(unknown)}")
    missing = [name for name in names if name not in value]
    if missing:
        raise ValueError(f"constants.erg.{missing[0]} is missing")
    layers: dict[str, tuple[int, ...]] = {}
    for key in ("tag_layers", "lyric_layers", "diffusion_layers"):
        where = f"constants.erg.{key}"
        if not isinstance(value[key], list | tuple):
            raise TypeError(f"{where} must be a list of layer numbers, got {value[key]!r}")
        layers[key] = tuple(int(_number(where, i, int)) for i in value[key])
    scale = float(_number("constants.erg.scale", value["scale"], float))
    return ErgLayers(scale=scale, **layers)
