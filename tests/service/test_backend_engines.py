"""BackendEngines: one engine per backend made on first use over its own folder, the backend a
request resolves to, and the ``backends.list`` entries (engine doubles, no daemon)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from daemon_doubles import FakeEngine

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.service.backend_engines import BackendEngines
from lofi_daemon.service.job_types import GenerationEngine

TURBO = "ace-step-1.5"


@dataclass
class EngineWithDir(FakeEngine):
    models_dir: Path = Path("/nonexistent")
    reloaded: int = 0

    def reload(self) -> None:
        self.reloaded += 1


class Factory:
    """Records what it was asked to make; fails while ``error`` is set."""

    def __init__(self, state: str = "ready") -> None:
        self.state = state
        self.made: list[tuple[str, Path]] = []
        self.engines: list[EngineWithDir] = []
        self.error: Exception | None = None

    def __call__(self, name: str, folder: Path, base: GenerationEngine) -> GenerationEngine:
        self.made.append((name, folder))
        if self.error is not None:
            raise self.error
        engine = EngineWithDir(state=self.state, models_dir=folder)
        self.engines.append(engine)
        return engine


def test_the_turbo_engine_is_made_once_beside_the_v1_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOFI_MODELS_DIR_ACE_STEP_1_5", raising=False)
    v1 = EngineWithDir(models_dir=tmp_path / "ace-step")
    factory = Factory()
    engines = BackendEngines(v1, factory=factory)
    assert factory.made == []  # nothing is made until asked for
    assert engines.engine("ace-step") is v1
    first = engines.engine(TURBO)
    assert engines.engine(TURBO) is first
    assert factory.made == [(TURBO, tmp_path / "ace-step-1.5")]
    engines.close()
    assert factory.engines[0].closed and not v1.closed


def test_the_1_5_folder_follows_its_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOFI_MODELS_DIR_ACE_STEP_1_5", str(tmp_path / "elsewhere"))
    engines = BackendEngines(EngineWithDir(models_dir=tmp_path / "v1"), factory=Factory())
    assert engines.folder(TURBO) == tmp_path / "elsewhere"


def test_a_runtime_that_cannot_load_is_an_error_state_until_reload(tmp_path: Path) -> None:
    factory = Factory()
    factory.error = ImportError("no module named lofi_daemon.turbo.engine")
    engines = BackendEngines(EngineWithDir(models_dir=tmp_path), factory=factory)
    state = engines.status(TURBO)
    assert state["status"] == "error" and "cannot be loaded" in state["message"]
    with pytest.raises(LofiError) as caught:
        engines.engine(TURBO)
    assert caught.value.code == errors.MODEL_LOAD_FAILED
    assert len(factory.made) == 1  # not retried on every status
    factory.error = None
    engines.reload()
    assert engines.status(TURBO)["status"] == "ready" and len(factory.made) == 2
    engines.reload()
    assert factory.engines[0].reloaded == 1


def test_resolve(tmp_path: Path) -> None:
    factory = Factory(state="not_installed")
    engines = BackendEngines(FakeEngine(state="ready"), models_dir=tmp_path, factory=factory)
    assert engines.resolve() == "ace-step"
    assert engines.resolve(TURBO) == TURBO
    with pytest.raises(LofiError) as caught:
        engines.resolve("ace-step-2")
    assert caught.value.code == errors.INVALID_BACKEND
    only_turbo = BackendEngines(
        FakeEngine(state="not_installed"), models_dir=tmp_path, factory=Factory()
    )
    assert only_turbo.resolve() == TURBO
    configured = BackendEngines(FakeEngine(), models_dir=tmp_path, default=TURBO, factory=factory)
    assert configured.resolve() == TURBO and configured.resolve("ace-step") == "ace-step"
    with pytest.raises(LofiError):
        BackendEngines(FakeEngine(), models_dir=tmp_path, default="nope")


def test_describe_lists_every_backend(tmp_path: Path) -> None:
    engines = BackendEngines(FakeEngine(), models_dir=tmp_path / "v1", factory=Factory())
    v1, turbo = engines.describe(lambda providers: providers[:1])
    assert (v1["name"], v1["default"], v1["models_dir"], v1["variants"]) == (
        "ace-step",
        True,
        None,
        [],
    )
    assert turbo["name"] == TURBO and turbo["default"] is False
    assert turbo["models_dir"] == str(tmp_path / "ace-step-1.5")
    assert turbo["max_duration_sec"] == 600.0 and turbo["providers"] == ["CPUExecutionProvider"]
    assert "shift" in turbo["params"] and "shift" not in v1["params"]


def test_use_replaces_only_other_backends(tmp_path: Path) -> None:
    engines = BackendEngines(FakeEngine(), models_dir=tmp_path, factory=Factory())
    double = FakeEngine(version="t")
    engines.use(TURBO, double)
    assert engines.engine(TURBO) is double
    with pytest.raises(ValueError):
        engines.use("ace-step", double)


@dataclass
class ResidentEngine(EngineWithDir):
    """An engine double with a residency policy (``residency_status``), or a broken one."""

    broken: bool = False

    def residency_status(self) -> dict[str, object]:
        if self.broken:
            raise RuntimeError("boom")
        return {"mode": "auto", "resident": [], "last_drop": None}


def test_residency_lists_the_engines_made_that_have_a_policy(tmp_path: Path) -> None:
    v1 = ResidentEngine(models_dir=tmp_path / "ace-step")
    engines = BackendEngines(v1, factory=Factory())
    assert engines.residency() == {"ace-step": {"mode": "auto", "resident": [], "last_drop": None}}
    engines.engine(TURBO)  # a double without residency_status: not listed
    assert list(engines.residency()) == ["ace-step"]
    v1.broken = True  # a failing engine is left out, never an error
    assert engines.residency() == {}
