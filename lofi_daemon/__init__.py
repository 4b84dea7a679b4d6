"""lofi.nvim runtime: ACE-Step v1 text-to-music on ONNX Runtime, driven from numpy.

This package never imports torch. The export tool lives in ``lofi_export``.
"""

__version__ = "0.1.0"
