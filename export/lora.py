"""Read a PEFT LoRA for the ACE-Step transformer and merge it into the checkpoint's weights.

The file is the ``pytorch_lora_weights.safetensors`` that ``acestep/pipeline_ace_step.py:
ACEStepPipeline.load_lora`` hands to diffusers' ``load_lora_adapter(..., prefix=None)``: PEFT keys
``<module>.lora_A.weight`` [r, in] and ``<module>.lora_B.weight`` [out, r], where ``<module>`` is a
Linear of the transformer named exactly as in the checkpoint (``prefix=None`` strips nothing).
Each such Linear becomes ``W + weight·scaling·(B @ A)`` (peft ``tuners/lora/layer.py: Linear``).

``scaling`` follows current diffusers and peft: with the ``lora_adapter_metadata`` header entry
that diffusers' ``save_lora_adapter`` writes (the LoraConfig as JSON), each module gets its
``r``/``lora_alpha`` (``rank_pattern``/``alpha_pattern`` first, matched as peft's
``utils/other.py: get_pattern_key``) and ``alpha/√r`` with ``use_rslora``, else ``alpha/r``.
Without metadata diffusers sets ``lora_alpha = r`` for every module (``utils/peft_utils.py:
get_peft_kwargs``), so the scaling is 1. docs/lora.md explains where upstream's own call differs.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from lofi_daemon.model.variants import LORA_FILE

from .errors import CheckpointError, ExportError
from .safetensors_io import read_header

METADATA_KEY: Final = "lora_adapter_metadata"
A_SUFFIX: Final = ".lora_A.weight"
B_SUFFIX: Final = ".lora_B.weight"
#: First module-path components of the weights the condition encoder graph reads
#: (``export/modules/transformer.py: ACEStepTransformer.encode``); all others are the denoiser's.
ENCODER_MODULES: Final = frozenset(
    {"speaker_embedder", "genre_embedder", "lyric_embs", "lyric_encoder", "lyric_proj"}
)
SHOWN: Final = 3


def _shown(names: list[str]) -> str:
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


@dataclass(frozen=True)
class ModuleDelta:
    """One adapted Linear: its LoRA factors and the scaling the merge applies."""

    module: str
    a: np.ndarray  # [r, in] float32
    b: np.ndarray  # [out, r] float32
    rank: int
    alpha: float | None  # None without metadata
    scaling: float

    def delta(self, weight: float) -> np.ndarray:
        """``weight·scaling·(B @ A)`` in float64, shaped like the Linear's weight [out, in]."""
        return (weight * self.scaling) * (self.b.astype(np.float64) @ self.a.astype(np.float64))


@dataclass(frozen=True)
class Lora:
    """A validated LoRA file, ready to merge into the transformer weights with ``weight``."""

    path: Path
    source: str
    sha256: str
    weight: float
    has_metadata: bool
    rslora: bool
    modules: dict[str, ModuleDelta] = field(default_factory=dict)  # by checkpoint weight key

    def merged(self, key: str, base: np.ndarray) -> np.ndarray:
        """The checkpoint tensor ``key`` with this LoRA merged (unchanged if it has no LoRA)."""
        module = self.modules.get(key)
        if module is None:
            return base
        return (base.astype(np.float64) + module.delta(self.weight)).astype(base.dtype)

    def graphs(self) -> tuple[str, ...]:
        """The graphs whose weights this LoRA changes, in export order."""
        first = {key.split(".", 1)[0] for key in self.modules}
        names = []
        if first & ENCODER_MODULES:
            names.append("condition_encoder")
        if first - ENCODER_MODULES:
            names.append("denoiser")
        return tuple(names)

    def record(self) -> dict[str, Any]:
        """The manifest's ``lora`` entry."""
        scalings = sorted({m.scaling for m in self.modules.values()})
        ranks = Counter(m.rank for m in self.modules.values())
        alphas = {m.alpha for m in self.modules.values()}
        entry: dict[str, Any] = {
            "source": self.source,
            "file": LORA_FILE,
            "sha256": self.sha256,
            "weight": self.weight,
            "scaling": scalings[0] if len(scalings) == 1 else None,
            "rank": ranks.most_common(1)[0][0],
            "alpha": next(iter(alphas)) if len(alphas) == 1 else None,
            "rslora": self.rslora,
            "metadata": self.has_metadata,
            "matched_modules": len(self.modules),
            "graphs": list(self.graphs()),
        }
        if len(scalings) > 1:
            entry["scaling_by_module"] = {m.module: m.scaling for m in self.modules.values()}
        return entry

    def version_digest(self) -> str:
        """What distinguishes the merged weights from the base's: file, weight and scalings."""
        scalings = {m.module: m.scaling for m in self.modules.values()}
        payload = json.dumps([self.sha256, self.weight, scalings], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class LoraRequest:
    """What ``lofi-export onnx --lora`` asks for.

    Attributes:
        path: the LoRA folder (holding ``pytorch_lora_weights.safetensors``) or file.
        weight: the adapter weight (upstream ``lora_weight``).
        source: how the manifest names the LoRA (default: ``path``), e.g. a hub repo id.
        base: a model directory exported from the same checkpoint: only the graphs the LoRA
            changes are exported, the other files are hard-linked from it.
    """

    path: Path
    weight: float = 1.0
    source: str | None = None
    base: Path | None = None

    def read(self, checkpoint: dict[str, tuple[int, ...]]) -> Lora:
        return read_lora(self.path, self.weight, checkpoint, source=self.source)


def lora_file(path: Path) -> Path:
    """``path`` itself when it is a file, else ``path/pytorch_lora_weights.safetensors``."""
    if path.is_file():
        return path
    if path.is_dir():
        file = path / LORA_FILE
        if file.is_file():
            return file
        raise ExportError(f"{path}: no {LORA_FILE} in this folder")
    raise ExportError(f"{path}: LoRA file or folder does not exist")


def read_metadata(path: Path) -> dict[str, Any] | None:
    """The ``lora_adapter_metadata`` JSON of the safetensors header, or None when absent."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as handle:
        header = handle.metadata() or {}
    raw = header.get(METADATA_KEY)
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path}: {METADATA_KEY} in the header is not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ExportError(f"{path}: {METADATA_KEY} in the header is not a JSON object")
    return data


def _pattern_value(patterns: Any, module: str, default: Any) -> Any:
    """``rank_pattern``/``alpha_pattern`` lookup as peft's ``get_pattern_key`` matches keys."""
    if not isinstance(patterns, dict):
        return default
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def _number(path: Path, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ExportError(f"{path}: {METADATA_KEY} has {name}={value!r}; expected a number > 0")
    return float(value)


def module_scaling(
    path: Path, module: str, rank: int, metadata: dict[str, Any] | None
) -> tuple[float | None, float]:
    """``(alpha, scaling)`` of one module (alpha None and scaling 1 without metadata)."""
    if metadata is None:
        return None, 1.0
    r = _number(path, "r", _pattern_value(metadata.get("rank_pattern"), module, metadata.get("r")))
    if int(r) != rank:
        raise ExportError(f"{path}: {module} has rank {rank} but {METADATA_KEY} says r={int(r)}")
    alpha = _number(
        path,
        "lora_alpha",
        _pattern_value(metadata.get("alpha_pattern"), module, metadata.get("lora_alpha")),
    )
    if metadata.get("use_rslora"):
        return alpha, alpha / math.sqrt(r)
    return alpha, alpha / r


def _pairs(path: Path, keys: list[str]) -> dict[str, tuple[str, str]]:
    """Module → (A key, B key); any other key, or a half pair, is an error."""
    unsupported = [k for k in keys if not k.endswith((A_SUFFIX, B_SUFFIX))]
    if unsupported:
        raise ExportError(
            f"{path}: unsupported LoRA key(s) {_shown(unsupported)}; only PEFT LoRA on Linear "
            f"layers is supported (<module>{A_SUFFIX} and <module>{B_SUFFIX})"
        )
    modules = sorted({k.removesuffix(A_SUFFIX).removesuffix(B_SUFFIX) for k in keys})
    single = [m for m in modules if m + A_SUFFIX not in keys or m + B_SUFFIX not in keys]
    if single:
        raise ExportError(f"{path}: lora_A or lora_B missing for {_shown(single)}")
    return {m: (m + A_SUFFIX, m + B_SUFFIX) for m in modules}


def _check_matches(path: Path, modules: list[str], checkpoint: dict[str, tuple[int, ...]]) -> None:
    unmatched = [m for m in modules if f"{m}.weight" not in checkpoint]
    if not unmatched:
        return
    hint = ""
    prefixes = {m.split(".", 1)[0] for m in unmatched}
    if prefixes & {"transformer", "base_model", "unet"}:
        hint = (
            " (the keys carry a prefix; ACE-Step loads LoRAs with prefix=None, so keys must be"
            " module paths of the transformer such as transformer_blocks.0.attn.to_q)"
        )
    if len(unmatched) == len(modules):
        raise ExportError(
            f"{path}: no LoRA module matches the ACE-Step transformer "
            f"(e.g. {_shown(unmatched)}){hint}"
        )
    raise ExportError(
        f"{path}: {len(unmatched)} of {len(modules)} LoRA modules match nothing in the "
        f"ACE-Step transformer: {_shown(unmatched)}{hint}"
    )


def read_lora(
    path: Path,
    weight: float,
    checkpoint: dict[str, tuple[int, ...]],
    *,
    source: str | None = None,
) -> Lora:
    """Read and validate the LoRA at ``path`` (file or folder) against the transformer's keys.

    ``checkpoint`` maps the transformer checkpoint's keys to their shapes. Every LoRA module must
    name a 2-D ``<module>.weight`` there, with ``A`` [r, in] and ``B`` [out, r] fitting it.

    Raises:
        ExportError: one line naming the file and what is wrong with it.
    """
    if not math.isfinite(weight):
        raise ExportError(f"--lora-weight must be a finite number, not {weight}")
    file = lora_file(path)
    try:
        header = read_header(file)
    except CheckpointError as exc:
        raise ExportError(f"not a LoRA safetensors file: {exc}") from exc
    if not header:
        raise ExportError(f"{file}: the LoRA file holds no tensors")
    pairs = _pairs(file, sorted(header))
    _check_matches(file, list(pairs), checkpoint)
    metadata = read_metadata(file)
    from safetensors import safe_open

    modules: dict[str, ModuleDelta] = {}
    with safe_open(str(file), framework="pt") as handle:
        for module, (a_key, b_key) in pairs.items():
            target = checkpoint[f"{module}.weight"]
            a_shape, b_shape = header[a_key].shape, header[b_key].shape
            if (
                len(target) != 2
                or len(a_shape) != 2
                or len(b_shape) != 2
                or a_shape[1] != target[1]
                or b_shape[0] != target[0]
                or a_shape[0] != b_shape[1]
            ):
                raise ExportError(
                    f"{file}: {module}: lora_A {list(a_shape)} and lora_B {list(b_shape)} do not "
                    f"fit the weight {list(target)} (expected [r, {target[-1]}] and "
                    f"[{target[0]}, r] on a Linear layer)"
                )
            a = handle.get_tensor(a_key).float().numpy()
            b = handle.get_tensor(b_key).float().numpy()
            if not (np.isfinite(a).all() and np.isfinite(b).all()):
                raise ExportError(f"{file}: {module}: the LoRA holds NaN or infinite values")
            alpha, scaling = module_scaling(file, module, a_shape[0], metadata)
            modules[f"{module}.weight"] = ModuleDelta(module, a, b, a_shape[0], alpha, scaling)
    from lofi_daemon.model.manifest import sha256_file

    return Lora(
        path=file,
        source=source or str(path),
        sha256=sha256_file(file),
        weight=float(weight),
        has_metadata=metadata is not None,
        rslora=bool(metadata and metadata.get("use_rslora")),
        modules=modules,
    )
