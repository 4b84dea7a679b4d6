"""A stand-in ACE-Step 1.5 checkpoint for the installation tests that never export it.

It has every file of ``turbo_layout.ALLOW_PATTERNS`` with the right names; its safetensors
files hold zeros (bf16, as the hub's) with headers the plan can read, and ``silence_latent.pt``
is opaque bytes. Enough to plan, ask for consent, download and refuse, not to export: the tests
that export use the ``turbo_checkpoint`` fixture.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from lofi_daemon.model import turbo_layout

#: The tensors of each weights file: name -> shape (bf16).
TENSORS: dict[str, dict[str, list[int]]] = {
    f"{turbo_layout.DIT.name}/{turbo_layout.DIT.weights}": {
        "decoder.proj_in.weight": [64, 24],
        "encoder.text_projector.weight": [64, 32],
        "null_condition_emb": [1, 1, 64],
    },
    f"{turbo_layout.VAE.name}/{turbo_layout.VAE.weights}": {
        "decoder.conv1.weight_g": [8, 1, 1],
        "decoder.conv1.weight_v": [8, 8, 7],
    },
    f"{turbo_layout.TEXT_ENCODER.name}/{turbo_layout.TEXT_ENCODER.weights}": {
        "embed_tokens.weight": [300, 32],
        "layers.0.mlp.up_proj.weight": [64, 32],
        "norm.weight": [32],
    },
}
EMBED_FILE = f"{turbo_layout.TEXT_ENCODER.name}/{turbo_layout.TEXT_ENCODER.weights}"


def write_safetensors(path: Path, tensors: dict[str, list[int]], padding: int = 0) -> None:
    """A bf16 safetensors file of zeros; ``padding`` extra bytes go into ``__metadata__``."""
    header: dict[str, object] = {"__metadata__": {"format": "pt", "pad": "x" * padding}}
    offset = 0
    for name, shape in tensors.items():
        size = 2 * math.prod(shape)
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + bytes(offset))


def fp32_bytes() -> tuple[int, int]:
    """(fp32 bytes of every tensor, fp32 bytes of the embedding the export copies)."""
    every = sum(4 * math.prod(s) for t in TENSORS.values() for s in t.values())
    return every, 4 * math.prod(TENSORS[EMBED_FILE]["embed_tokens.weight"])


def write_turbo_checkpoint(root: Path, *, big_bytes: int = 0) -> Path:
    """The stand-in checkpoint at ``root``; ``big_bytes`` pads the text encoder's weights file
    (to interrupt its download part-way)."""
    for name in turbo_layout.ALLOW_PATTERNS:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name in TENSORS:
            write_safetensors(path, TENSORS[name], big_bytes if name == EMBED_FILE else 0)
        elif name.endswith(".json"):
            path.write_text(json.dumps({"file": name}) + "\n")
        else:
            path.write_bytes(name.encode() * 50)
    return root
