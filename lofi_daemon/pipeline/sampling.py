"""The diffusion part of each task: prompt conditions, the scheduler, and the loop it runs.

Upstream ``acestep/pipeline_ace_step.py: ACEStepPipeline.__call__`` sends edit to
``flowedit_diffusion_process`` and every other task to ``text2music_diffusion_process``, which
sets up retake noise, the repaint/extend plan or the audio2audio start before its loop. The set-up
arithmetic lives in :mod:`lofi_daemon.pipeline.tasks`, the loops in
:mod:`lofi_daemon.pipeline.denoise` and :mod:`lofi_daemon.pipeline.flowedit`; this module picks and
wires them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lofi_daemon.model.constants import ModelConstants
from lofi_daemon.pipeline.conditioning import (
    Conditions,
    EditConditions,
    build_conditions,
    build_edit_conditions,
    empty_lyrics,
    encode_text,
)
from lofi_daemon.pipeline.denoise import RunDenoiser, denoise
from lofi_daemon.pipeline.flowedit import flowedit
from lofi_daemon.pipeline.guidance import cfg_enabled, double_condition_enabled
from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.pipeline.schedulers import FlowMatchScheduler, make_scheduler
from lofi_daemon.pipeline.sessions import GraphRunner
from lofi_daemon.pipeline.task_setup import Layout, Noises
from lofi_daemon.pipeline.tasks import (
    audio2audio_start,
    extend_plan,
    mix_retake_noise,
    repaint_plan,
)
from lofi_daemon.pipeline.tokenizer import PromptTokenizer

OpenGraph = Callable[[str], GraphRunner]
"""Loads a graph by name for one use (the engine drops it afterwards)."""


def task_scheduler(params: GenerationParams, constants: ModelConstants) -> FlowMatchScheduler:
    """The scheduler whose timesteps the task's loop walks (one progress unit per entry).

    audio2audio runs ``int((1 − ref_strength)·N)`` steps below ``sigma_max = 1 − ref_strength``
    (upstream ``add_latents_noise``); every other task runs N steps of the chosen scheduler.
    """
    if params.task == "audio2audio":
        sigma_max = 1.0 - params.ref_strength
        steps = int(sigma_max * params.infer_steps)
        return make_scheduler(
            params.scheduler, steps, constants.scheduler_shift, sigma_max=sigma_max
        )
    return make_scheduler(params.scheduler, params.infer_steps, constants.scheduler_shift)


def encode_units(params: GenerationParams) -> int:
    """Progress units of the prompt encoding: a text-encoder run per prompt, one condition run."""
    return 3 if params.task == "edit" else 2


def encode_conditions(
    open_graph: OpenGraph,
    tokenizer: PromptTokenizer,
    params: GenerationParams,
    constants: ModelConstants,
    advance: Callable[[], None],
) -> Conditions | EditConditions:
    """Prompt(s) → condition sequences; ``advance`` is called after each encoder run.

    Each encoder is loaded, run once per prompt (every guidance variant batched), and dropped.
    """
    if params.task == "edit":
        return _edit_conditions(open_graph, tokenizer, params, constants, advance)
    erg = constants.erg
    guided = cfg_enabled(params.guidance_scale)
    double = guided and double_condition_enabled(
        params.guidance_scale_text, params.guidance_scale_lyric
    )
    ids, text_mask = tokenizer.encode(params.prompt)
    text, text_weak = encode_text(
        open_graph("text_encoder"),
        ids,
        text_mask,
        n_layers=constants.text_encoder_layers,
        erg_layers=erg.tag_layers,
        erg_scale=erg.scale,
        with_weak=guided and params.use_erg_tag and params.use_erg_lyric,
    )
    advance()
    lyric_ids, lyric_mask = empty_lyrics()
    conditions = build_conditions(
        open_graph("condition_encoder"),
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
    advance()
    return conditions


def _edit_conditions(
    open_graph: OpenGraph,
    tokenizer: PromptTokenizer,
    params: GenerationParams,
    constants: ModelConstants,
    advance: Callable[[], None],
) -> EditConditions:
    """The source (``prompt``) and target (``edit_prompt``) conditions; FlowEdit uses no ERG."""
    assert params.edit_prompt is not None  # validate() requires it for edit
    encoded = []
    text_encoder = open_graph("text_encoder")
    for prompt in (params.prompt, params.edit_prompt):
        ids, mask = tokenizer.encode(prompt)
        text, _ = encode_text(
            text_encoder,
            ids,
            mask,
            n_layers=constants.text_encoder_layers,
            erg_layers=(),
            erg_scale=1.0,
            with_weak=False,
        )
        encoded.append((text, mask))
        advance()
    del text_encoder
    lyric_ids, lyric_mask = empty_lyrics()
    (src_text, src_mask), (tar_text, tar_mask) = encoded
    conditions = build_edit_conditions(
        open_graph("condition_encoder"),
        src_text,
        src_mask,
        tar_text,
        tar_mask,
        lyric_ids,
        lyric_mask,
        speaker_dim=constants.speaker_embedding_dim,
        n_blocks=constants.conformer_blocks,
        guided=cfg_enabled(params.guidance_scale),
    )
    advance()
    return conditions


def diffuse(
    run: RunDenoiser,
    scheduler: FlowMatchScheduler,
    conditions: Conditions | EditConditions,
    params: GenerationParams,
    constants: ModelConstants,
    layout: Layout,
    noises: Noises,
    src: np.ndarray | None,
    on_step: Callable[[int], None],
) -> np.ndarray:
    """Run the task's loop; return the final latents ``[1, 8, 16, layout.out_frames]``.

    ``scheduler`` is :func:`task_scheduler`'s; ``src`` the source (or reference) latents for the
    source tasks; ``on_step(i)`` is called before every loop entry, skipped ones included.
    """
    task, n_steps = params.task, params.infer_steps
    if task == "edit":
        assert isinstance(conditions, EditConditions) and src is not None
        return flowedit(
            run,
            scheduler,
            conditions,
            params,
            src,
            noises.rng,
            n_layers=constants.denoiser_layers,
            on_step=on_step,
        )
    assert isinstance(conditions, Conditions) and noises.noise is not None
    noise, repaint = noises.noise, None
    variance = params.retake_variance
    if task == "retake":
        assert noises.retake is not None and variance is not None
        noise = mix_retake_noise(noise, noises.retake, variance)
    elif task == "repaint":
        assert src is not None and noises.retake is not None and layout.region is not None
        assert variance is not None
        s0, s1 = layout.region
        repaint = repaint_plan(src, noise, noises.retake, s0, s1, variance, n_steps)
    elif task == "extend":
        assert src is not None and noises.retake is not None and variance is not None
        repaint = extend_plan(
            src, noise, noises.retake, layout.left, layout.right, variance, n_steps
        )
    elif task == "audio2audio":
        assert src is not None
        noise, own = audio2audio_start(
            src, noise, params.ref_strength, params.scheduler, n_steps, constants.scheduler_shift
        )
        assert len(own.timesteps) == len(scheduler.timesteps)
        scheduler = own
    erg = constants.erg
    return denoise(
        run,
        scheduler,
        conditions,
        params,
        noise if repaint is None else repaint.z0,
        noises.rng,
        n_layers=constants.denoiser_layers,
        erg_layers=erg.diffusion_layers,
        erg_scale=erg.scale,
        on_step=on_step,
        repaint=repaint,
    )
