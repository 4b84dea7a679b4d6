"""The four ACE-Step 1.5 graphs: thin modules whose ``forward`` is exactly one graph's signature.

The split follows the turbo text2music path (upstream
``acestep/models/turbo/modeling_acestep_v15_turbo.py``): the Qwen3 text encoder
(``ConditioningEmbedMixin.infer_text_embeddings``: ``last_hidden_state``, no mask), the two parts
of ``AceStepConditionEncoder.forward`` that take inputs (``text_projector`` and the lyric encoder;
packing ``[lyrics | timbre | text]`` is done by the runtime, batch 1, no padding), one evaluation
of ``AceStepDiTModel.forward`` with ``timestep_r = timestep`` (``generate_audio``), and the
Oobleck decoder (``_decode_generate_music_pred_latents``) with its weight norm folded.

Each wrapper holds its module under the checkpoint's own prefix (``decoder``, ``encoder``) or under
``inner`` (Qwen3, whose keys have no prefix), so an initializer's name is its checkpoint key.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn
from torch.export import Dim

from lofi_daemon.model import turbo_layout

from ..checkpoint import Component, TensorSource, check_keys
from ..errors import CheckpointError, ExportError
from ..onnx_writer import INLINE_LIMIT_BYTES, ExportedGraph, WeightLookup, export_graph
from .checkpoint_keys import dit_file_shapes, text_encoder_shapes, vae_shapes
from .condition import ConditionEncoder, TimbreEncoder
from .dit import DiT
from .layers import RotaryEmbedding
from .presets import VAE_CONFIG_KEYS, AceStepConfig, Qwen3Config
from .qwen3 import Qwen3TextEncoder

INNER = "inner."
M = TypeVar("M", bound=nn.Module)


class TextEncoderGraph(nn.Module):
    """Qwen3 (causal, no mask): ``input_ids [1,Lt]`` → ``hidden [1,Lt,Dt]``."""

    def __init__(self, qwen: Qwen3TextEncoder) -> None:
        super().__init__()
        self.inner = qwen

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.inner(input_ids)


class ConditionEncoderGraph(nn.Module):
    """``text_hidden``, ``lyric_embeds`` → ``text_states`` (projector), ``lyric_states``."""

    def __init__(self, encoder: ConditionEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(
        self, text_hidden: torch.Tensor, lyric_embeds: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(text_hidden, lyric_embeds)


class DitGraph(nn.Module):
    """One DiT evaluation: ``x [1,T,C]`` (T even), ``t [1]``, ``enc [1,S,H]``, ``context`` → velocity."""

    def __init__(self, decoder: DiT) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        context_latents: torch.Tensor,
    ) -> torch.Tensor:
        return self.decoder(hidden_states, timestep, encoder_hidden_states, context_latents)


class VaeDecoderGraph(nn.Module):
    """Oobleck decoder, weight norm folded: ``latents [1,C,T]`` → ``audio [1,2,1920·T]``."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(latents)


# -- the VAE (diffusers' AutoencoderOobleck, as upstream loads it) ---------------------------------


def vae_config(vae: Component) -> dict[str, Any]:
    """The ``AutoencoderOobleck`` arguments from ``vae/config.json`` (other keys are ignored)."""
    absent = [key for key in VAE_CONFIG_KEYS if key not in vae.config]
    if absent:
        raise CheckpointError(f"{vae.folder / 'config.json'}: missing fields {', '.join(absent)}")
    return {key: vae.config[key] for key in VAE_CONFIG_KEYS}


def build_folded_vae_decoder(config: dict[str, Any], device: str = "meta") -> nn.Module:
    """Only the Oobleck decoder, with ``weight_g``/``weight_v`` replaced by a plain ``weight``.

    The checkpoint lookup folds each pair with :func:`..checkpoint.fold_weight_norm` (norm over
    every axis but 0; for ``conv_t1``, a ConvTranspose1d, axis 0 is the input channel).
    """
    from diffusers.models.autoencoders.autoencoder_oobleck import OobleckDecoder

    kwargs = config
    with warnings.catch_warnings(), torch.device(device):
        warnings.simplefilter("ignore", FutureWarning)  # torch.nn.utils.weight_norm deprecation
        decoder = OobleckDecoder(
            channels=kwargs["decoder_channels"],
            input_channels=kwargs["decoder_input_channels"],
            audio_channels=kwargs["audio_channels"],
            upsampling_ratios=list(kwargs["downsampling_ratios"])[::-1],
            channel_multiples=list(kwargs["channel_multiples"]),
        )
    for module in decoder.modules():
        if hasattr(module, "weight_g"):
            torch.nn.utils.remove_weight_norm(module)
    return decoder.eval()


# -- checkpoint lookups and the export ------------------------------------------------------------


def computed_buffers(module: nn.Module, head_dim: int, theta: float) -> dict[str, np.ndarray]:
    """The values of ``module``'s non-persistent buffers, which no checkpoint stores.

    The only ones are the RoPE ``inv_freq`` tables (:class:`.layers.RotaryEmbedding`); they are
    recomputed on the CPU, since ``module`` lives on the meta device.
    """
    persistent = set(module.state_dict())
    table = RotaryEmbedding(head_dim, theta).inv_freq.numpy()
    values: dict[str, np.ndarray] = {}
    for name, _buffer in module.named_buffers():
        if name in persistent:
            continue
        if not name.endswith("rotary_emb.inv_freq"):
            raise ExportError(f"internal: no value known for the buffer {name!r}")
        values[name] = table
    return values


def _lookup(
    source: TensorSource, prefix: str = "", computed: dict[str, np.ndarray] | None = None
) -> WeightLookup:
    """Initializer name → float32 tensor: a computed buffer, else the checkpoint tensor
    (``prefix`` dropped; ``x.weight`` folded from ``x.weight_g``/``x.weight_v``)."""
    extra = computed or {}

    def weights(name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name in extra:
            return extra[name]
        return source.numpy(name.removeprefix(prefix))

    return weights


def _meta(factory: Callable[[], M]) -> M:
    """``factory()`` built on the meta device (no memory, no random init), in eval mode."""
    with torch.device("meta"):
        return factory().eval()


def check_checkpoint(dit: Component, vae: Component, text: Component, channels: int) -> None:
    """Every key and shape the export reads, and the sizes that must agree across folders.

    Raises:
        CheckpointError: naming the file and the key, shape or config value at fault.
    """
    dcfg, tcfg = _configs_checked(dit, text)
    check_keys(dit, dit_file_shapes(dcfg))
    check_keys(text, text_encoder_shapes(tcfg))
    vcfg = vae_config(vae)
    try:
        shapes = vae_shapes(vcfg)
    except Exception as exc:  # diffusers raises TypeError/ValueError/KeyError on a bad config
        raise CheckpointError(
            f"{vae.folder / 'config.json'}: cannot build AutoencoderOobleck ({exc})"
        ) from exc
    check_keys(vae, shapes)
    dit_json, vae_json = dit.folder / "config.json", vae.folder / "config.json"
    if dcfg.audio_acoustic_hidden_dim != channels:
        raise CheckpointError(
            f"{dit_json}: audio_acoustic_hidden_dim {dcfg.audio_acoustic_hidden_dim} != "
            f"the {channels} channels of silence_latent.pt"
        )
    if vcfg["decoder_input_channels"] != channels:
        raise CheckpointError(
            f"{vae_json}: decoder_input_channels {vcfg['decoder_input_channels']} "
            f"!= the {channels} latent channels of the DiT"
        )
    if dcfg.text_hidden_dim != tcfg.hidden_size:
        raise CheckpointError(
            f"{dit_json}: text_hidden_dim {dcfg.text_hidden_dim} != the text encoder's "
            f"hidden_size {tcfg.hidden_size} ({text.folder / 'config.json'})"
        )


def _configs_checked(dit: Component, text: Component) -> tuple[AceStepConfig, Qwen3Config]:
    """Both configs; an error names the config.json it came from."""
    try:
        dcfg = AceStepConfig.from_json_dict(dit.config)
    except ExportError as exc:
        raise CheckpointError(f"{dit.folder / 'config.json'}: {exc}") from exc
    try:
        tcfg = Qwen3Config.from_json_dict(text.config)
    except ExportError as exc:
        raise CheckpointError(f"{text.folder / 'config.json'}: {exc}") from exc
    return dcfg, tcfg


def export_turbo_graphs(
    dit: Component,
    vae: Component,
    text: Component,
    out: Path,
    *,
    inline_limit: int = INLINE_LIMIT_BYTES,
    on_graph: Callable[[ExportedGraph], None] | None = None,
    on_graph_start: Callable[[str], None] | None = None,
) -> list[ExportedGraph]:
    """Write the four graphs of :data:`turbo_layout.GRAPHS` into ``out``, in that order.

    Modules are built on the meta device and weights streamed from the checkpoint one tensor at a
    time, so memory stays near the largest single tensor whatever the model size.
    ``on_graph_start(name)`` comes before a graph is traced, ``on_graph(graph)`` after it is written.
    """
    dcfg, tcfg = _configs_checked(dit, text)
    channels = dcfg.audio_acoustic_hidden_dim
    dit_source = TensorSource(dit)
    graphs: list[ExportedGraph] = []

    def run(name: str, module: nn.Module, example: tuple[Any, ...], **kwargs: Any) -> None:
        if on_graph_start is not None:
            on_graph_start(name)
        graph = export_graph(
            module, example, path=out / f"{name}.onnx", inline_limit=inline_limit, **kwargs
        )
        graphs.append(graph)
        if on_graph is not None:
            on_graph(graph)

    text_len, lyric_len = Dim("text_len", min=2), Dim("lyric_len", min=2)
    qwen = TextEncoderGraph(_meta(lambda: Qwen3TextEncoder(tcfg)))
    run(
        turbo_layout.GRAPH_TEXT_ENCODER,
        qwen,
        (torch.ones(1, 7, dtype=torch.int64, device="meta"),),
        input_names=["input_ids"],
        output_names=["hidden"],
        dynamic_shapes=({1: text_len},),
        weights=_lookup(
            TensorSource(text), INNER, computed_buffers(qwen, tcfg.head_dim, tcfg.rope_theta)
        ),
    )
    del qwen
    cond = ConditionEncoderGraph(_meta(lambda: ConditionEncoder(dcfg)))
    dt = dcfg.text_hidden_dim
    run(
        turbo_layout.GRAPH_CONDITION_ENCODER,
        cond,
        (torch.ones(1, 7, dt, device="meta"), torch.ones(1, 9, dt, device="meta")),
        input_names=["text_hidden", "lyric_embeds"],
        output_names=["text_states", "lyric_states"],
        dynamic_shapes=({1: text_len}, {1: lyric_len}),
        weights=_lookup(dit_source, "", computed_buffers(cond, dcfg.head_dim, dcfg.rope_theta)),
    )
    del cond
    half, cond_len = Dim("half_frames", min=2), Dim("cond_len", min=2)
    frames = 2 * half
    dit_graph = DitGraph(_meta(lambda: DiT(dcfg)))
    run(
        turbo_layout.GRAPH_DIT,
        dit_graph,
        (
            torch.ones(1, 22, channels, device="meta"),
            torch.ones(1, device="meta"),
            torch.ones(1, 13, dcfg.hidden_size, device="meta"),
            torch.ones(1, 22, 2 * channels, device="meta"),
        ),
        input_names=["hidden_states", "timestep", "encoder_hidden_states", "context_latents"],
        output_names=["velocity"],
        dynamic_shapes=({1: frames}, None, {1: cond_len}, {1: frames}),
        weights=_lookup(
            dit_source, "", computed_buffers(dit_graph, dcfg.head_dim, dcfg.rope_theta)
        ),
    )
    del dit_graph
    run(
        turbo_layout.GRAPH_VAE_DECODER,
        VaeDecoderGraph(build_folded_vae_decoder(vae_config(vae))),
        (torch.ones(1, channels, 22, device="meta"),),
        input_names=["latents"],
        output_names=["audio"],
        dynamic_shapes=({2: Dim("frames", min=2)},),
        weights=_lookup(TensorSource(vae)),
    )
    return graphs


def silence_timbre(dit: Component, silence: torch.Tensor) -> np.ndarray:
    """The timbre encoder (fp32, CPU, real weights) on ``silence [1, F, C]``: ``[1, 1, H]``.

    Only ``encoder.timbre_encoder.*`` is read, so this holds a few hundred MB at full size.
    """
    dcfg = AceStepConfig.from_json_dict(dit.config)
    source = TensorSource(dit)
    encoder = _meta(lambda: TimbreEncoder(dcfg))
    prefix = "encoder.timbre_encoder."
    state = {name: source.torch(prefix + name) for name in encoder.state_dict()}
    encoder.load_state_dict(state, assign=True)
    encoder.rotary_emb = RotaryEmbedding(dcfg.head_dim, dcfg.rope_theta)
    if any(t.device.type == "meta" for t in [*encoder.parameters(), *encoder.buffers()]):
        raise ExportError("internal: the timbre encoder still has meta tensors")
    with torch.no_grad():
        return encoder(silence.to(torch.float32)).numpy()
