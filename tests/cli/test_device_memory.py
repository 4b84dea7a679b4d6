"""Peak device memory sampled in a background thread, with fake samplers (no GPU needed)."""

from __future__ import annotations

import threading

import pytest

from lofi_daemon.cli import device_memory
from lofi_daemon.cli.device_memory import DeviceMemoryMonitor


class FakeSampler:
    """Returns the given readings in turn, then the last one forever; counts its calls."""

    def __init__(self, readings: list[list[float]]) -> None:
        self.readings = readings
        self.calls = 0
        self.enough = threading.Event()

    def __call__(self) -> list[float]:
        reading = self.readings[min(self.calls, len(self.readings) - 1)]
        self.calls += 1
        if self.calls >= len(self.readings):
            self.enough.set()
        return reading


def test_the_peak_of_every_gpu_is_reported_above_the_baseline() -> None:
    sampler = FakeSampler([[1000.0, 10.0], [5000.0, 20.0], [3000.0, 700.0], [1200.0, 15.0]])
    with DeviceMemoryMonitor(sampler, source="fake", interval=0.001) as monitor:
        assert sampler.enough.wait(5)
    out = monitor.report()
    assert out["per_gpu_peak_mib"] == [5000.0, 700.0]
    assert out["peak_mib"] == 5700.0
    assert out["baseline_mib"] == 1010.0
    assert out["peak_above_baseline_mib"] == 4690.0
    assert out["source"] == "fake" and out["samples"] >= 4


def test_a_monitor_never_started_has_no_sample() -> None:
    assert DeviceMemoryMonitor(FakeSampler([[1.0]]), find=False).report() == {
        "peak_mib": None,
        "reason": "no sample was taken",
    }


def test_no_gpu_gives_null_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_memory, "NvmlSampler", _failing("nvml", "no libnvidia-ml"))
    monkeypatch.setattr(device_memory, "SmiSampler", _failing("nvidia-smi", "not on PATH"))
    with DeviceMemoryMonitor(interval=0.001) as monitor:
        pass
    report = monitor.report()
    assert report["peak_mib"] is None
    assert (
        report["reason"] == "no NVIDIA GPU visible (nvml: no libnvidia-ml; nvidia-smi: not on PATH)"
    )
    quiet = DeviceMemoryMonitor(find=False, reason="the CPU provider uses no device memory")
    quiet.start()
    quiet.stop()
    assert quiet.report() == {"peak_mib": None, "reason": "the CPU provider uses no device memory"}


def _failing(name: str, why: str) -> type:
    class Failing:
        def __init__(self) -> None:
            raise OSError(why)

    Failing.name = name  # type: ignore[attr-defined]
    return Failing


def test_nvidia_smi_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_memory, "NvmlSampler", _failing("nvml", "no libnvidia-ml"))
    fake = FakeSampler([[42.0]])

    class Smi:
        name = "nvidia-smi"

        def __new__(cls) -> FakeSampler:  # type: ignore[misc]
            return fake

    monkeypatch.setattr(device_memory, "SmiSampler", Smi)
    sampler, source = device_memory.find_sampler()
    assert sampler is fake and source == "nvidia-smi"


def test_a_sampler_that_fails_later_keeps_the_peak_and_says_why() -> None:
    calls = {"n": 0}

    def flaky() -> list[float]:
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError("GPU is lost")
        return [100.0 * calls["n"]]

    monitor = DeviceMemoryMonitor(flaky, source="fake", interval=0.001)
    monitor.start()
    monitor._thread.join(5)  # type: ignore[union-attr]  # the thread ends on the error
    monitor.stop()
    report = monitor.report()
    assert report["peak_mib"] == 200.0 and report["error"] == "GPU is lost"


def test_smi_sampler_parses_one_line_per_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    monkeypatch.setattr(device_memory.shutil, "which", lambda name: "/usr/bin/nvidia-smi")

    def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        assert command[1:] == ["--query-gpu=memory.used", "--format=csv,noheader,nounits"]
        return subprocess.CompletedProcess(command, 0, "512\n1024\n", "")

    monkeypatch.setattr(device_memory.subprocess, "run", run)
    assert device_memory.SmiSampler()() == [512.0, 1024.0]


def test_nvml_that_cannot_load_is_an_oserror() -> None:
    with pytest.raises(OSError):
        device_memory.NvmlSampler("libnvidia-ml-that-does-not-exist.so.1")
