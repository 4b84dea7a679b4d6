"""Turbo's 8-step Euler sampler over a fixed timestep table.

Upstream ``modeling_acestep_v15_turbo.py: AceStepConditionGenerationModel.generate_audio`` (ODE
path): ``t_schedule = SHIFT_TIMESTEPS[shift]``; at each step ``v = decoder(x, t)`` and
``x ← x − v·(t − t_next)``; the last step is ``x0 = x − v·t`` (``get_x0_from_noise``), i.e. Euler to
t = 0. In fp32 the ``t`` values are the float32 table entries and ``dt`` is their difference,
rounded to float32 when it multiplies the velocity, as upstream's ``dt * torch.ones(dtype)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model.turbo_layout import SHIFT_TIMESTEPS

#: ``velocity(x [1,T,C], t)`` → ``v [1,T,C]``.
VelocityFn = Callable[[np.ndarray, float], np.ndarray]


def timesteps(shift: int) -> tuple[float, ...]:
    """The 8 timesteps of ``shift`` (1, 2 or 3) as float32 values (the terminal 0 is implicit)."""
    if shift not in SHIFT_TIMESTEPS or isinstance(shift, bool):
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"shift must be one of {', '.join(map(str, SHIFT_TIMESTEPS))}, got {shift!r}",
        )
    return tuple(float(np.float32(t)) for t in SHIFT_TIMESTEPS[shift])


def euler(
    x: np.ndarray,
    ts: tuple[float, ...],
    velocity: VelocityFn,
    before_step: Callable[[int], None] | None = None,
    after_step: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Integrate from ``ts[0]`` to 0: one velocity evaluation per entry of ``ts``.

    ``before_step(i)`` runs before step ``i`` (it may raise to cancel), ``after_step(i)`` after it.
    """
    x = np.asarray(x, dtype=np.float32)
    for i, t in enumerate(ts):
        if before_step is not None:
            before_step(i)
        t_next = ts[i + 1] if i + 1 < len(ts) else 0.0
        v = velocity(x, t)
        x = (x - v * np.float32(t - t_next)).astype(np.float32, copy=False)
        if after_step is not None:
            after_step(i)
    return x


def pad_even(x: np.ndarray, axis: int = 1) -> np.ndarray:
    """``x`` with zeros appended along ``axis`` up to an even length (the DiT patches pairs of
    frames; upstream ``AceStepDiTModel.forward`` pads the same way and crops the output back)."""
    extra = x.shape[axis] % 2
    if not extra:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, extra)
    return np.pad(x, widths)


def dit_velocity(
    run: Callable[[dict[str, np.ndarray]], np.ndarray],
    encoder_states: np.ndarray,
    context: np.ndarray,
) -> VelocityFn:
    """The velocity function of the DiT graph for one generation.

    ``context`` is ``[1, T, 2C]``; odd ``T`` is zero-padded to even (the state at each step, the
    context once) and the velocity cropped back to ``T`` frames.
    """
    frames = context.shape[1]
    padded_context = np.ascontiguousarray(pad_even(context), dtype=np.float32)
    states = np.ascontiguousarray(encoder_states, dtype=np.float32)

    def velocity(x: np.ndarray, t: float) -> np.ndarray:
        v = run(
            {
                "hidden_states": np.ascontiguousarray(pad_even(x), dtype=np.float32),
                "timestep": np.asarray([t], dtype=np.float32),
                "encoder_hidden_states": states,
                "context_latents": padded_context,
            }
        )
        return np.asarray(v[:, :frames], dtype=np.float32)

    return velocity
