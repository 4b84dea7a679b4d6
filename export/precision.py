"""fp32 graph → mixed-precision graph: fp16 weights and fp16 matrix products, fp32 everywhere else.

The rule is decided from the graph, one node at a time (:func:`plan_fp16`):

* **fp16**: a ``MatMul``, ``Gemm``, ``Conv`` or ``ConvTranspose`` with at least one operand that is
  a stored weight (an initializer) and one that is an activation. These carry nearly all of the
  arithmetic and all of the weight bytes. Their weights are stored in fp16; their activation inputs
  are cast to fp16 just before them and their result is cast back to fp32 right after.
* **fp32**, everything else:

  - products of two activations (attention scores, the sums over the whole sequence of the
    linear attention in ``acestep/models/customer_attention_processor.py``): their magnitude
    grows with the sequence length and fp16 tops out at 65504;
  - normalisations, softmax, exponentials, the residual additions, activations, reshapes — every
    op that is not a matrix product stays as it was, so the residual stream between blocks, the
    ``+ 1e-15`` of the linear attention's denominator and every reduction remain fp32;
  - the timestep-embedding path: every node whose result depends on no graph input but the ones
    of rank ≤ 1 (the per-sample timestep; sinusoidal features and their MLP), which is cheap and
    feeds every block's modulation;
  - any matrix product with a weight that fp16 cannot hold (a magnitude over 65504). A weight that
    an fp32 node reads too (other than for its shape) is stored once, in fp32, and cast for the
    fp16 node.

Graph inputs and outputs keep their fp32 types, so the runtime feeds both precisions the same
arrays. ONNX Runtime runs such a graph on CPU too (it falls back to fp32 kernels where it has no
fp16 one). The weights are read and written one tensor at a time (streamed from and to the
external-data file), so converting a 10 GB graph needs little memory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import ExportError
from .onnx_writer import ExportedGraph, append_external

log = logging.getLogger(__name__)

FP16_OPS = frozenset({"MatMul", "Gemm", "Conv", "ConvTranspose"})
#: Ops that read only a tensor's shape: they do not care whether a weight is stored in fp16.
SHAPE_ONLY_OPS = frozenset({"Shape", "Size"})
FP16_MAX = 65504.0
#: Tensors smaller than this stay inside the graph file (as ``onnx.save_model`` does by default):
#: onnxruntime's shape inference reads small int64 shape/axes tensors and cannot from external data.
INLINE_BELOW_BYTES = 1024
#: Graphs kept wholly fp32 in an fp16 model set: the text encoders run once per track, and T5's
#: feed-forward outputs overflow fp16 (transformers keeps them fp32: ``T5PreTrainedModel.
#: _keep_in_fp32_modules = ["wo"]``).
FP32_GRAPHS = frozenset({"text_encoder"})


@dataclass
class Fp16Plan:
    """Which nodes run in fp16 and which weights are stored in fp16."""

    nodes: set[str] = field(default_factory=set)  # names of the nodes to run in fp16
    weights: set[str] = field(default_factory=set)  # initializers to store in fp16
    kept: dict[str, str] = field(default_factory=dict)  # matrix products left fp32 → why


@dataclass(frozen=True)
class Fp16Result:
    path: Path
    external_data: Path | None
    fp16_nodes: int
    fp32_products: int
    weight_bytes: int


def _node_names(model: onnx.ModelProto) -> None:
    """Give unnamed nodes a unique name (the plan and the report refer to nodes by name)."""
    seen: set[str] = set()
    for index, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{index}"
        seen.add(node.name)


def _input_ranks(model: onnx.ModelProto) -> dict[str, int]:
    return {v.name: len(v.type.tensor_type.shape.dim) for v in model.graph.input}


def _low_rank_only(model: onnx.ModelProto) -> set[str]:
    """Values that depend on graph inputs, all of them of rank ≤ 1 (the timestep path)."""
    ranks = _input_ranks(model)
    deps: dict[str, frozenset[str]] = {name: frozenset({name}) for name in ranks}
    for node in model.graph.node:
        found: frozenset[str] = frozenset().union(*(deps.get(i, frozenset()) for i in node.input))
        for out in node.output:
            deps[out] = found
    return {
        name
        for name, inputs in deps.items()
        if inputs and name not in ranks and all(ranks[i] <= 1 for i in inputs)
    }


def _float_initializers(model: onnx.ModelProto) -> dict[str, TensorProto]:
    return {t.name: t for t in model.graph.initializer if t.data_type == TensorProto.FLOAT}


def plan_fp16(model: onnx.ModelProto, read: WeightReader) -> Fp16Plan:
    """Decide, node by node, what becomes fp16 (the module docstring states the rule)."""
    _node_names(model)
    weights = _float_initializers(model)
    timestep_path = _low_rank_only(model)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    plan = Fp16Plan()
    candidates: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.op_type not in FP16_OPS:
            continue
        stored = [i for i in node.input if i in weights]
        dynamic = [i for i in node.input if i and i not in weights]
        if not stored or not dynamic:
            plan.kept[node.name] = "product of two activations" if dynamic else "constant"
        elif any(out in timestep_path for out in node.output):
            plan.kept[node.name] = "timestep-embedding path"
        else:
            candidates[node.name] = stored
    overflow = {
        name
        for stored in candidates.values()
        for name in stored
        if float(np.max(np.abs(read(weights[name])), initial=0.0)) > FP16_MAX
    }
    accepted = {n: s for n, s in candidates.items() if not any(w in overflow for w in s)}
    for node_name in candidates.keys() - accepted.keys():
        plan.kept[node_name] = "weight beyond the fp16 range"
    plan.nodes.update(accepted)
    for stored in accepted.values():
        # A weight that an fp32 node reads too stays fp32 on disk; the fp16 node gets a Cast of
        # it (which ONNX Runtime folds into a constant at load).
        plan.weights.update(
            name
            for name in stored
            if all(c.name in accepted or c.op_type in SHAPE_ONLY_OPS for c in consumers[name])
        )
    return plan


class WeightReader:
    """Reads initializers of a model saved at ``path``, inline or from external data."""

    def __init__(self, path: Path) -> None:
        self.folder = path.parent
        self._handles: dict[str, object] = {}

    def __call__(self, tensor: TensorProto) -> np.ndarray:
        if tensor.data_location != TensorProto.EXTERNAL:
            return numpy_helper.to_array(tensor)
        info = {e.key: e.value for e in tensor.external_data}
        dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
        count = int(np.prod(tensor.dims, dtype=np.int64))
        with (self.folder / info["location"]).open("rb") as handle:
            handle.seek(int(info.get("offset", 0)))
            raw = handle.read(int(info.get("length", count * np.dtype(dtype).itemsize)))
        return np.frombuffer(raw, dtype=dtype, count=count).reshape(tuple(tensor.dims))


def _rewrite_nodes(model: onnx.ModelProto, plan: Fp16Plan) -> None:
    """Cast the activation inputs of the planned nodes to fp16 and their outputs back to fp32."""
    weights = set(plan.weights)
    cast_of: dict[str, str] = {}  # fp32 value → its fp16 cast (one cast per value)
    nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        if node.name not in plan.nodes:
            nodes.append(node)
            continue
        for index, name in enumerate(node.input):
            if not name or name in weights:
                continue
            if name not in cast_of:
                cast_of[name] = f"{name}__fp16"
                nodes.append(
                    helper.make_node(
                        "Cast",
                        [name],
                        [cast_of[name]],
                        name=f"{name}__to_fp16",
                        to=TensorProto.FLOAT16,
                    )
                )
            node.input[index] = cast_of[name]
        outputs = list(node.output)
        for index, name in enumerate(outputs):
            node.output[index] = f"{name}__fp16out"
        nodes.append(node)
        for name in outputs:
            nodes.append(
                helper.make_node(
                    "Cast",
                    [f"{name}__fp16out"],
                    [name],
                    name=f"{name}__to_fp32",
                    to=TensorProto.FLOAT,
                )
            )
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def _write_weights(
    model: onnx.ModelProto, plan: Fp16Plan, read: WeightReader, data_path: Path | None
) -> int:
    """Rewrite every initializer (fp16 where planned) inline or into ``data_path``; bytes written."""
    tensors = list(model.graph.initializer)
    del model.graph.initializer[:]
    handle = data_path.open("wb") if data_path else None
    offset = total = 0
    try:
        for tensor in tensors:
            array = read(tensor)
            if tensor.name in plan.weights:
                array = array.astype(np.float16)
            array = np.ascontiguousarray(array)
            total += array.nbytes
            if handle is None or data_path is None or array.nbytes < INLINE_BELOW_BYTES:
                model.graph.initializer.append(numpy_helper.from_array(array, tensor.name))
                continue
            out, offset = append_external(handle, offset, tensor.name, array, data_path.name)
            model.graph.initializer.append(out)
        if handle is not None:
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        if handle is not None:
            handle.close()
    return total


def convert_to_fp16(source: Path, target: Path) -> Fp16Result:
    """Write the mixed-precision version of the fp32 graph ``source`` to ``target``.

    ``target`` uses external data (``<target name>.data``) exactly when ``source`` does. Both may
    live in different folders; ``source`` is left untouched.
    """
    if source.resolve() == target.resolve():
        raise ExportError(f"{target}: the fp16 graph must not overwrite its fp32 source")
    model = onnx.load(str(source), load_external_data=False)
    external = any(t.data_location == TensorProto.EXTERNAL for t in model.graph.initializer)
    read = WeightReader(source)
    plan = plan_fp16(model, read)
    _rewrite_nodes(model, plan)
    data_path = target.with_name(target.name + ".data") if external else None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        total = _write_weights(model, plan, read, data_path)
        onnx.save_model(model, str(target))
    except OSError as exc:
        raise ExportError(
            f"{exc.filename or target}: cannot write ({exc.strerror or exc})"
        ) from exc
    onnx.checker.check_model(str(target))
    log.info(
        "%s: %d matrix products in fp16, %d kept fp32 (%.1f MB of weights)",
        target.name,
        len(plan.nodes),
        len(plan.kept),
        total / 1e6,
    )
    return Fp16Result(target, data_path, len(plan.nodes), len(plan.kept), total)


def node_precisions(model: onnx.ModelProto) -> dict[str, str]:
    """``node name → "fp16" | "fp32"``: the element type each node computes in, from the graph's
    inferred types (for tests and reports; ``model`` loaded without external data is enough)."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    }
    types.update({t.name: t.data_type for t in model.graph.initializer})
    result: dict[str, str] = {}
    for node in model.graph.node:
        kinds = {types.get(i) for i in node.input if i} if node.op_type != "Cast" else set()
        kinds |= {types.get(o) for o in node.output} if node.op_type != "Cast" else set()
        result[node.name] = "fp16" if TensorProto.FLOAT16 in kinds else "fp32"
    return result


def fp16_weight_names(model: onnx.ModelProto) -> Iterable[str]:
    """The initializers stored in fp16."""
    return (t.name for t in model.graph.initializer if t.data_type == TensorProto.FLOAT16)


def fp16_graph_set(graphs: list[ExportedGraph], out: Path) -> list[ExportedGraph]:
    """Write the fp16 set of the fp32 ``graphs`` (exported to another folder) into ``out``.

    Graphs of :data:`FP32_GRAPHS` are moved over unchanged; each fp32 source is deleted as soon as
    its replacement is written, so the disk holds at most one graph twice.
    """
    result: list[ExportedGraph] = []
    for graph in graphs:
        target = out / graph.path.name
        data = target.with_name(target.name + ".data") if graph.external_data else None
        if graph.name in FP32_GRAPHS:
            if graph.external_data is not None and data is not None:
                graph.external_data.replace(data)  # the file keeps its name: the graph finds it
            graph.path.replace(target)
            result.append(replace(graph, path=target, external_data=data))
            continue
        converted = convert_to_fp16(graph.path, target)
        graph.path.unlink()
        if graph.external_data is not None:
            graph.external_data.unlink()
        result.append(
            replace(
                graph,
                path=target,
                external_data=converted.external_data,
                initializer_bytes=converted.weight_bytes,
            )
        )
    return result
