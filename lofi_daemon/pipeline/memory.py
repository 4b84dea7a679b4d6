"""How much memory is free right now, for the residency policy (:mod:`.residency`).

A :class:`MemoryProbe` answers ``free_bytes()`` — or None when it cannot tell, which the policy
reads as "does not fit". Two implementations, neither imports torch:

- :class:`HostMemoryProbe` (CPU, CoreML and every other provider that uses host RAM): Linux
  ``MemAvailable`` from ``/proc/meminfo`` (the kernel's estimate of what can be allocated without
  swapping: free pages plus reclaimable cache, https://docs.kernel.org/filesystems/proc.html);
  elsewhere, best effort: ``os.sysconf("SC_AVPHYS_PAGES")`` (free pages only, so an underestimate
  that keeps less resident) and on macOS ``vm_stat``'s free + inactive + speculative pages.
- :class:`CudaMemoryProbe` (CUDA and TensorRT providers): free device memory of the device the
  sessions run on, from NVML (``nvmlDeviceGetMemoryInfo``, in ``libnvidia-ml`` that ships with
  the driver, creates no CUDA context), else the CUDA runtime (``cudaMemGetInfo`` from
  ``libcudart``, already loaded by onnxruntime-gpu), else
  ``nvidia-smi --query-gpu=memory.free --format=csv,noheader,nounits``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

GIB = 1024**3
#: Providers whose sessions live in CUDA device memory.
DEVICE_PROVIDERS = frozenset(
    {"CUDAExecutionProvider", "TensorrtExecutionProvider", "NvTensorRTRTXExecutionProvider"}
)


class MemoryProbe(Protocol):
    """Free memory where the sessions live."""

    name: str
    """What is measured, for ``status`` and logs (e.g. "host RAM")."""

    def free_bytes(self) -> int | None:
        """Bytes free now; None when unknown."""
        ...


def gib(n: float) -> str:
    """``n`` bytes as "3.1 GiB"."""
    return f"{n / GIB:.1f} GiB"


class HostMemoryProbe:
    """Available host RAM (see the module doc for each platform)."""

    name = "host RAM"

    def __init__(self, meminfo: Path = Path("/proc/meminfo")) -> None:
        self._meminfo = meminfo

    def free_bytes(self) -> int | None:
        try:
            text = self._meminfo.read_text()
        except OSError:
            return self._fallback()
        match = re.search(r"^MemAvailable:\s+(\d+)\s*kB", text, re.MULTILINE)
        return int(match.group(1)) * 1024 if match else self._fallback()

    @staticmethod
    def _fallback() -> int | None:
        if sys.platform == "darwin":
            return _vm_stat_free()
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None


def _vm_stat_free() -> int | None:
    """macOS: free + inactive + speculative pages of ``vm_stat`` (what can be had without
    swapping, roughly what Activity Monitor calls available)."""
    try:
        out = subprocess.run(
            ["vm_stat"], capture_output=True, text=True, timeout=5, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    size = re.search(r"page size of (\d+) bytes", out)
    pages = 0
    for key in ("Pages free", "Pages inactive", "Pages speculative"):
        found = re.search(rf"^{key}:\s+(\d+)", out, re.MULTILINE)
        pages += int(found.group(1)) if found else 0
    return pages * int(size.group(1)) if size and pages else None


class CudaMemoryProbe:
    """Free memory of one CUDA device (NVML, else ``cudaMemGetInfo``, else ``nvidia-smi``).

    ``device`` is the index the sessions use (onnxruntime's ``device_id``, 0 by default), counted
    among the visible devices; NVML and nvidia-smi count all devices, so the first entry of
    ``CUDA_VISIBLE_DEVICES`` maps it when it is a plain index.
    """

    name = "CUDA device memory"

    def __init__(self, device: int = 0) -> None:
        self.device = device

    def free_bytes(self) -> int | None:
        for method in (self._nvml, self._cudart, self._nvidia_smi):
            try:
                free = method()
            # a missing library or symbol, no nvidia-smi, odd output: try the next way
            except (
                OSError,
                AttributeError,
                ValueError,
                IndexError,
                subprocess.SubprocessError,
            ) as exc:
                log.debug("free device memory via %s failed: %s", method.__name__, exc)
                continue
            if free is not None:
                return free
        return None

    def _physical_index(self) -> int:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
        if self.device < len(visible) and visible[self.device].strip().isdigit():
            return int(visible[self.device])
        return self.device

    def _nvml(self) -> int | None:
        # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html
        nvml = ctypes.CDLL("libnvidia-ml.so.1" if sys.platform != "win32" else "nvml.dll")

        class Memory(ctypes.Structure):
            _fields_ = [(n, ctypes.c_ulonglong) for n in ("total", "free", "used")]

        if nvml.nvmlInit_v2() != 0:
            return None
        try:
            handle = ctypes.c_void_p()
            index = ctypes.c_uint(self._physical_index())
            if nvml.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(handle)) != 0:
                return None
            memory = Memory()
            if nvml.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory)) != 0:
                return None
            return int(memory.free)
        finally:
            nvml.nvmlShutdown()

    def _cudart(self) -> int | None:
        # https://docs.nvidia.com/cuda/cuda-runtime-api/group__CUDART__MEMORY.html
        for soname in ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"):
            try:
                cudart = ctypes.CDLL(soname)
                break
            except OSError:
                continue
        else:
            return None
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        if cudart.cudaSetDevice(ctypes.c_int(self.device)) != 0:
            return None
        if cudart.cudaMemGetInfo(ctypes.byref(free), ctypes.byref(total)) != 0:
            return None
        return int(free.value)

    def _nvidia_smi(self) -> int | None:
        out = subprocess.run(
            [
                "nvidia-smi",
                f"--id={self._physical_index()}",
                "--query-gpu=memory.free",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return int(out.split()[0]) * 1024 * 1024  # MiB


def probe_for(providers: list[str]) -> MemoryProbe:
    """The probe for sessions on ``providers`` (onnxruntime names): the device's when any of them
    keeps its sessions in CUDA device memory, else host RAM."""
    on_device = any(p in DEVICE_PROVIDERS for p in providers)
    return CudaMemoryProbe() if on_device else HostMemoryProbe()
