"""Continuity of a join between two audio files, measured against what happens inside them.

The radio's acceptance criterion: at the boundary of two consecutive segment files, the
sample-to-sample jump and the short-window RMS change are within the range seen inside the
segments. Two statistics, each taken per channel and maximised over channels, on ``[N, C]``
(or ``[N]``) float audio:

* **jump**: ``|x[i+1] - x[i]|``; at the boundary, ``|b[0] - a[-1]|``.
* **rms_change**: ``|rms(x[p : p+w]) - rms(x[p-w : p])|``, the level change between the ``w``
  samples before and after position ``p``; at the boundary ``p`` is where ``b`` starts in
  ``a ++ b``.

:func:`inside_range` gives the maximum of each over every position of one file;
:func:`boundary_metrics` gives their values at the join; :func:`join_problems` compares them
(an empty list means the join is continuous). Import as ``from radio.continuity import ...``
(``tests/`` is on the path).
"""

from __future__ import annotations

import numpy as np

WINDOW = 480
"""10 ms at 48 kHz."""


def _as_2d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[:, None] if x.ndim == 1 else x


def _window_rms(x: np.ndarray, window: int) -> np.ndarray:
    """RMS of every ``window``-sample run: row ``p`` covers ``x[p : p+window]``."""
    power = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x * x, axis=0)])
    sums = power[window:] - power[:-window]
    return np.sqrt(np.maximum(sums, 0.0) / window)


def inside_range(x: np.ndarray, window: int = WINDOW) -> dict[str, float]:
    """The largest jump and RMS change at any position inside ``x`` (which needs 2·window
    samples or more)."""
    x = _as_2d(x)
    if x.shape[0] < 2 * window:
        raise ValueError(f"need at least {2 * window} samples, got {x.shape[0]}")
    rms = _window_rms(x, window)
    change = np.abs(rms[window:] - rms[:-window])  # after p vs before p, for every p
    return {
        "jump": float(np.max(np.abs(np.diff(x, axis=0)))),
        "rms_change": float(np.max(change)),
    }


def boundary_metrics(a: np.ndarray, b: np.ndarray, window: int = WINDOW) -> dict[str, float]:
    """The jump and RMS change where ``b`` follows ``a`` (each needs ``window`` samples)."""
    a, b = _as_2d(a), _as_2d(b)
    if a.shape[0] < window or b.shape[0] < window:
        raise ValueError(f"both sides need at least {window} samples")
    before = np.sqrt(np.mean(a[-window:] ** 2, axis=0))
    after = np.sqrt(np.mean(b[:window] ** 2, axis=0))
    return {
        "jump": float(np.max(np.abs(b[0] - a[-1]))),
        "rms_change": float(np.max(np.abs(after - before))),
    }


def join_problems(
    a: np.ndarray,
    b: np.ndarray,
    window: int = WINDOW,
    *,
    inside: dict[str, float] | None = None,
) -> list[str]:
    """What makes the join ``a ++ b`` discontinuous: each statistic at the boundary that exceeds
    its range inside ``a`` and ``b`` (or the given ``inside`` range). Empty when continuous."""
    if inside is None:
        ranges = [inside_range(a, window), inside_range(b, window)]
        inside = {key: max(r[key] for r in ranges) for key in ranges[0]}
    at = boundary_metrics(a, b, window)
    return [
        f"{key} at the boundary {at[key]:.6g} > inside range {inside[key]:.6g}"
        for key in at
        if at[key] > inside[key]
    ]
