"""Flow-matching schedules and steps in torch float32, written from the upstream schedulers.

Upstream: ``acestep/schedulers/scheduling_flow_match_euler_discrete.py``,
``scheduling_flow_match_heun_discrete.py`` and ``scheduling_flow_match_pingpong.py``
(``__init__``, ``set_timesteps`` through diffusers' ``retrieve_timesteps``, ``step``). Each scheduler
is built with ``num_train_timesteps=1000, shift=3.0`` and, for audio2audio, a ``sigma_max``
(``acestep/pipeline_ace_step.py: add_latents_noise``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

NUM_TRAIN_TIMESTEPS = 1000
SHIFT = 3.0
KINDS = ("euler", "heun", "pingpong")


def _shift(sigmas: torch.Tensor) -> torch.Tensor:
    return SHIFT * sigmas / (1 + (SHIFT - 1) * sigmas)


@dataclass(frozen=True)
class Schedule:
    """What ``retrieve_timesteps(scheduler, N)`` leaves on a scheduler.

    ``timesteps`` has one entry per loop iteration (``2N - 1`` for Heun), ``sigmas`` one more.
    ``sigma_max``/``sigma_min`` are the once-shifted ends of the training range (Python floats of
    float32 values, as ``.item()`` gives them upstream).
    """

    kind: str
    num_inference_steps: int
    timesteps: torch.Tensor
    sigmas: torch.Tensor
    sigma_max: float
    sigma_min: float


def make_schedule(kind: str, num_inference_steps: int, sigma_max: float = 1.0) -> Schedule:
    """Build the scheduler of ``kind`` and run ``set_timesteps(num_inference_steps)`` on it."""
    if kind not in KINDS:
        raise ValueError(f"unknown scheduler {kind!r}")
    # __init__: the training timesteps 1 .. sigma_max*1000 (float32 linspace), shifted once.
    train = np.linspace(1.0, sigma_max * NUM_TRAIN_TIMESTEPS, NUM_TRAIN_TIMESTEPS, dtype=np.float32)
    train_sigmas = _shift(torch.from_numpy(train[::-1].copy()) / NUM_TRAIN_TIMESTEPS)
    hi, lo = train_sigmas[0].item(), train_sigmas[-1].item()
    # set_timesteps: a float64 linspace between the once-shifted ends, shifted again.
    lin = np.linspace(hi * NUM_TRAIN_TIMESTEPS, lo * NUM_TRAIN_TIMESTEPS, num_inference_steps)
    sigmas64 = SHIFT * (lin / NUM_TRAIN_TIMESTEPS) / (1 + (SHIFT - 1) * (lin / NUM_TRAIN_TIMESTEPS))
    sigmas = torch.from_numpy(sigmas64).to(torch.float32)
    timesteps = sigmas * NUM_TRAIN_TIMESTEPS
    sigmas = torch.cat([sigmas, torch.zeros(1)])
    if kind == "heun":
        timesteps = torch.cat([timesteps[:1], timesteps[1:].repeat_interleave(2)])
        sigmas = torch.cat([sigmas[:1], sigmas[1:-1].repeat_interleave(2), sigmas[-1:]])
    return Schedule(kind, num_inference_steps, timesteps, sigmas, hi, lo)


def omega_factor(omega: float) -> float:
    """``logistic_function(omega, L=0.9, U=1.1, x_0=0, k=0.1)`` of the Euler and Heun ``step``."""
    low, high = 0.9, 1.1
    return float(low + (high - low) / (1 + np.exp(-0.1 * (omega - 0.0))))


def _mean_shifted(dx: torch.Tensor, omega: float) -> torch.Tensor:
    m = dx.mean()
    return (dx - m) * omega_factor(omega) + m


@dataclass
class Stepper:
    """``scheduler.step`` for one run: the step index and Heun's saved first-order state."""

    schedule: Schedule
    omega: float
    index: int = 0
    _heun: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = field(default=None)

    def step(
        self, v: torch.Tensor, x: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Advance one loop entry; ``noise`` is the pingpong draw (ignored by the others)."""
        kind, sigmas, k = self.schedule.kind, self.schedule.sigmas, self.index
        self.index += 1
        x = x.to(torch.float32)
        if kind == "euler":
            return x + _mean_shifted((sigmas[k + 1] - sigmas[k]) * v, self.omega)
        if kind == "pingpong":
            if noise is None:
                raise ValueError("pingpong needs noise at every step")
            return (1 - sigmas[k + 1]) * (x - sigmas[k] * v) + sigmas[k + 1] * noise
        if self._heun is None:  # first order: sigma_k -> sigma_{k+1}, state saved
            sigma, sigma_next = sigmas[k], sigmas[k + 1]
            derivative = (x - (x - v * sigma)) / sigma
            dt = sigma_next - sigma
            self._heun = (derivative, dt, x)
            return x + _mean_shifted(derivative * dt, self.omega)
        previous, dt, start = self._heun  # second order at the repeated timestep
        self._heun = None
        sigma_next = sigmas[k]
        derivative = 0.5 * (previous + (x - (x - v * sigma_next)) / sigma_next)
        return start + _mean_shifted(derivative * dt, self.omega)
