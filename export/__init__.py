"""lofi-export: turn an ACE-Step v1 checkpoint into ONNX graphs plus a manifest.

This is the only part of lofi.nvim that imports torch, transformers, diffusers, safetensors and onnx.
It is installed as the ``lofi_export`` package (from the ``export/`` folder) with the ``export`` extra.
"""
