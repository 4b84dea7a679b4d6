"""The free-memory probes of the residency policy: /proc/meminfo and its fallback, the CUDA
probe's three ways in order (here every library is absent or replaced), the provider → probe
choice."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from lofi_daemon.pipeline import memory
from lofi_daemon.pipeline.memory import CudaMemoryProbe, HostMemoryProbe, gib, probe_for

MEMINFO = """MemTotal:       16303604 kB
MemFree:          812344 kB
MemAvailable:    9437184 kB
Buffers:          123456 kB
"""


def test_host_probe_reads_mem_available(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(MEMINFO)
    assert HostMemoryProbe(meminfo).free_bytes() == 9437184 * 1024
    assert gib(9437184 * 1024) == "9.0 GiB"


def test_host_probe_falls_back_without_meminfo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory.sys, "platform", "linux")
    pages = {"SC_AVPHYS_PAGES": 1000, "SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(memory.os, "sysconf", lambda name: pages[name])
    assert HostMemoryProbe(tmp_path / "missing").free_bytes() == 1000 * 4096
    broken = tmp_path / "meminfo"
    broken.write_text("MemTotal: 1 kB\n")  # no MemAvailable (kernels before 3.14)
    assert HostMemoryProbe(broken).free_bytes() == 1000 * 4096

    def unsupported(name: str) -> int:
        raise ValueError(name)

    monkeypatch.setattr(memory.os, "sysconf", unsupported)
    assert HostMemoryProbe(tmp_path / "missing").free_bytes() is None


def test_host_probe_on_macos_reads_vm_stat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = (
        "Mach Virtual Memory Statistics: (page size of 16384 bytes)\n"
        "Pages free:                               10.\n"
        "Pages active:                            999.\n"
        "Pages inactive:                            20.\n"
        "Pages speculative:                          2.\n"
    )
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    monkeypatch.setattr(
        memory.subprocess,
        "run",
        lambda *a, **k: subprocess.CompletedProcess(a, 0, stdout=out, stderr=""),
    )
    assert HostMemoryProbe(tmp_path / "missing").free_bytes() == 32 * 16384


def _no_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> Any:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(memory.ctypes, "CDLL", missing)


def test_cuda_probe_falls_back_to_nvidia_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_libraries(monkeypatch)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    seen: list[list[str]] = []

    def smi(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen.append(argv)
        return subprocess.CompletedProcess(argv, 0, stdout="70123\n", stderr="")

    monkeypatch.setattr(memory.subprocess, "run", smi)
    assert CudaMemoryProbe().free_bytes() == 70123 * 1024 * 1024
    assert seen == [
        [
            "nvidia-smi",
            "--id=3",  # device 0 of the visible ones is physical device 3
            "--query-gpu=memory.free",
            "--format=csv,noheader,nounits",
        ]
    ]


@pytest.mark.parametrize(
    "failure",
    [
        FileNotFoundError("nvidia-smi"),
        subprocess.CalledProcessError(9, "nvidia-smi"),
        subprocess.TimeoutExpired("nvidia-smi", 10),
    ],
)
def test_cuda_probe_is_none_when_no_way_answers(
    monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    _no_libraries(monkeypatch)

    def smi(*args: Any, **kwargs: Any) -> Any:
        raise failure

    monkeypatch.setattr(memory.subprocess, "run", smi)
    assert CudaMemoryProbe().free_bytes() is None


def test_cuda_probe_ignores_odd_nvidia_smi_output(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_libraries(monkeypatch)
    monkeypatch.setattr(
        memory.subprocess,
        "run",
        lambda argv, **k: subprocess.CompletedProcess(argv, 0, stdout="[N/A]\n", stderr=""),
    )
    assert CudaMemoryProbe().free_bytes() is None


def test_the_probe_follows_the_provider() -> None:
    assert isinstance(probe_for(["CUDAExecutionProvider"]), CudaMemoryProbe)
    assert isinstance(probe_for(["TensorrtExecutionProvider"]), CudaMemoryProbe)
    # one graph fell back to CPU, the others run on CUDA: the device is what runs short
    assert isinstance(probe_for(["CPUExecutionProvider", "CUDAExecutionProvider"]), CudaMemoryProbe)
    assert isinstance(probe_for(["CPUExecutionProvider"]), HostMemoryProbe)
    assert isinstance(probe_for(["CoreMLExecutionProvider"]), HostMemoryProbe)  # unified memory


def test_the_host_probe_answers_on_this_machine() -> None:
    free = HostMemoryProbe().free_bytes()
    assert free is not None and free > 0
