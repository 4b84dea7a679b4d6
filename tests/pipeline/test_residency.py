"""The residency policy (``keep_loaded`` auto/true/false) with a fake memory probe, a fake clock
and a fake idle timer: over a real SessionPool whose sessions are doubles (unit part), and over
the real engines on the tiny exported models, counting session creations (engine part)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.pipeline import providers as providers_module
from lofi_daemon.pipeline.engine import Engine
from lofi_daemon.pipeline.memory import GIB
from lofi_daemon.pipeline.params import GenerationParams
from lofi_daemon.pipeline.residency import (
    Residency,
    ResidencyConfig,
    graph_bytes,
    keep_loaded_mode,
)
from lofi_daemon.pipeline.sessions import SessionPool

MIB = 1024**2


class FakeProbe:
    """Free memory as the test sets it (None: unknown)."""

    name = "fake RAM"

    def __init__(self, free: int | None) -> None:
        self.free = free
        self.calls = 0

    def free_bytes(self) -> int | None:
        self.calls += 1
        return self.free


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeTimer:
    """Records what is armed; ``fire()`` runs the armed callback as the timer thread would."""

    armed: list[tuple[float, Callable[[], None]]] = field(default_factory=list)
    cancelled: int = 0

    def __call__(self, delay: float, callback: Callable[[], None]) -> Callable[[], None]:
        entry = (delay, callback)
        self.armed.append(entry)

        def cancel() -> None:
            if entry in self.armed:
                self.armed.remove(entry)
                self.cancelled += 1

        return cancel

    def fire(self) -> None:
        _, callback = self.armed.pop()
        callback()


@dataclass
class Graph:
    file: str
    external_data: str | None = None


@dataclass
class FakeManifest:
    root: Path
    graphs: dict[str, Graph]

    def graph_path(self, graph: str) -> Path:
        return self.root / self.graphs[graph].file


class FakeSession:
    def get_providers(self) -> list[str]:
        return ["CPUExecutionProvider"]


@pytest.fixture
def created(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Replaces session creation with doubles; counts creations per graph file name."""
    counts: Counter[str] = Counter()

    def create(path: Path, *args: Any, **kwargs: Any) -> FakeSession:
        counts[path.name] += 1
        return FakeSession()

    monkeypatch.setattr(providers_module, "create_session", create)
    return counts


def _manifest(root: Path) -> FakeManifest:
    """A folder of sparse files: denoiser 3 GiB (2 GiB external data), encoders 1 GiB + 256 MiB,
    decoder 512 MiB."""
    sizes = {
        "denoiser.onnx": 1 * GIB,
        "denoiser.data": 2 * GIB,
        "text_encoder.onnx": 1 * GIB,
        "condition_encoder.onnx": 256 * MIB,
        "dcae_decoder.onnx": 512 * MIB,
    }
    for name, size in sizes.items():
        with open(root / name, "wb") as f:
            f.truncate(size)
    return FakeManifest(
        root,
        {
            "denoiser": Graph("denoiser.onnx", "denoiser.data"),
            "text_encoder": Graph("text_encoder.onnx"),
            "condition_encoder": Graph("condition_encoder.onnx"),
            "dcae_decoder": Graph("dcae_decoder.onnx"),
        },
    )


@dataclass
class Setup:
    residency: Residency
    pool: SessionPool
    manifest: FakeManifest
    probe: FakeProbe
    clock: FakeClock
    timer: FakeTimer
    idle_calls: list[int]

    def generation(self) -> None:
        """What an engine does: encoders (dropped), the kept graph, the resident decoder."""
        self.residency.runner("text_encoder", self.manifest)
        self.residency.runner("condition_encoder", self.manifest)
        self.residency.kept_runner(self.manifest)
        self.residency.runner("dcae_decoder", self.manifest, resident=True)
        self.residency.after_generation()


@pytest.fixture
def make(tmp_path: Path, created: Counter[str]) -> Callable[..., Setup]:
    def build(mode: str = "auto", free: int | None = 8 * GIB) -> Setup:
        pool = SessionPool("cpu")
        probe, clock, timer = FakeProbe(free), FakeClock(), FakeTimer()
        idle_calls: list[int] = []
        residency = Residency(
            pool,
            ResidencyConfig(mode=mode),
            "denoiser",
            lambda: idle_calls.append(1),
            probe=probe,
            clock=clock,
            schedule=timer,
        )
        return Setup(residency, pool, _manifest(tmp_path), probe, clock, timer, idle_calls)

    return build


# --- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "mode"),
    [(True, "true"), (False, "false"), ("auto", "auto"), ("TRUE", "true"), ("false", "false")],
)
def test_keep_loaded_accepts_a_bool_or_a_mode(value: object, mode: str) -> None:
    assert keep_loaded_mode(value) == mode
    assert ResidencyConfig.of(value).mode == mode


@pytest.mark.parametrize("value", ["sometimes", "", 1, None])
def test_a_bad_keep_loaded_is_invalid_parameter(value: object) -> None:
    with pytest.raises(LofiError) as info:
        ResidencyConfig.of(value)
    assert info.value.code == errors.INVALID_PARAMETER
    assert "keep_loaded must be one of auto, true, false" in info.value.message


def test_bad_timeouts_and_headroom_are_refused() -> None:
    with pytest.raises(LofiError, match="above 0 seconds"):
        ResidencyConfig(idle_timeout_sec=0)
    with pytest.raises(LofiError, match="cannot be negative"):
        ResidencyConfig(headroom_bytes=-1)
    config = ResidencyConfig()
    assert (config.mode, config.idle_timeout_sec, config.headroom_bytes) == ("auto", 600.0, GIB)
    assert ResidencyConfig.of(config) is config


def test_graph_bytes_count_the_onnx_file_and_its_external_data(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    assert graph_bytes(manifest, "denoiser") == 3 * GIB
    assert graph_bytes(manifest, "text_encoder") == GIB


# --- auto ------------------------------------------------------------------------------------


def test_auto_keeps_the_denoiser_when_it_fits(
    make: Callable[..., Setup], created: Counter[str]
) -> None:
    s = make(free=8 * GIB)
    s.generation()
    assert s.pool.is_resident("denoiser")
    # the next generation loads the two encoders (1.25 GiB) plus 1 GiB headroom
    assert s.residency.working_set() == GIB + 256 * MIB + GIB
    assert [delay for delay, _ in s.timer.armed] == [600.0]
    s.generation()
    assert created["denoiser.onnx"] == 1  # loaded once for both generations
    assert created["text_encoder.onnx"] == 2 and created["dcae_decoder.onnx"] == 1
    status = s.residency.status()
    assert status["mode"] == "auto" and status["last_drop"] is None
    kept = next(e for e in status["resident"] if e["graph"] == "denoiser")
    assert kept == {
        "graph": "denoiser",
        "bytes": 3 * GIB,
        "reason": "fits: 8.0 GiB free, the next generation needs 2.2 GiB",
        "idle_drop_in_s": 600,
    }


def test_auto_drops_the_denoiser_after_the_idle_timeout(make: Callable[..., Setup]) -> None:
    s = make()
    s.generation()
    s.clock.now += 599
    assert s.residency.status()["resident"][0]["idle_drop_in_s"] == 1
    s.timer.fire()  # the engine's callback (here: recorded) then calls drop_if_idle
    assert s.idle_calls == [1]
    s.residency.drop_if_idle()
    assert s.pool.is_resident("denoiser")  # 599 s idle: kept, timer re-armed for the rest
    assert [delay for delay, _ in s.timer.armed] == [pytest.approx(1.0)]
    s.clock.now += 1
    s.residency.drop_if_idle()
    assert not s.pool.is_resident("denoiser")
    assert s.pool.is_resident("dcae_decoder")  # the decoder stays under every mode
    assert s.residency.status()["last_drop"] == {"graph": "denoiser", "reason": "idle 600 s"}
    assert s.timer.armed == []


def test_a_generation_restarts_the_idle_time(
    make: Callable[..., Setup], created: Counter[str]
) -> None:
    s = make()
    s.generation()
    s.clock.now += 500
    s.generation()
    s.clock.now += 500  # 1000 s since the first, 500 since the last
    s.residency.drop_if_idle()
    assert s.pool.is_resident("denoiser") and created["denoiser.onnx"] == 1


def test_auto_drops_the_denoiser_after_a_generation_when_memory_is_short(
    make: Callable[..., Setup], created: Counter[str]
) -> None:
    s = make(free=2 * GIB)  # under the 2.25 GiB working set
    s.generation()
    assert not s.pool.is_resident("denoiser")
    assert s.residency.status()["last_drop"] == {
        "graph": "denoiser",
        "reason": "does not fit: 2.0 GiB free, the next generation needs 2.2 GiB",
    }
    assert s.timer.armed == []
    s.generation()
    assert created["denoiser.onnx"] == 2


def test_an_unknown_free_memory_does_not_fit(make: Callable[..., Setup]) -> None:
    s = make(free=None)
    s.generation()  # the decoder's first load finds no room it can count on
    assert not s.pool.is_resident("denoiser")
    assert s.residency.status()["last_drop"] == {
        "graph": "denoiser",
        "reason": "memory short: unknown free, loading dcae_decoder needs 1.5 GiB",
    }
    s.generation()  # decoder resident: the denoiser is judged after the generation
    assert not s.pool.is_resident("denoiser")
    drop = s.residency.status()["last_drop"]
    assert drop is not None and drop["reason"].startswith("does not fit: unknown free")


def test_auto_drops_the_denoiser_before_another_graph_loads_when_memory_is_short(
    make: Callable[..., Setup], created: Counter[str]
) -> None:
    s = make(free=8 * GIB)
    s.generation()
    assert s.pool.is_resident("denoiser")
    s.probe.free = 3 * GIB  # something else took memory meanwhile: 1 GiB + 1 GiB still fits
    s.residency.runner("text_encoder", s.manifest)
    assert s.pool.is_resident("denoiser")
    s.probe.free = GIB  # now the text encoder (1 GiB) plus the headroom do not fit
    s.residency.runner("text_encoder", s.manifest)
    assert not s.pool.is_resident("denoiser")
    assert s.residency.status()["last_drop"] == {
        "graph": "denoiser",
        "reason": "memory short: 1.0 GiB free, loading text_encoder needs 2.0 GiB",
    }
    assert s.timer.armed == []  # nothing left to drop when idle
    assert created["text_encoder.onnx"] == 3  # one per load: the loads themselves go on


def test_status_while_a_generation_uses_the_denoiser(make: Callable[..., Setup]) -> None:
    s = make()
    s.generation()
    s.residency.kept_runner(s.manifest)  # the next generation has started with it
    assert s.timer.armed == []  # no idle drop while it is in use
    s.residency.drop_if_idle()
    s.clock.now += 10_000
    s.residency.drop_if_idle()
    assert s.pool.is_resident("denoiser")
    entry = next(e for e in s.residency.status()["resident"] if e["graph"] == "denoiser")
    assert entry["reason"] == "in use by the running generation" and "idle_drop_in_s" not in entry


# --- true and false --------------------------------------------------------------------------


def test_true_always_keeps_it(make: Callable[..., Setup], created: Counter[str]) -> None:
    s = make(mode="true", free=0)
    s.generation()
    s.generation()
    s.clock.now += 10_000
    s.residency.drop_if_idle()
    assert s.pool.is_resident("denoiser") and created["denoiser.onnx"] == 1
    assert s.probe.calls == 0 and s.timer.armed == []
    [kept] = [e for e in s.residency.status()["resident"] if e["graph"] == "denoiser"]
    assert kept["reason"] == "keep_loaded = true"


def test_false_loads_runs_and_drops(make: Callable[..., Setup], created: Counter[str]) -> None:
    s = make(mode="false", free=100 * GIB)
    s.generation()
    s.generation()
    assert created["denoiser.onnx"] == 2 and not s.pool.is_resident("denoiser")
    assert s.residency.status() == {
        "mode": "false",
        "idle_unload_sec": 600.0,
        "resident": [
            {"graph": "dcae_decoder", "bytes": 512 * MIB, "reason": "always resident (decoder)"}
        ],
        "last_drop": None,
    }


def test_clear_forgets_everything_and_stops_the_timer(make: Callable[..., Setup]) -> None:
    s = make()
    s.generation()
    s.residency.clear()
    assert s.pool.resident_graphs() == [] and s.timer.armed == [] and s.timer.cancelled == 1
    assert s.residency.status()["resident"] == []


# --- the real engines on the tiny models ------------------------------------------------------


_REAL_SESSIONS: dict[Path, Any] = {}


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts the session creations the engines ask for, per graph file name.

    Each real ONNX Runtime session is built once per file for the module and handed out again
    (building one costs more than running the tiny graphs; sessions hold no per-run state), so a
    count is what the engine requested, as the residency policy decides.
    """
    counts: Counter[str] = Counter()
    real = providers_module.create_session

    def create(path: Path, *args: Any, **kwargs: Any) -> Any:
        counts[path.name] += 1
        if path not in _REAL_SESSIONS:
            _REAL_SESSIONS[path] = real(path, *args, **kwargs)
        return _REAL_SESSIONS[path]

    monkeypatch.setattr(providers_module, "create_session", create)
    return counts


V1_FAST: dict[str, Any] = {"duration_sec": 5.0, "infer_steps": 2, "seed": 3}


def _v1(models: Path, mode: str, probe: FakeProbe, clock: FakeClock, timer: FakeTimer) -> Engine:
    return Engine(
        models,
        provider="cpu",
        threads=1,
        keep_loaded=mode,
        memory_probe=probe,
        clock=clock,
        schedule=timer,
    )


@pytest.fixture
def engines() -> Iterator[list[Any]]:
    made: list[Any] = []
    yield made
    for engine in made:
        engine.close()


@pytest.mark.parametrize(("mode", "loads"), [("auto", 1), ("false", 2)])
def test_v1_back_to_back_generations_load_the_denoiser_once_under_auto(
    tiny_models: Path,
    tmp_path: Path,
    counting: Counter[str],
    engines: list[Any],
    mode: str,
    loads: int,
) -> None:
    clock, timer = FakeClock(), FakeTimer()
    engine = _v1(tiny_models, mode, FakeProbe(64 * GIB), clock, timer)
    engines.append(engine)
    for name in ("a", "b"):
        engine.generate(GenerationParams("lofi", **V1_FAST), tmp_path / f"{name}.wav")
    assert counting["denoiser.onnx"] == loads
    assert counting["text_encoder.onnx"] == 2 and counting["vocoder.onnx"] == 1
    assert set(engine.session_load_times()) >= {"denoiser", "text_encoder", "vocoder"}
    status = engine.residency_status()
    graphs = [entry["graph"] for entry in status["resident"]]
    assert ("denoiser" in graphs) == (mode == "auto")
    if mode == "auto":
        clock.now += 600
        with engine._lock:  # a generation holds the engine: the idle callback leaves it alone
            engine.drop_idle()
        assert "denoiser" in [entry["graph"] for entry in engine.residency_status()["resident"]]
        timer.fire()  # idle: the callback takes the lock and drops the denoiser
        assert engine.residency_status()["last_drop"] == {
            "graph": "denoiser",
            "reason": "idle 600 s",
        }
        engine.generate(GenerationParams("lofi", **V1_FAST), tmp_path / "c.wav")
        assert counting["denoiser.onnx"] == 2


def test_v1_drops_the_denoiser_when_memory_turns_short_before_the_next_generation(
    tiny_models: Path, tmp_path: Path, counting: Counter[str], engines: list[Any]
) -> None:
    probe = FakeProbe(64 * GIB)
    engine = _v1(tiny_models, "auto", probe, FakeClock(), FakeTimer())
    engines.append(engine)
    engine.generate(GenerationParams("lofi", **V1_FAST), tmp_path / "a.wav")
    probe.free = 0
    dropped: list[str] = []
    drop = engine._residency.drop

    def spy(reason: str) -> None:
        dropped.append(reason)
        drop(reason)

    engine._residency.drop = spy  # type: ignore[method-assign]
    engine.generate(GenerationParams("lofi", **V1_FAST), tmp_path / "b.wav")
    assert counting["denoiser.onnx"] == 2
    # dropped before the first encoder of the second generation, then after it (no room)
    assert dropped[0].startswith("memory short: 0.0 GiB free, loading ")
    assert dropped[-1].startswith("does not fit: 0.0 GiB free, the next generation needs ")
    assert engine.residency_status()["last_drop"]["reason"] == dropped[-1]


@pytest.mark.parametrize(("mode", "loads"), [("auto", 1), ("false", 2)])
def test_turbo_back_to_back_generations_load_the_dit_once_under_auto(
    turbo_models: Path,
    tmp_path: Path,
    counting: Counter[str],
    engines: list[Any],
    mode: str,
    loads: int,
) -> None:
    from lofi_daemon.model import turbo_layout as tl
    from lofi_daemon.turbo import TurboEngine

    engine = TurboEngine(
        turbo_models,
        provider="cpu",
        threads=1,
        keep_loaded=mode,
        memory_probe=FakeProbe(64 * GIB),
        clock=FakeClock(),
        schedule=FakeTimer(),
    )
    engines.append(engine)
    params = GenerationParams(backend=tl.BACKEND, prompt="lofi", duration_sec=5.0, seed=1)
    for name in ("a", "b"):
        engine.generate(params, tmp_path / f"{name}.wav")
    dit = engine.manifest.graph_path(tl.GRAPH_DIT).name
    assert counting[dit] == loads
    graphs = [entry["graph"] for entry in engine.residency_status()["resident"]]
    assert (tl.GRAPH_DIT in graphs) == (mode == "auto")
    assert tl.GRAPH_DIT in engine.session_load_times()
