"""Reading and streaming-writing safetensors files without loading them whole.

The header is parsed and checked here (truncation, overlapping or out-of-range offsets, unknown
dtypes), so a damaged file fails with one clear error naming it before any tensor is touched.
Tensors are then read one at a time through safetensors' memory map.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import CheckpointError, ExportError

DTYPES: dict[str, torch.dtype] = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F64": torch.float64,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
FLOAT_DTYPES = ("F32", "F16", "BF16")
MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def read_header(path: Path) -> dict[str, TensorInfo]:
    """Parse and validate a safetensors header; raise CheckpointError naming the file."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise CheckpointError(f"{path}: file is truncated (no safetensors header)")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > MAX_HEADER_BYTES:
                raise CheckpointError(f"{path}: corrupt safetensors header (length {header_len})")
            if 8 + header_len > size:
                raise CheckpointError(
                    f"{path}: file is truncated (header needs {8 + header_len} bytes, file has {size})"
                )
            raw = handle.read(header_len)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupt safetensors header (not JSON)") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not an object)")
    header.pop("__metadata__", None)
    data_size = size - 8 - header_len
    infos: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        try:
            dtype = entry["dtype"]
            shape = tuple(int(d) for d in entry["shape"])
            begin, end = (int(o) for o in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: corrupt header entry for {name!r}") from exc
        if dtype not in DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {dtype}")
        itemsize = torch.empty((), dtype=DTYPES[dtype]).element_size()
        expected = int(np.prod(shape, dtype=np.int64)) * itemsize
        if end - begin != expected or begin < 0:
            raise CheckpointError(f"{path}: tensor {name!r} has inconsistent offsets")
        if end > data_size:
            raise CheckpointError(
                f"{path}: file is truncated (tensor {name!r} ends at byte {end} of {data_size})"
            )
        infos[name] = TensorInfo(dtype, shape, begin, end)
    return infos


Producer = Callable[[], torch.Tensor]


def write_streaming(
    path: Path,
    entries: Iterable[tuple[str, str, tuple[int, ...], Producer]],
    metadata: dict[str, str] | None = None,
) -> None:
    """Write a safetensors file tensor by tensor: (name, dtype, shape, producer) per entry.

    Only one tensor is in memory at a time. The file is written to a temporary name in the same
    folder and renamed when complete.
    """
    entries = list(entries)
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name, dtype, shape, _ in entries:
        itemsize = torch.empty((), dtype=DTYPES[dtype]).element_size()
        nbytes = int(np.prod(shape, dtype=np.int64)) * itemsize
        header[name] = {
            "dtype": dtype,
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    tmp = path.with_name(path.name + ".partial")
    try:
        with tmp.open("wb") as handle:
            handle.write(struct.pack("<Q", len(raw)))
            handle.write(raw)
            for name, dtype, shape, produce in entries:
                tensor = produce().to(DTYPES[dtype]).contiguous()
                if tuple(tensor.shape) != tuple(shape):
                    raise ValueError(f"{name}: produced shape {tuple(tensor.shape)} != {shape}")
                handle.write(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        os.replace(tmp, path)
    except OSError as exc:
        raise ExportError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    finally:
        tmp.unlink(missing_ok=True)
