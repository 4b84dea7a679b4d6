"""Which execution provider runs each node of a session, and the heavy nodes left on CPU.

A CUDA session runs every node the CUDA provider has a kernel for on the GPU and silently puts
the rest on CPU, copying tensors back and forth. A few shape ops on CPU are normal; a MatMul,
a convolution or an attention on CPU makes a "GPU" run as slow as a CPU one.

Two sources of the node → provider assignment:

* onnxruntime ≥ 1.23 records it when the session config entry
  ``session.record_ep_graph_assignment_info`` is ``"1"``:
  ``InferenceSession.get_provider_graph_assignment_info()`` returns one ``OrtEpAssignedSubgraph``
  per assigned subgraph (``ep_name``, ``get_nodes()`` → ``name``, ``op_type``, ``domain``); see
  onnxruntime/python/onnxruntime_inference_collection.py (InferenceSession) and the key in
  onnxruntime/core/session/onnxruntime_session_options_config_keys.h
  (kOrtSessionOptionsRecordEpGraphAssignmentInfo). :func:`session_placement` uses it.
* Any version: a session profile (``SessionOptions.enable_profiling``, one run,
  ``end_profiling()``) is a Chrome-trace JSON whose ``"cat": "Node"`` events carry
  ``args.provider`` and ``args.op_name`` (https://onnxruntime.ai/docs/performance/tune-performance/profiling-tools.html).
  :func:`placement_from_profile` reads such a file.

The nodes are those of the optimised graph: fused nodes appear under their fused op types
(``FusedMatMul``, ``FusedConv``, ``SkipLayerNormalization``...), which :data:`HEAVY_OPS` lists too.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from lofi_daemon import errors
from lofi_daemon.errors import LofiError

log = logging.getLogger(__name__)

CPU: Final = "CPUExecutionProvider"
RECORD_ASSIGNMENT_KEY: Final = "session.record_ep_graph_assignment_info"

#: Op types whose cost grows with the model's width: on CPU in a GPU session they dominate the run.
HEAVY_OPS: Final = frozenset(
    {
        "Attention",
        "BiasGelu",
        "Conv",
        "ConvTranspose",
        "Einsum",
        "FastGelu",
        "FusedConv",
        "FusedGemm",
        "FusedMatMul",
        "Gemm",
        "GroupNorm",
        "GroupNormalization",
        "GroupQueryAttention",
        "InstanceNormalization",
        "LayerNormalization",
        "MatMul",
        "MatMulInteger",
        "MultiHeadAttention",
        "NhwcConv",
        "QLinearConv",
        "QLinearMatMul",
        "RMSNormalization",
        "SimplifiedLayerNormalization",
        "SkipLayerNormalization",
        "SkipSimplifiedLayerNormalization",
        "Softmax",
    }
)


@dataclass(frozen=True)
class PlacedNode:
    name: str
    op_type: str
    provider: str


@dataclass(frozen=True)
class Placement:
    """The nodes of one session and the provider each runs on."""

    nodes: tuple[PlacedNode, ...]
    source: str  # "assignment" (onnxruntime's record) or "profile"
    #: The session's providers in priority order (``InferenceSession.get_providers()``).
    requested: tuple[str, ...] = field(default=())

    def provider_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(node.provider for node in self.nodes).items()))

    def heavy_cpu_nodes(self) -> list[str]:
        """See :func:`heavy_cpu_nodes`."""
        return heavy_cpu_nodes(self.nodes, self.requested)

    def report(self) -> dict[str, Any]:
        """The bench's JSON entry for one graph."""
        return {
            "source": self.source,
            "session_providers": list(self.requested),
            "provider_counts": self.provider_counts(),
            "heavy_on_cpu": self.heavy_cpu_nodes(),
        }


def heavy_cpu_nodes(nodes: Iterable[PlacedNode], requested: Sequence[str]) -> list[str]:
    """Names (``name (OpType)``) of the heavy nodes that run on CPU although another provider
    was requested first; empty when CPU was the provider asked for (everything is on CPU then,
    as it should be)."""
    if not requested or requested[0] == CPU:
        return []
    return [
        f"{node.name or '?'} ({node.op_type})"
        for node in nodes
        if node.provider == CPU and node.op_type in HEAVY_OPS
    ]


def placement_from_assignment(subgraphs: Iterable[Any], requested: Sequence[str]) -> Placement:
    """From ``InferenceSession.get_provider_graph_assignment_info()``."""
    nodes = tuple(
        PlacedNode(str(node.name), str(node.op_type), str(subgraph.ep_name))
        for subgraph in subgraphs
        for node in subgraph.get_nodes()
    )
    return Placement(nodes, "assignment", tuple(requested))


def placement_from_profile(profile: Path | list[Any], requested: Sequence[str]) -> Placement:
    """From an onnxruntime profile (a path, or its parsed JSON: a list of trace events).

    Each node appears in several events of one run (``*_fence_before``, ``*_kernel_time``,
    ``*_fence_after``); a node is counted once, by name.

    Raises:
        LofiError: INVALID_PARAMETER when the file is not an onnxruntime profile.
    """
    events: Any = profile
    if isinstance(profile, Path):
        try:
            events = json.loads(profile.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise LofiError(
                errors.INVALID_PARAMETER, f"cannot read the profile {profile}: {exc}"
            ) from exc
    if isinstance(events, dict):  # some writers wrap the events: {"traceEvents": [...]}
        events = events.get("traceEvents")
    if not isinstance(events, list):
        raise LofiError(
            errors.INVALID_PARAMETER, "an onnxruntime profile is a JSON list of trace events"
        )
    seen: dict[str, PlacedNode] = {}
    for event in events:
        if not isinstance(event, dict) or event.get("cat") != "Node":
            continue
        args = event.get("args")
        if not isinstance(args, dict) or "provider" not in args or "op_name" not in args:
            continue
        name = str(event.get("name", ""))
        for suffix in ("_kernel_time", "_fence_before", "_fence_after"):
            name = name.removesuffix(suffix)
        seen.setdefault(name, PlacedNode(name, str(args["op_name"]), str(args["provider"])))
    return Placement(tuple(seen.values()), "profile", tuple(requested))


def session_placement(path: Path, provider: str, threads: int | None = None) -> Placement:
    """Create a session for the graph file ``path`` on ``provider`` (``auto``/``cpu``/``cuda``...,
    as the daemon's option) with the assignment record on, and read where its nodes went.

    This is a session of its own (not the engine's): it costs one more session creation.

    Raises:
        LofiError: MODEL_NOT_FOUND / MODEL_LOAD_FAILED as for any session; INTERNAL_ERROR when
            this onnxruntime cannot record the assignment (older than 1.23: use a profile).
    """
    import onnxruntime as ort

    from lofi_daemon.pipeline import providers as provider_choice

    requested = provider_choice.requested_providers(provider)
    if not path.is_file():
        raise LofiError(errors.MODEL_NOT_FOUND, f"model file missing: {path}")
    if not hasattr(ort.InferenceSession, "get_provider_graph_assignment_info"):
        raise LofiError(
            errors.INTERNAL_ERROR,
            f"onnxruntime {ort.__version__} cannot report node placement (needs 1.23 or later)",
        )
    if requested[0] == "CUDAExecutionProvider":
        provider_choice.preload_cuda_libraries()
    options = provider_choice.session_options(threads)
    options.add_session_config_entry(RECORD_ASSIGNMENT_KEY, "1")
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=requested)
    except Exception as exc:  # onnxruntime raises several unrelated exception types
        raise LofiError(
            errors.MODEL_LOAD_FAILED,
            f"ONNX Runtime cannot load {path.name} on {requested[0]}: "
            f"{errors.first_line(exc, 300)}",
        ) from exc
    # What the session got, not what was asked: onnxruntime-gpu without its CUDA libraries comes
    # up on CPU alone (the engine warns about that); then no node "fell back".
    got = session.get_providers()
    placement = placement_from_assignment(session.get_provider_graph_assignment_info(), got)
    del session
    return placement


def warn_heavy_on_cpu(graph: str, placement: Placement, limit: int = 12) -> None:
    """Log a warning naming the heavy nodes of ``graph`` that fell back to CPU (if any)."""
    heavy = placement.heavy_cpu_nodes()
    if heavy:
        shown = ", ".join(heavy[:limit]) + (
            f" and {len(heavy) - limit} more" if len(heavy) > limit else ""
        )
        log.warning(
            "%s: %d heavy node(s) run on CPU instead of %s: %s",
            graph,
            len(heavy),
            placement.requested[0],
            shown,
        )


def check_session(graph: str, session: Any) -> None:
    """Warn, naming them, about heavy nodes that onnxruntime left on CPU in a session created on
    another provider (with :data:`.providers.RECORD_ASSIGNMENT`); nothing on a CPU session."""
    got = session.get_providers()
    if not got or got[0] == CPU:
        return
    try:
        info = session.get_provider_graph_assignment_info()
    except Exception as exc:  # noqa: BLE001 - an older onnxruntime: nothing to check with
        log.debug("%s: no node placement (%s)", graph, errors.first_line(exc, 200))
        return
    warn_heavy_on_cpu(graph, placement_from_assignment(info, got))
