"""The ``export`` extra: which packages an installation needs, and how to install them.

The runtime never imports the exporter (``lofi_export``), so it looks the packages up with
:func:`importlib.util.find_spec`, which finds a package without importing it. The exporter's own
command line keeps the same list and hint for the case where it is run by hand; a test checks
that the two agree.
"""

from __future__ import annotations

import importlib.util
from typing import Final

#: lofi.nvim is not on PyPI: the extra installs from the plugin folder (torch pinned first, as
#: in the README's build step).
INSTALL_HINT: Final = (
    'pip install torch==2.13.0 && pip install -e ".[export]"'
    "  (in the lofi.nvim folder, in the daemon's Python environment)"
)
#: What ``lofi-export onnx`` imports, in the order the exporter reports them.
EXPORT_PACKAGES: Final = ("torch", "transformers", "diffusers", "safetensors", "onnx", "onnxscript")
#: What the hub child needs to download a checkpoint.
HUB_PACKAGE: Final = "huggingface_hub"


def missing_packages(*, download: bool) -> list[str]:
    """The missing packages of the export extra (and huggingface_hub, to download)."""
    wanted = [*EXPORT_PACKAGES, HUB_PACKAGE] if download else list(EXPORT_PACKAGES)
    return [name for name in wanted if importlib.util.find_spec(name) is None]
