"""Choosing ONNX Runtime execution providers and creating sessions quietly.

``auto`` prefers CUDA, then CoreML, then CPU among the providers onnxruntime reports. onnxruntime-gpu
reports CUDA even where the CUDA 13 / cuDNN 9 libraries are missing; the session then silently
comes up on CPU. We compare the providers a session actually got with the ones we asked for and
warn once, in our own words, instead of letting onnxruntime's C++ log reach the user.

What the daemon *reports* (``backends.list``) is only what works: :func:`working_providers`
probes each candidate once per process with a session on a tiny in-memory graph.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import logging
import threading
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import onnxruntime as ort

from lofi_daemon import errors
from lofi_daemon.errors import LofiError

log = logging.getLogger(__name__)

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


#: Session config entry that makes onnxruntime record which provider runs each node
#: (:mod:`lofi_daemon.pipeline.placement`, checked by :class:`.sessions.SessionPool`); set for
#: sessions on a provider other than CPU.
RECORD_ASSIGNMENT = "session.record_ep_graph_assignment_info"


def session_options(threads: int | None, *, record_placement: bool = False) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if record_placement:
        options.add_session_config_entry(RECORD_ASSIGNMENT, "1")
    if threads:
        options.intra_op_num_threads = int(threads)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def _warn_once(key: str, message: str, *args: object) -> None:
    with _warn_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning(message, *args)


@functools.cache
def preload_cuda_libraries() -> None:
    """Load CUDA/cuDNN from the ``nvidia-*`` PyPI packages when they are installed (once).

    ``pip install "onnxruntime-gpu[cuda,cudnn]"`` brings those packages; onnxruntime finds their
    libraries only after ``onnxruntime.preload_dlls()``. Its messages are kept off stdout, which is
    the daemon's protocol channel. Libraries load once per process, hence the cache.
    """
    if not hasattr(ort, "preload_dlls") or importlib.util.find_spec("nvidia") is None:
        return
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
        try:
            ort.preload_dlls()
        except Exception as exc:  # noqa: BLE001 - best effort; the session reports what runs
            log.debug("onnxruntime.preload_dlls failed: %s", exc)
    log.debug("preload_dlls: %s", captured.getvalue().strip()[:500])


def create_session(
    path: Path, providers: list[str], threads: int | None, *, strict: bool = False
) -> ort.InferenceSession:
    """Create a session; map failures to MODEL_* errors; report what actually runs.

    With ``strict`` (an explicit provider choice), a preferred provider that cannot run is an error
    instead of a fallback to CPU.
    """
    if not path.is_file():
        raise LofiError(errors.MODEL_NOT_FOUND, f"model file missing: {path}")
    if providers[0] == "CUDAExecutionProvider":
        preload_cuda_libraries()
    # onnxruntime's C++ logger would print provider-loading failures straight to stderr; every
    # failure that matters also raises or shows in get_providers(), and we log it ourselves.
    ort.set_default_logger_severity(4)
    try:
        session = ort.InferenceSession(
            str(path),
            sess_options=session_options(threads, record_placement=providers[0] != CPU),
            providers=providers,
        )
    except Exception as exc:  # onnxruntime raises several unrelated exception types
        if len(providers) > 1 and providers[0] != CPU:
            # Retry on CPU first: a file that CPU cannot load either is a model error, and must
            # not be reported as a provider failure.
            session = create_session(path, [CPU], threads)
            if strict:
                raise LofiError(
                    errors.MODEL_LOAD_FAILED,
                    f"{providers[0]} was requested but could not be initialised: "
                    f"{errors.first_line(exc, 200)}",
                    remedy="Use provider=auto or cpu, or fix the GPU libraries (see the README).",
                ) from exc
            _warn_once(
                f"fail:{providers[0]}",
                "%s could not be initialised (%s); falling back to CPU",
                providers[0],
                errors.first_line(exc, 200),
            )
            return session
        raise LofiError(
            errors.MODEL_LOAD_FAILED,
            f"ONNX Runtime cannot load {path.name}: {errors.first_line(exc, 300)}",
            remedy="The file may be corrupt: run :Lofi setup ace-step to repair the installation.",
        ) from exc
    got = session.get_providers()
    if strict and providers[0] != CPU and providers[0] not in got:
        raise LofiError(
            errors.MODEL_LOAD_FAILED,
            f"{providers[0]} was requested but cannot run here (onnxruntime fell back to {got[0]})",
            remedy="Install the CUDA 13 and cuDNN 9 libraries (pip install "
            "'onnxruntime-gpu[cuda,cudnn]'), or use provider=auto or cpu.",
        )
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
    log.debug("%s: running on %s", path.name, ", ".join(got))
    return session


# -- probing which providers work ----------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    """One protobuf field: an integer (varint) or bytes (length-delimited)."""
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _float_vector_info(name: str) -> bytes:
    """ValueInfoProto: ``name``, a float tensor of shape [1]."""
    shape = _field(1, _field(1, 1))  # TensorShapeProto.dim { dim_value: 1 }
    tensor = _field(1, 1) + _field(2, shape)  # Tensor { elem_type: FLOAT, shape }
    return _field(1, name.encode()) + _field(2, _field(1, tensor))  # name, TypeProto.tensor_type


@functools.cache
def probe_model() -> bytes:
    """A serialized ONNX model with one Identity node (y = x, float[1]), built without ``onnx``
    (the runtime does not depend on it): ir_version 7, default opset 13."""
    node = _field(1, b"x") + _field(2, b"y") + _field(4, b"Identity")
    graph = (
        _field(1, node)
        + _field(2, b"lofi-probe")
        + _field(11, _float_vector_info("x"))
        + _field(12, _float_vector_info("y"))
    )
    opset = _field(1, b"") + _field(2, 13)
    return _field(1, 7) + _field(8, opset) + _field(7, graph)


@functools.cache
def _provider_works(name: str) -> bool:
    """Whether a session asked for ``name`` (then CPU) really gets ``name`` (once per process).

    onnxruntime prints provider failures to stdout and stderr and warns through ``warnings``;
    stdout is the daemon's protocol channel, so all of it is captured and only logged.
    """
    if name == CPU:
        return True
    if name == "CUDAExecutionProvider":
        preload_cuda_libraries()
    ort.set_default_logger_severity(4)
    captured = io.StringIO()
    with (
        contextlib.redirect_stdout(captured),
        contextlib.redirect_stderr(captured),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        try:
            session = ort.InferenceSession(
                probe_model(), sess_options=session_options(1), providers=[name, CPU]
            )
            works = name in session.get_providers()
        except Exception as exc:  # noqa: BLE001 - any failure means the provider does not work
            log.debug("probe of %s failed: %s", name, errors.first_line(exc, 200))
            works = False
    if captured.getvalue().strip():
        log.debug("probe of %s: %s", name, captured.getvalue().strip()[:500])
    log.info("execution provider %s %s", name, "works" if works else "does not work here")
    return works


def working_providers(candidates: Iterable[str] | None = None) -> list[str]:
    """The ``candidates`` (default: what ``auto`` may use) that really run here, in order.

    ``ort.get_available_providers()`` lists what the build contains (onnxruntime-gpu lists CUDA
    on a machine without a GPU); each candidate is probed once per process instead.
    """
    if candidates is None:
        available = ort.get_available_providers()
        candidates = [*(p for p in AUTO_ORDER if p in available), CPU]
    return [name for name in candidates if _provider_works(name)]
