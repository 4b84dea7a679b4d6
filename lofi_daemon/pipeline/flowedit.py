"""FlowEdit: edit a source track towards a target prompt (spec section 13.5).

Upstream: ``acestep/pipeline_ace_step.py: ACEStepPipeline.flowedit_diffusion_process`` and
``ACEStepPipeline.calc_v``. Euler timesteps only, no ERG, no guidance interval, no omega.

For loop indices ``n_min <= i < n_max`` the edit follows the difference between the target's and
the source's velocity, averaged over ``n_avg`` noisings of the source; from ``n_max`` on it
samples the target prediction alone with plain Euler. The source and target branches (and their
null rows under guidance) share one denoiser call per evaluation: the shorter condition sequence
is padded at its end with masked zero tokens, which the cross attention ignores (a masked key
gets weight 0, and the real tokens keep their positions).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lofi_daemon.pipeline import guidance
from lofi_daemon.pipeline.conditioning import EditConditions
from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.pipeline.schedulers import FlowMatchScheduler

RunDenoiser = Callable[[dict[str, np.ndarray]], np.ndarray]

_TIME_SCALE = np.float32(1000.0)
EDIT_CFG_TYPES = ("apg", "cfg")


def _padded(cond: np.ndarray, mask: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad ``cond [1, S, D]`` and ``mask [1, S]`` at the end to ``length`` tokens, masked out."""
    extra = length - cond.shape[1]
    return (
        np.pad(cond, ((0, 0), (0, extra), (0, 0))),
        np.pad(mask.astype(np.float32, copy=False), ((0, 0), (0, extra))),
    )


class _Branches:
    """One batched denoiser call for any of the source/target branches, with guidance applied.

    Batch rows per branch: ``[cond, null]`` under guidance, else ``[cond]``.
    """

    def __init__(
        self,
        run: RunDenoiser,
        conditions: EditConditions,
        settings: GenerationParams,
        n_layers: int,
    ) -> None:
        self._run = run
        self._n_layers = n_layers
        self._scale = settings.guidance_scale
        self._cfg_type = settings.cfg_type
        self.guided = guidance.cfg_enabled(settings.guidance_scale)
        if self.guided and not conditions.guided:
            raise ValueError("guidance is on but the edit conditions have no null rows")
        c = conditions
        src = [(c.src, c.src_mask)]
        tar = [(c.tar, c.tar_mask)]
        if self.guided:
            assert c.src_null is not None and c.src_null_mask is not None
            assert c.tar_null is not None and c.tar_null_mask is not None
            src.append((c.src_null, c.src_null_mask))
            tar.append((c.tar_null, c.tar_null_mask))
        length = max(c.src.shape[1], c.tar.shape[1])
        self._rows = {
            "src": [_padded(cond, mask, length) for cond, mask in src],
            "tar": [_padded(cond, mask, length) for cond, mask in tar],
        }

    def velocities(
        self,
        t: np.floating,
        latents: dict[str, np.ndarray],
        momentum: dict[str, guidance.MomentumBuffer | None],
    ) -> dict[str, np.ndarray]:
        """Guided velocities ``[1, C, H, T]`` for each branch named in ``latents`` (``"src"``,
        ``"tar"``), in one call; ``momentum[name]`` is that branch's APG buffer or None."""
        names = list(latents)
        per = len(self._rows["src"])
        rows = [row for name in names for row in self._rows[name]]
        batch = len(rows)
        v_all = self._run(
            {
                "latents": np.concatenate([np.repeat(latents[n], per, axis=0) for n in names]),
                "timestep": np.full((batch,), t, dtype=np.float32),
                "cond": np.concatenate([r[0] for r in rows], axis=0),
                "cond_mask": np.concatenate([r[1] for r in rows], axis=0),
                "q_scale": np.ones((batch, self._n_layers), dtype=np.float32),
            }
        )
        v_all = np.asarray(v_all, dtype=np.float32)
        out = {}
        for k, name in enumerate(names):
            v = v_all[k * per : (k + 1) * per]
            if not self.guided:
                out[name] = v
            elif self._cfg_type == "apg":
                out[name] = guidance.apg(v[:1], v[1:2], self._scale, momentum[name])
            else:
                out[name] = guidance.cfg(v[:1], v[1:2], self._scale)
        return out


def flowedit(
    run: RunDenoiser,
    scheduler: FlowMatchScheduler,
    conditions: EditConditions,
    params: GenerationParams,
    src: np.ndarray,
    rng: np.random.Generator,
    *,
    n_layers: int,
    on_step: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Edit the source latents ``src [1, C, H, T]``; return the edited latents (float32, same shape).

    With N steps, ``n_min = int(N edit_n_min)`` and ``n_max = int(N edit_n_max)``; ``t_i`` is the
    i-th timestep / 1000 and ``t_N = 0``. Indices ``i < n_min`` are skipped (``on_step`` is still
    called for them). For ``n_min <= i < n_max``: ``n_avg`` times draw ``ε`` from ``rng``, set
    ``z_src = (1 - t_i) src + t_i ε`` and ``z_tar = z_edit + z_src - src``, and average
    ``V_tar(z_tar) - V_src(z_src)``; then ``z_edit += (t_{i+1} - t_i) V``. At ``i == n_max`` one
    more ``ε`` is drawn and ``x_tar = z_edit + σ ε + (1 - σ) src - src`` with σ the scheduler's
    sigma at that index; from there ``x_tar += (t_{i+1} - t_i) V_tar(x_tar)``.

    Guidance (``params.guidance_scale`` not 0 or 1) uses the same scale for both branches, APG or
    plain CFG per ``params.cfg_type``. The source keeps one APG momentum buffer for all its
    calls; the target uses none before ``n_max`` and its own buffer from ``n_max`` on, as upstream
    ``calc_v`` is called.

    Raises:
        ValueError: a scheduler other than Euler, an unsupported cfg type, or null rows missing.
    """
    if scheduler.name != "euler":
        raise ValueError(f"FlowEdit runs on Euler timesteps, got the {scheduler.name} scheduler")
    if params.cfg_type not in EDIT_CFG_TYPES:
        raise ValueError(f"FlowEdit supports cfg_type apg or cfg, got {params.cfg_type!r}")
    branches = _Branches(run, conditions, params, n_layers)
    timesteps = scheduler.timesteps
    n = scheduler.num_inference_steps
    n_min, n_max, n_avg = int(n * params.edit_n_min), int(n * params.edit_n_max), params.edit_n_avg
    ts = np.asarray(timesteps, dtype=np.float32) / _TIME_SCALE
    x_src = np.asarray(src, dtype=np.float32)
    z_edit = x_src.copy()
    x_tar: np.ndarray | None = None
    momentum_src = guidance.MomentumBuffer()
    momentum_tar = guidance.MomentumBuffer()
    weight = np.float32(1.0 / n_avg)
    for i, t in enumerate(timesteps):
        if on_step is not None:
            on_step(i)
        if i < n_min:
            continue
        t_i = ts[i]
        dt = (ts[i + 1] if i + 1 < len(ts) else np.float32(0.0)) - t_i
        if i < n_max:
            v_delta = np.zeros_like(x_src)
            for _ in range(n_avg):
                eps = rng.standard_normal(x_src.shape, dtype=np.float32)
                z_src = (np.float32(1.0) - t_i) * x_src + t_i * eps
                z_tar = z_edit + z_src - x_src
                v = branches.velocities(
                    t, {"src": z_src, "tar": z_tar}, {"src": momentum_src, "tar": None}
                )
                v_delta = v_delta + weight * (v["tar"] - v["src"])
            z_edit = z_edit + dt * v_delta
        else:
            if x_tar is None:  # i == n_max
                eps = rng.standard_normal(x_src.shape, dtype=np.float32)
                sigma = scheduler.sigmas[i]
                x_tar = z_edit + (sigma * eps + (np.float32(1.0) - sigma) * x_src) - x_src
            v_tar = branches.velocities(t, {"tar": x_tar}, {"tar": momentum_tar})["tar"]
            x_tar = x_tar + dt * v_tar
    result = z_edit if x_tar is None else x_tar
    return result.astype(np.float32, copy=False)
