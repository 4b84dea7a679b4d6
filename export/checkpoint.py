"""Open an official-layout checkpoint and check it against the modules that will read it.

Every problem ends in one :class:`CheckpointError` line naming the folder, file or key: a missing
folder or file, a corrupt or truncated safetensors file, a missing, unexpected or mis-shaped key,
or a non-float dtype. Keys present in the real checkpoint but unused at inference are tolerated and
listed in the log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lofi_daemon.model import layout

from .errors import CheckpointError
from .safetensors_io import FLOAT_DTYPES, TensorInfo, read_header

log = logging.getLogger(__name__)


@dataclass
class Component:
    """One checkpoint folder: its config.json and the header of its safetensors file."""

    layout: layout.ComponentLayout
    folder: Path
    config: dict[str, Any]
    tensors: dict[str, TensorInfo]

    @property
    def weights_path(self) -> Path:
        return self.folder / self.layout.weights

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: v.shape for k, v in self.tensors.items()}

    def dtypes(self) -> set[str]:
        return {v.dtype for v in self.tensors.values()}


def open_component(root: Path, component: layout.ComponentLayout) -> Component:
    folder = root / component.folder
    if not folder.is_dir():
        raise CheckpointError(
            f"{folder}: missing folder (expected the official layout: "
            f"{', '.join(c.folder for c in layout.COMPONENTS)})"
        )
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{config_path}: missing file")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{config_path}: not valid JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path}: expected a JSON object")
    weights = folder / component.weights
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing file")
    tensors = read_header(weights)
    for name, info in tensors.items():
        if info.dtype not in FLOAT_DTYPES:
            raise CheckpointError(
                f"{weights}: tensor {name!r} has dtype {info.dtype}; expected one of {', '.join(FLOAT_DTYPES)}"
            )
    return Component(component, folder, config, tensors)


def check_keys(
    component: Component,
    expected: dict[str, tuple[int, ...]],
    tolerated: Callable[[str], bool] = lambda key: False,
    aliases: dict[str, str] | None = None,
) -> list[str]:
    """Compare the checkpoint's keys and shapes with ``expected``; return the tolerated extras.

    ``aliases`` maps an expected key to the stored key that provides it (tied weights), and a
    ``<name>.weight`` may also be provided by a ``weight_g``/``weight_v`` pair.
    """
    aliases = aliases or {}
    stored = component.shapes()
    path = component.weights_path
    used: set[str] = set()
    for key, shape in expected.items():
        source = aliases.get(key, key)
        if source in stored:
            if tuple(stored[source]) != tuple(shape):
                raise CheckpointError(
                    f"{path}: tensor {source!r} has shape {list(stored[source])}, expected {list(shape)}"
                )
            used.add(source)
            continue
        raise CheckpointError(f"{path}: missing tensor {source!r}")
    extras = sorted(set(stored) - used)
    unexpected = [key for key in extras if not tolerated(key)]
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(f"{path}: unexpected tensor {unexpected[0]!r}{more}")
    if extras:
        log.info(
            "%s: ignoring %d tensors unused at inference: %s",
            path,
            len(extras),
            ", ".join(extras[:8]) + (" …" if len(extras) > 8 else ""),
        )
    return extras


class TensorSource:
    """Reads checkpoint tensors one at a time as float32 numpy arrays."""

    def __init__(self, component: Component, aliases: dict[str, str] | None = None) -> None:
        from safetensors import safe_open

        self.component = component
        self.aliases = aliases or {}
        try:
            self._file = safe_open(str(component.weights_path), framework="pt")
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{component.weights_path}: cannot open ({exc})") from exc

    def has(self, key: str) -> bool:
        key = self.aliases.get(key, key)
        return key in self.component.tensors or (
            key.endswith(".weight") and f"{key}_g" in self.component.tensors
        )

    def torch(self, key: str) -> Tensor:  # ``torch`` names this method in the class body
        """The tensor as float32 torch; ``x.weight`` may be folded from ``x.weight_g``/``x.weight_v``."""
        key = self.aliases.get(key, key)
        if key in self.component.tensors:
            return self._read(key)
        if key.endswith(".weight") and f"{key}_g" in self.component.tensors:
            return fold_weight_norm(self._read(f"{key}_g"), self._read(f"{key}_v"))
        raise CheckpointError(f"{self.component.weights_path}: missing tensor {key!r}")

    def numpy(self, key: str) -> np.ndarray:
        return self.torch(key).numpy()

    def _read(self, key: str) -> Tensor:
        try:
            return self._file.get_tensor(key).to(torch.float32)
        except Exception as exc:
            raise CheckpointError(
                f"{self.component.weights_path}: cannot read tensor {key!r} ({exc})"
            ) from exc


def fold_weight_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """W = g·v/‖v‖ with the norm over every axis but 0 (old-style weight_norm, dim=0)."""
    norm = v.pow(2).sum(dim=tuple(range(1, v.dim())), keepdim=True).sqrt()
    return g * v / norm
