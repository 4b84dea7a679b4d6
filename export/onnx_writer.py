"""Export one module to ONNX without ever materialising its weights twice.

The module is built on the meta device and traced with the dynamo exporter (``optimize=False``:
the onnxscript optimizer folds away the ``+ 1e-15`` in the denominator of the ReLU linear
attention, ``acestep/models/customer_attention_processor.py: CustomLiteLAProcessor2_0``, so rows
with a zero denominator turn into NaN). The graph is saved
without initializers; then every initializer the graph uses is read from the checkpoint, one
tensor at a time, converted to float32 and appended either inline (small graphs) or to a single
external-data file (graphs over the threshold, and always past protobuf's 2 GB limit).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import onnx
import torch
from onnx import TensorProto, numpy_helper

from .errors import ExportError

log = logging.getLogger(__name__)

OPSET = 18
INLINE_LIMIT_BYTES = 1 << 30  # graphs with more initializer bytes than this use external data
PROTOBUF_LIMIT_BYTES = (2 << 30) - (64 << 20)


@dataclass(frozen=True)
class IOSpec:
    name: str
    dtype: str
    dims: tuple[str | int, ...]


@dataclass(frozen=True)
class ExportedGraph:
    name: str
    path: Path
    external_data: Path | None
    inputs: tuple[IOSpec, ...]
    outputs: tuple[IOSpec, ...]
    initializer_bytes: int


_ONNX_DTYPE_NAMES: dict[int, str] = {
    TensorProto.FLOAT: "float32",
    TensorProto.INT64: "int64",
    TensorProto.FLOAT16: "float16",
    TensorProto.INT32: "int32",
    TensorProto.BOOL: "bool",
}


def _value_spec(value: onnx.ValueInfoProto) -> IOSpec:
    tensor_type = value.type.tensor_type
    dims: list[str | int] = []
    for dim in tensor_type.shape.dim:
        dims.append(dim.dim_param if dim.dim_param else int(dim.dim_value))
    return IOSpec(
        value.name,
        _ONNX_DTYPE_NAMES.get(tensor_type.elem_type, str(tensor_type.elem_type)),
        tuple(dims),
    )


WeightLookup = Callable[[str, tuple[int, ...]], np.ndarray]


def export_graph(
    module: torch.nn.Module,
    example_args: tuple[Any, ...],
    *,
    path: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_shapes: tuple[Any, ...],
    weights: WeightLookup,
    inline_limit: int = INLINE_LIMIT_BYTES,
    output_dims: dict[str, dict[int, str]] | None = None,
) -> ExportedGraph:
    """Trace ``module`` (meta weights) and write ``path`` with weights from ``weights(name, shape)``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                module,
                example_args,
                dynamo=True,
                optimize=False,
                opset_version=OPSET,
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=dynamic_shapes,
                verbose=False,
            )
        except Exception as exc:
            raise ExportError(f"{path.name}: torch.onnx.export failed: {exc}") from exc
    if program is None:  # only the legacy (dynamo=False) exporter returns nothing
        raise ExportError(f"{path.name}: torch.onnx.export returned no ONNX program")
    graph_ir = program.model.graph
    # onnx_ir Values with static shapes; the folded transposes are added as _Transposed below.
    initializer_values: dict[str, Any] = dict(graph_ir.initializers)
    skeleton = path.with_name(path.name + ".skeleton")
    program.save(str(skeleton), include_initializers=False)
    model = onnx.load(str(skeleton), load_external_data=False)
    skeleton.unlink()

    _name_output_dims(model, output_dims or {})
    transposed = _fold_weight_transposes(model, set(initializer_values))
    used: set[str] = {name for node in model.graph.node for name in node.input}
    names = [name for name in initializer_values if name in used]
    shapes = {name: shapes_of(initializer_values[name]) for name in names}
    for out_name, (source, perm) in transposed.items():
        names.append(out_name)
        shapes[out_name] = tuple(shapes_of(initializer_values[source])[p] for p in perm)
        initializer_values[out_name] = _Transposed(initializer_values[source], source, perm)
    total = sum(int(np.prod(shape, dtype=np.int64)) * 4 for shape in shapes.values())
    external = total > min(inline_limit, PROTOBUF_LIMIT_BYTES)
    data_path = path.with_name(path.name + ".data") if external else None

    del model.graph.initializer[:]
    try:
        _write_initializers(model, names, initializer_values, shapes, weights, path, data_path)
        onnx.save_model(model, str(path))
    except OSError as exc:
        target = exc.filename or (data_path if data_path else path)
        raise ExportError(f"{target}: cannot write ({exc.strerror or exc})") from exc
    onnx.checker.check_model(str(path))
    inputs = tuple(_value_spec(v) for v in model.graph.input)
    outputs = tuple(_value_spec(v) for v in model.graph.output)
    log.info(
        "wrote %s (%.1f MB of weights%s)",
        path.name,
        total / 1e6,
        f", external data {data_path.name}" if data_path else "",
    )
    return ExportedGraph(path.stem, path, data_path, inputs, outputs, total)


def _write_initializers(
    model: onnx.ModelProto,
    names: list[str],
    initializer_values: dict[str, Any],
    shapes: dict[str, tuple[int, ...]],
    weights: WeightLookup,
    path: Path,
    data_path: Path | None,
) -> None:
    """Append each used initializer, inline or into ``data_path``, reading one weight at a time."""
    handle = data_path.open("wb") if data_path else None
    location = data_path.name if data_path else ""
    try:
        offset = 0
        for name in names:
            value = initializer_values[name]
            if isinstance(value, _Transposed):
                base = _real_constant(value.value.const_value)
                if base is None:
                    base = weights(value.source, shapes_of(value.value))
                array = np.transpose(base, value.perm)
            else:
                constant = _real_constant(value.const_value)
                array = constant if constant is not None else weights(name, shapes[name])
            if tuple(array.shape) != shapes[name]:
                raise ExportError(
                    f"{path.name}: weight {name!r} has shape {array.shape}, graph needs {shapes[name]}"
                )
            array = np.ascontiguousarray(array)
            if handle is None:
                model.graph.initializer.append(numpy_helper.from_array(array, name=name))
                continue
            tensor, offset = append_external(handle, offset, name, array, location)
            model.graph.initializer.append(tensor)
        if handle is not None:
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        if handle is not None:
            handle.close()


def append_external(
    handle: BinaryIO, offset: int, name: str, array: np.ndarray, location: str
) -> tuple[TensorProto, int]:
    """Append ``array`` to the external-data file ``handle`` (now at ``offset``), 64-byte aligned;
    return its initializer (pointing at ``location``) and the file's new end."""
    tensor = TensorProto(name=name, data_type=_onnx_dtype(array.dtype), dims=list(array.shape))
    tensor.data_location = TensorProto.EXTERNAL
    pad = -offset % 64
    handle.write(b"\0" * pad)
    offset += pad
    raw = array.tobytes()
    handle.write(raw)
    for key, val in (("location", location), ("offset", str(offset)), ("length", str(len(raw)))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, val
    return tensor, offset + len(raw)


def _name_output_dims(model: onnx.ModelProto, output_dims: dict[str, dict[int, str]]) -> None:
    """Give derived output dims (named ``s<N>`` by the exporter) a meaningful symbolic name."""
    for value in model.graph.output:
        for axis, name in output_dims.get(value.name, {}).items():
            dim = value.type.tensor_type.shape.dim[axis]
            if not dim.dim_value:
                dim.dim_param = name


@dataclass(frozen=True)
class _Transposed:
    """An initializer stored transposed, replacing a Transpose node that only reshuffled a weight."""

    value: Any
    source: str
    perm: tuple[int, ...]


def shapes_of(value: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in value.shape)


def _fold_weight_transposes(
    model: onnx.ModelProto, initializers: set[str]
) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Remove ``Transpose(W)`` nodes whose only input is a weight used nowhere else.

    The weight is then written already transposed under the node's output name, so onnxruntime
    never has to fold it at load time (which would hold two copies of every linear weight).
    """
    consumers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    folded: dict[str, tuple[str, tuple[int, ...]]] = {}
    keep = []
    for node in model.graph.node:
        source = node.input[0] if node.input else ""
        if node.op_type == "Transpose" and source in initializers and consumers.get(source) == 1:
            perm = next((tuple(a.ints) for a in node.attribute if a.name == "perm"), None)
            if perm is not None:
                folded[node.output[0]] = (source, perm)
                continue
        keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return folded


def _real_constant(const: Any) -> np.ndarray | None:
    """The value of a traced constant that is not a meta placeholder, else None."""
    if const is None:
        return None
    raw = getattr(const, "raw", None)
    if isinstance(raw, torch.Tensor):
        if raw.device.type == "meta":
            return None
        return raw.detach().cpu().numpy()
    try:
        return np.asarray(const.numpy())
    except (AttributeError, TypeError, ValueError, RuntimeError):
        return None


def _onnx_dtype(dtype: np.dtype) -> int:
    mapping = {
        np.dtype(np.float32): TensorProto.FLOAT,
        np.dtype(np.int64): TensorProto.INT64,
        np.dtype(np.float16): TensorProto.FLOAT16,
        np.dtype(np.int32): TensorProto.INT32,
        np.dtype(np.bool_): TensorProto.BOOL,
    }
    return mapping[np.dtype(dtype)]
