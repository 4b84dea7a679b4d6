"""Choosing ONNX Runtime execution providers and creating sessions quietly.

``auto`` prefers CUDA, then CoreML, then CPU among the providers onnxruntime reports. onnxruntime-gpu
reports CUDA even where the CUDA 13 / cuDNN 9 libraries are missing; the session then silently
comes up on CPU. We compare the providers a session actually got with the ones we asked for and
warn once, in our own words, instead of letting onnxruntime's C++ log reach the user.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort

from . import errors
from .errors import LofiError

LOG = logging.getLogger(__name__)

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}
AUTO_ORDER = ("CUDAExecutionProvider", "CoreMLExecutionProvider")
CPU = "CPUExecutionProvider"
PROVIDER_CHOICES = ("auto", *PROVIDER_ALIASES)

_warned: set[str] = set()
_warn_lock = threading.Lock()


def requested_providers(choice: str, available: Sequence[str] | None = None) -> list[str]:
    """The provider list to ask onnxruntime for, always ending with CPU."""
    available = list(available if available is not None else ort.get_available_providers())
    if choice == "auto":
        preferred = [p for p in AUTO_ORDER if p in available]
        return [*preferred[:1], CPU]
    try:
        name = PROVIDER_ALIASES[choice]
    except KeyError:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"unknown provider {choice!r}; use one of {', '.join(PROVIDER_CHOICES)}",
        ) from None
    if name != CPU and name not in available:
        raise LofiError(
            errors.MODEL_LOAD_FAILED,
            f"execution provider {choice} is not available in this onnxruntime build "
            f"(available: {', '.join(available)})",
            remedy="Use provider=auto or cpu, or install onnxruntime-gpu (Linux/Windows).",
        )
    return [name] if name == CPU else [name, CPU]


def session_options(threads: int | None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def _warn_once(key: str, message: str, *args: object) -> None:
    with _warn_lock:
        if key in _warned:
            return
        _warned.add(key)
    LOG.warning(message, *args)


def create_session(path: Path, providers: list[str], threads: int | None) -> ort.InferenceSession:
    """Create a session; map failures to MODEL_* errors; report what actually runs."""
    if not path.is_file():
        raise LofiError(errors.MODEL_NOT_FOUND, f"model file missing: {path}")
    # onnxruntime's C++ logger would print provider-loading failures straight to stderr; every
    # failure that matters also raises or shows in get_providers(), and we log it ourselves.
    ort.set_default_logger_severity(4)
    try:
        session = ort.InferenceSession(
            str(path), sess_options=session_options(threads), providers=providers
        )
    except Exception as exc:  # onnxruntime raises several unrelated exception types
        if len(providers) > 1 and providers[0] != CPU:
            _warn_once(
                f"fail:{providers[0]}",
                "%s could not be initialised (%s); falling back to CPU",
                providers[0],
                str(exc).splitlines()[0][:200],
            )
            return create_session(path, [CPU], threads)
        raise LofiError(
            errors.MODEL_LOAD_FAILED,
            f"ONNX Runtime cannot load {path.name}: {str(exc).splitlines()[0][:300]}",
            remedy="The file may be corrupt: run :Lofi setup ace-step to repair the installation.",
        ) from exc
    got = session.get_providers()
    if providers[0] != CPU and providers[0] not in got:
        hint = (
            " (CUDA 13 and cuDNN 9 libraries were not found; see README: pip install "
            "'onnxruntime-gpu[cuda,cudnn]' and onnxruntime.preload_dlls())"
            if providers[0] == "CUDAExecutionProvider"
            else ""
        )
        _warn_once(
            f"fallback:{providers[0]}", "%s is not usable, running on CPU%s", providers[0], hint
        )
    LOG.debug("%s: running on %s", path.name, ", ".join(got))
    return session
