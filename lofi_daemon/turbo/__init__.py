"""ACE-Step 1.5 turbo: a numpy + ONNX Runtime pipeline over the exported model directory.

``TurboEngine`` is imported on first use, so importing this package costs nothing (no
onnxruntime); see ``docs/ace-step-1.5.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lofi_daemon.turbo.engine import TurboEngine

__all__ = ["TurboEngine"]


def __getattr__(name: str) -> Any:
    if name == "TurboEngine":
        from lofi_daemon.turbo.engine import TurboEngine

        return TurboEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
