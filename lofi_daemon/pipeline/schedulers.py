"""Flow-matching samplers for ACE-Step v1 in numpy (Euler, Heun, PingPong).

The schedule and the step rules follow the reference schedulers in ``acestep/schedulers``
(see ``docs`` section 8 of the ACE-Step v1 specification):

* The schedule is shifted twice: once when the reference scheduler is built (over the 1000
  training timesteps) and once more in ``set_timesteps``. The last non-zero sigma is therefore
  0.008928572 (timestep 8.928572), not 0.002994.
* Euler and Heun apply the "omega" mean-shift to each update ``dx``: the deviation from the
  scalar mean of ``dx`` (taken over the whole batch tensor) is scaled by
  ``omega_factor(omega)``. This is the only place where batch elements are coupled.
* PingPong re-noises after every step with noise the caller supplies, and ignores omega.

The state is float32 throughout, as in the float32 reference. The timestep linspace and the
omega factor are computed in float64, as the reference does.

Every scheduler object drives exactly one generation: build a fresh one per run.
"""

from __future__ import annotations

import logging
import math
from typing import ClassVar, Final

import numpy as np

log = logging.getLogger(__name__)

NUM_TRAIN_TIMESTEPS: Final = 1000
DEFAULT_SHIFT: Final = 3.0
SCHEDULER_NAMES: Final = ("euler", "heun", "pingpong")

# Logistic map of the user's omega onto the mean-shift factor: lower bound, upper bound and
# steepness of the reference's ``logistic_function(omega, L=0.9, U=1.1, k=0.1)``.
_OMEGA_LOW: Final = 0.9
_OMEGA_HIGH: Final = 1.1
_OMEGA_STEEPNESS: Final = 0.1


def _shift_sigma(sigma: np.ndarray | np.floating, shift: float) -> np.ndarray | np.floating:
    """Apply the timestep shift ``s * x / (1 + (s - 1) * x)`` in the dtype of ``sigma``."""
    dtype = np.asarray(sigma).dtype
    s = dtype.type(shift)
    return s * sigma / (dtype.type(1.0) + (s - dtype.type(1.0)) * sigma)


def shifted_sigma_range(
    sigma_max: float = 1.0,
    shift: float = DEFAULT_SHIFT,
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
) -> tuple[float, float]:
    """Return the once-shifted ``(sigma_max, sigma_min)`` of the reference scheduler.

    The reference builds the training timesteps ``1 .. sigma_max * 1000`` in float32, divides
    by 1000 and shifts them once, all in float32; only the two ends are used later. With
    ``sigma_max=1`` this gives ``(1.0, 0.002994012...)``. audio2audio noises its reference
    latent with this once-shifted ``sigma_max`` (0.75 at strength 0.5).

    Args:
        sigma_max: the upper end of the training range, ``1 - ref_audio_strength`` for
            audio2audio and 1.0 otherwise.
        shift: the timestep shift (3.0 for ACE-Step).
        num_train_timesteps: the number of training timesteps (1000).

    Returns:
        ``(sigma_max, sigma_min)`` as Python floats holding float32 values.
    """
    f32 = np.float32
    train_t = np.array([sigma_max * num_train_timesteps, 1.0], dtype=f32)
    sigmas = np.asarray(_shift_sigma(train_t / f32(num_train_timesteps), shift))
    return float(sigmas[0]), float(sigmas[1])


def flow_match_sigmas(
    num_steps: int,
    shift: float = DEFAULT_SHIFT,
    sigma_max: float = 1.0,
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
) -> np.ndarray:
    """Return the ``num_steps`` double-shifted sigmas of the sampling schedule (no final 0).

    The linspace between the once-shifted ends runs in float64, the second shift too; the
    result is rounded to float32. The timesteps fed to the transformer are these values times
    ``num_train_timesteps``, computed in float32.

    Args:
        num_steps: number of inference steps N (at least 1).
        shift: the timestep shift (3.0 for ACE-Step).
        sigma_max: see :func:`shifted_sigma_range`.
        num_train_timesteps: the number of training timesteps (1000).

    Returns:
        float32 array of shape ``[N]``, decreasing from the twice-shifted ``sigma_max``.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    hi, lo = shifted_sigma_range(sigma_max, shift, num_train_timesteps)
    t = np.linspace(hi * num_train_timesteps, lo * num_train_timesteps, num_steps)
    sigmas = _shift_sigma(t / num_train_timesteps, shift)
    return np.asarray(sigmas, dtype=np.float32)


def omega_factor(omega: float) -> float:
    """Map the user's omega ("granularity scale") to the mean-shift factor, in float64.

    ``0.9 + 0.2 * sigmoid(0.1 * omega)``: 0 gives 1.0 (plain steps), 10 gives 1.0462117.
    """
    span = _OMEGA_HIGH - _OMEGA_LOW
    # Cap the exponent so that very negative omegas give the lower bound instead of overflowing.
    exponent = min(-_OMEGA_STEEPNESS * omega, 700.0)
    return float(_OMEGA_LOW + span / (1.0 + math.exp(exponent)))


def _mean_shift(dx: np.ndarray, omega: float) -> np.ndarray:
    """Scale ``dx`` about its scalar mean (over the whole tensor) by ``omega_factor(omega)``.

    The factor is applied as a float32 scalar, as the reference multiplies a float32 tensor
    by it. The mean is accumulated in float64 and rounded to float32.
    """
    w = np.float32(omega_factor(omega))
    m = np.float32(dx.mean(dtype=np.float64))
    return (dx - m) * w + m


def _as_f32(name: str, a: np.ndarray) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float32)
    if arr.ndim == 0:
        raise ValueError(f"{name} must be an array, got a scalar")
    return arr


class FlowMatchScheduler:
    """Base class: the schedule, the step counter and the input checks.

    Attributes:
        name: the scheduler's name as accepted by :func:`make_scheduler`.
        timesteps: float32 timesteps the sampling loop walks (``sigma * 1000``), one network
            evaluation per entry.
        sigmas: float32 sigmas used by :meth:`step`, ending with 0.
        num_inference_steps: N, the requested number of steps; the guidance interval is
            computed from it, also for Heun (whose loop has ``2N - 1`` entries).
        needs_noise: whether :meth:`step` requires ``noise``.
        sigma_max: the once-shifted upper end (see :func:`shifted_sigma_range`).
        sigma_min: the once-shifted lower end.
    """

    name: ClassVar[str] = ""
    needs_noise: ClassVar[bool] = False

    def __init__(
        self,
        num_steps: int,
        shift: float = DEFAULT_SHIFT,
        sigma_max: float = 1.0,
        num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
    ) -> None:
        base = flow_match_sigmas(num_steps, shift, sigma_max, num_train_timesteps)
        self.num_inference_steps: int = num_steps
        self.sigma_max, self.sigma_min = shifted_sigma_range(sigma_max, shift, num_train_timesteps)
        self.timesteps, self.sigmas = self._build_schedule(base, np.float32(num_train_timesteps))
        self._step_index = 0

    @staticmethod
    def _build_schedule(base: np.ndarray, scale: np.float32) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(timesteps, sigmas)`` from the N base sigmas; one timestep per step."""
        sigmas = np.concatenate([base, np.zeros(1, dtype=np.float32)])
        return base * scale, sigmas

    @property
    def step_index(self) -> int:
        """Index into :attr:`timesteps` of the next call to :meth:`step`."""
        return self._step_index

    @property
    def finished(self) -> bool:
        """True once every entry of :attr:`timesteps` has been stepped."""
        return self._step_index >= len(self.timesteps)

    def step(
        self,
        model_output: np.ndarray,
        sample: np.ndarray,
        *,
        omega: float = 0.0,
        noise: np.ndarray | None = None,
    ) -> np.ndarray:
        """Advance one entry of :attr:`timesteps` and return the new float32 sample.

        Args:
            model_output: the (guided) velocity predicted at the current timestep.
            sample: the current latent, same shape as ``model_output``.
            omega: the user's omega; mapped through :func:`omega_factor` (Euler and Heun).
            noise: float32 standard normal noise, same shape as ``sample``; required when
                :attr:`needs_noise` is True, ignored otherwise.

        Raises:
            RuntimeError: every step of the schedule was already taken.
            ValueError: shapes differ, or required noise is missing.
        """
        if self.finished:
            raise RuntimeError(
                f"{self.name} scheduler already took all {len(self.timesteps)} steps; "
                "build a new scheduler for each generation"
            )
        v = _as_f32("model_output", model_output)
        x = _as_f32("sample", sample)
        if v.shape != x.shape:
            raise ValueError(f"model_output shape {v.shape} != sample shape {x.shape}")
        out = self._step(v, x, omega, noise)
        self._step_index += 1
        return out

    def _step(
        self, v: np.ndarray, x: np.ndarray, omega: float, noise: np.ndarray | None
    ) -> np.ndarray:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.timesteps)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_inference_steps={self.num_inference_steps}, "
            f"step_index={self._step_index}/{len(self.timesteps)})"
        )


class EulerScheduler(FlowMatchScheduler):
    """First-order flow-matching Euler with the omega mean-shift (spec section 8.3)."""

    name: ClassVar[str] = "euler"

    def _step(
        self, v: np.ndarray, x: np.ndarray, omega: float, noise: np.ndarray | None
    ) -> np.ndarray:
        k = self._step_index
        dx = (self.sigmas[k + 1] - self.sigmas[k]) * v
        return x + _mean_shift(dx, omega)


class HeunScheduler(FlowMatchScheduler):
    """Second-order Heun (spec section 8.4): ``2N - 1`` evaluations for N steps.

    Entries alternate between a first-order (Euler predictor) call and a second-order
    (corrector) call at the repeated timestep. The last entry (to sigma 0) is first order.
    The corrector restarts from the sample saved by the predictor and applies the mean-shift
    to the averaged derivative times the saved ``dt``.
    """

    name: ClassVar[str] = "heun"

    def __init__(
        self,
        num_steps: int,
        shift: float = DEFAULT_SHIFT,
        sigma_max: float = 1.0,
        num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
    ) -> None:
        super().__init__(num_steps, shift, sigma_max, num_train_timesteps)
        self._derivative: np.ndarray | None = None
        self._dt: np.float32 | None = None
        self._saved_sample: np.ndarray | None = None

    @staticmethod
    def _build_schedule(base: np.ndarray, scale: np.float32) -> tuple[np.ndarray, np.ndarray]:
        """Repeat every timestep after the first: ``[t0, t1, t1, ..., tN-1, tN-1]``.

        Sigmas become ``[s0, s1, s1, ..., sN-1, sN-1, 0]`` (length 2N).
        """
        t = base * scale
        timesteps = np.concatenate([t[:1], np.repeat(t[1:], 2)])
        sigmas = np.concatenate([base[:1], np.repeat(base[1:], 2), np.zeros(1, np.float32)])
        return timesteps, sigmas

    @property
    def in_first_order(self) -> bool:
        """True when the next call is a predictor (first-order) call."""
        return self._dt is None

    def _step(
        self, v: np.ndarray, x: np.ndarray, omega: float, noise: np.ndarray | None
    ) -> np.ndarray:
        k = self._step_index
        if self._dt is None:
            sigma, sigma_next = self.sigmas[k], self.sigmas[k + 1]
            # The reference goes through the x0 estimate; keep its float32 rounding.
            denoised = x - v * sigma
            derivative = (x - denoised) / sigma
            dt = sigma_next - sigma
            self._derivative, self._dt, self._saved_sample = derivative, dt, x
            return x + _mean_shift(derivative * dt, omega)

        sigma_next = self.sigmas[k]
        denoised = x - v * sigma_next
        derivative = (x - denoised) / sigma_next
        assert self._derivative is not None and self._saved_sample is not None
        mean_derivative = np.float32(0.5) * (self._derivative + derivative)
        dt, start = self._dt, self._saved_sample
        self._derivative, self._dt, self._saved_sample = None, None, None
        return start + _mean_shift(mean_derivative * dt, omega)


class PingPongScheduler(FlowMatchScheduler):
    """Stochastic "ping-pong" sampler (spec section 8.5); omega is ignored.

    Each step predicts ``x0 = x - sigma * v`` and re-noises it to the next sigma with the
    caller's noise: ``(1 - sigma_next) * x0 + sigma_next * noise``. The last step returns x0.
    """

    name: ClassVar[str] = "pingpong"
    needs_noise: ClassVar[bool] = True

    def _step(
        self, v: np.ndarray, x: np.ndarray, omega: float, noise: np.ndarray | None
    ) -> np.ndarray:
        if noise is None:
            raise ValueError("the pingpong scheduler needs `noise` (float32 N(0,1)) at every step")
        eps = _as_f32("noise", noise)
        if eps.shape != x.shape:
            raise ValueError(f"noise shape {eps.shape} != sample shape {x.shape}")
        k = self._step_index
        sigma, sigma_next = self.sigmas[k], self.sigmas[k + 1]
        x0 = x - sigma * v
        return (np.float32(1.0) - sigma_next) * x0 + sigma_next * eps


_SCHEDULERS: Final[dict[str, type[FlowMatchScheduler]]] = {
    cls.name: cls for cls in (EulerScheduler, HeunScheduler, PingPongScheduler)
}


def make_scheduler(
    name: str, num_steps: int, shift: float = DEFAULT_SHIFT, *, sigma_max: float = 1.0
) -> FlowMatchScheduler:
    """Build a fresh single-use scheduler.

    Args:
        name: ``"euler"``, ``"heun"`` or ``"pingpong"``.
        num_steps: the number of inference steps N (at least 1).
        shift: the timestep shift (3.0 for ACE-Step).
        sigma_max: ``1 - ref_audio_strength`` for audio2audio, else 1.0.

    Raises:
        ValueError: unknown name or ``num_steps < 1``.
    """
    try:
        cls = _SCHEDULERS[name]
    except KeyError:
        raise ValueError(
            f"unknown scheduler {name!r}; expected one of {', '.join(SCHEDULER_NAMES)}"
        ) from None
    scheduler = cls(num_steps, shift, sigma_max)
    log.debug(
        "%s scheduler: N=%d, %d evaluations, t0=%.6f",
        name,
        num_steps,
        len(scheduler.timesteps),
        float(scheduler.timesteps[0]),
    )
    return scheduler
