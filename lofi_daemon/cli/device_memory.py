"""Peak used device memory while a benchmark runs, sampled in a background thread.

A sampler returns the used memory of every visible NVIDIA GPU in MiB. The preferred one calls
NVML through ctypes (``libnvidia-ml.so.1``, shipped with the driver: ``nvmlInit_v2``,
``nvmlDeviceGetCount_v2``, ``nvmlDeviceGetHandleByIndex_v2``, ``nvmlDeviceGetMemoryInfo``; see
https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html); the fallback runs
``nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits``. No new dependency.

Used memory is the device's (every process on it), so the report also gives the baseline before
the run and the peak above it. With no NVIDIA GPU visible the report's peak is ``null`` with the
reason.
"""

from __future__ import annotations

import ctypes
import logging
import shutil
import subprocess
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final

log = logging.getLogger(__name__)

MIB: Final = 1024 * 1024
DEFAULT_INTERVAL_SEC: Final = 0.05

#: Used MiB of each GPU, in device order; raises OSError when it cannot read them.
Sampler = Callable[[], list[float]]


class _NvmlMemory(ctypes.Structure):
    _fields_ = [  # nvmlMemory_t
        ("total", ctypes.c_ulonglong),
        ("free", ctypes.c_ulonglong),
        ("used", ctypes.c_ulonglong),
    ]


class NvmlSampler:
    """Used memory per GPU through NVML (ctypes). The constructor raises OSError when NVML
    cannot be loaded or initialised, or sees no GPU."""

    name: Final = "nvml"

    def __init__(self, library: str = "libnvidia-ml.so.1") -> None:
        self._nvml = ctypes.CDLL(library)
        self._check(self._nvml.nvmlInit_v2(), "nvmlInit_v2")
        count = ctypes.c_uint(0)
        self._check(self._nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)), "nvmlDeviceGetCount")
        if count.value == 0:
            raise OSError("NVML sees no GPU")
        self._handles: list[ctypes.c_void_p] = []
        for index in range(count.value):
            handle = ctypes.c_void_p()
            status = self._nvml.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(handle))
            self._check(status, "nvmlDeviceGetHandleByIndex")
            self._handles.append(handle)

    @staticmethod
    def _check(status: int, call: str) -> None:
        if status != 0:
            raise OSError(f"{call} returned NVML status {status}")

    def __call__(self) -> list[float]:
        used: list[float] = []
        for handle in self._handles:
            memory = _NvmlMemory()
            status = self._nvml.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory))
            self._check(status, "nvmlDeviceGetMemoryInfo")
            used.append(memory.used / MIB)
        return used


class SmiSampler:
    """Used memory per GPU from ``nvidia-smi`` (one child process per sample: slower)."""

    name: Final = "nvidia-smi"

    def __init__(self, command: str = "nvidia-smi") -> None:
        path = shutil.which(command)
        if path is None:
            raise OSError(f"{command} is not on PATH")
        self._command = [path, "--query-gpu=memory.used", "--format=csv,noheader,nounits"]
        if not self():
            raise OSError("nvidia-smi lists no GPU")

    def __call__(self) -> list[float]:
        try:
            done = subprocess.run(
                self._command, capture_output=True, text=True, timeout=10, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise OSError("nvidia-smi timed out") from exc
        if done.returncode != 0:
            raise OSError(f"nvidia-smi exited {done.returncode}: {done.stderr.strip()[:200]}")
        try:
            return [float(line) for line in done.stdout.split() if line.strip()]
        except ValueError as exc:
            raise OSError(f"nvidia-smi printed {done.stdout.strip()[:100]!r}") from exc


def find_sampler() -> tuple[Sampler | None, str]:
    """The first sampler that works, and its name; or None and why neither does."""
    reasons = []
    for factory in (NvmlSampler, SmiSampler):
        try:
            sampler = factory()
        except OSError as exc:
            reasons.append(f"{factory.name}: {exc}")
            continue
        return sampler, factory.name
    return None, "no NVIDIA GPU visible (" + "; ".join(reasons) + ")"


class DeviceMemoryMonitor:
    """Samples used device memory every ``interval`` seconds between ``start()`` and ``stop()``
    (or as a context manager) and reports the peak.

    ``sampler=None`` finds one (:func:`find_sampler`); with ``find=False`` and no sampler the
    report is ``null`` with ``reason``, without looking.
    """

    def __init__(
        self,
        sampler: Sampler | None = None,
        *,
        source: str = "custom",
        interval: float = DEFAULT_INTERVAL_SEC,
        find: bool = True,
        reason: str = "not measured",
    ) -> None:
        self._reason = ""
        if sampler is None and find:
            sampler, found = find_sampler()
            if sampler is None:
                self._reason = found
            else:
                source = found
        elif sampler is None:
            self._reason = reason
        self._sampler = sampler
        self.source = source
        self._interval = interval
        self._baseline: list[float] | None = None
        self._peak: list[float] | None = None
        self._samples = 0
        self._error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._sampler is None:
            return
        self._baseline = self._sample()
        self._thread = threading.Thread(target=self._run, name="device-memory", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._sample()  # the state at the end counts too

    def __enter__(self) -> DeviceMemoryMonitor:  # noqa: PYI034 - typing.Self needs 3.11
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            if self._sample() is None:
                return

    def _sample(self) -> list[float] | None:
        assert self._sampler is not None
        try:
            used = list(self._sampler())
        except OSError as exc:
            self._error = str(exc)
            log.warning("device memory sampling stopped: %s", exc)
            return None
        self._samples += 1
        if self._peak is None or len(self._peak) != len(used):
            self._peak = used
        else:
            self._peak = [max(a, b) for a, b in zip(self._peak, used, strict=True)]
        return used

    def report(self) -> dict[str, Any]:
        """``peak_mib`` (the sum over GPUs of each one's peak used memory), ``baseline_mib``
        (before the run), ``peak_above_baseline_mib``, ``per_gpu_peak_mib``, ``source``,
        ``samples``; or ``peak_mib: null`` and ``reason``."""
        if self._peak is None or self._baseline is None:
            reason = self._reason or self._error or "no sample was taken"
            return {"peak_mib": None, "reason": reason}
        peak, baseline = sum(self._peak), sum(self._baseline)
        out: dict[str, Any] = {
            "peak_mib": round(peak, 1),
            "baseline_mib": round(baseline, 1),
            "peak_above_baseline_mib": round(peak - baseline, 1),
            "per_gpu_peak_mib": [round(v, 1) for v in self._peak],
            "source": self.source,
            "samples": self._samples,
        }
        if self._error:
            out["error"] = self._error
        return out
