"""Ways to damage a model file in tests (imported by the engine test modules)."""

from __future__ import annotations

from pathlib import Path


def corrupt_keep_size(path: Path) -> None:
    """Overwrite the start of the file but keep its size, so only ONNX Runtime can notice."""
    data = bytearray(path.read_bytes())
    data[:4096] = b"\xff" * 4096
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    """Cut the file in half (the manifest's size check notices)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
