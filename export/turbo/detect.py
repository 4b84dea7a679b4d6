"""Which ACE-Step release a checkpoint folder holds: v1 (``ace-step``) or 1.5 (``ace-step-1.5``).

``lofi-export onnx`` reads the answer to pick the exporter. The decision looks only at folder
names: the v1 layout has ``ace_step_transformer``, ``umt5-base``, ``music_dcae_f8c8`` and
``music_vocoder`` (:mod:`lofi_daemon.model.layout`); the 1.5 layout has ``acestep-v15-turbo``,
``vae`` and ``Qwen3-Embedding-0.6B`` (:mod:`lofi_daemon.model.turbo_layout`). A folder with some
of one set and none of the other is that release (the exporter then names what is missing); a
folder with none of either, or with both, is refused here.
"""

from __future__ import annotations

from pathlib import Path

from lofi_daemon.model import layout, turbo_layout
from lofi_daemon.model.backends import TURBO, V1

from ..errors import CheckpointError

V1_FOLDERS = tuple(c.folder for c in layout.COMPONENTS)
TURBO_FOLDERS = tuple(f.name for f in turbo_layout.FOLDERS)


def detect_backend(root: Path) -> str:
    """The backend name (``"ace-step"`` or ``"ace-step-1.5"``) whose layout ``root`` follows.

    Raises:
        CheckpointError: ``root`` does not exist, or matches neither layout, or both.
    """
    if not root.is_dir():
        raise CheckpointError(f"{root}: checkpoint folder does not exist")
    v1 = [name for name in V1_FOLDERS if (root / name).is_dir()]
    turbo = [name for name in TURBO_FOLDERS if (root / name).is_dir()]
    if v1 and turbo:
        raise CheckpointError(
            f"{root}: holds folders of both ACE-Step v1 ({', '.join(v1)}) and ACE-Step 1.5 "
            f"({', '.join(turbo)}); export each release from its own folder"
        )
    if turbo:
        return TURBO.name
    if v1:
        return V1.name
    raise CheckpointError(
        f"{root}: not an ACE-Step checkpoint (expected the folders of ACE-Step v1: "
        f"{', '.join(V1_FOLDERS)}; or of ACE-Step 1.5: {', '.join(TURBO_FOLDERS)})"
    )
