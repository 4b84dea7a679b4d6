"""The params of every ``radio.*`` method, checked before the radio service is called (in
process, no daemon, no station: params that pass reach the service, which says
RADIO_NOT_ACTIVE or records them)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.service.cache import TrackCache
from lofi_daemon.service.job_types import GenerationEngine
from lofi_daemon.service.jobs import JobRunner
from lofi_daemon.service.radio import RadioService
from lofi_daemon.service.radio_handlers import RADIO_METHODS, RadioHandlers
from lofi_daemon.service.rpc import Reply


class RecordingRadio(RadioService):
    """A radio without a station that records the saves it is asked for."""

    def __init__(self, cache: TrackCache) -> None:
        super().__init__(cast(JobRunner, None), cache, lambda method, params: None)
        self.saves: list[Path | None] = []
        self.launched = 0

    def save(self, path: Path | None) -> tuple[dict[str, Any], Callable[[], None]]:
        self.saves.append(path)

        def launch() -> None:
            self.launched += 1

        return {"status": "saving", "path": str(path)}, launch


def not_ready() -> str:
    raise LofiError(errors.MODEL_NOT_FOUND, "no models", remedy="Run :Lofi setup ace-step.")


@pytest.fixture
def radio(tmp_path: Path) -> RecordingRadio:
    return RecordingRadio(TrackCache(tmp_path / "cache"))


def unknown_variant(name: str) -> GenerationEngine:
    raise LofiError(errors.INVALID_PARAMETER, f"unknown variant {name!r}")


@pytest.fixture
def handlers(radio: RecordingRadio) -> RadioHandlers:
    return RadioHandlers(radio, not_ready, unknown_variant, lambda method, params: None)


def code(handlers: RadioHandlers, method: str, params: dict[str, Any]) -> int:
    with pytest.raises(LofiError) as caught:
        handlers.table()[method](params)
    return caught.value.code


def test_the_table_has_every_radio_method(handlers: RadioHandlers) -> None:
    assert sorted(handlers.table()) == sorted(RADIO_METHODS)
    assert all(method.startswith("radio.") for method in RADIO_METHODS)


@pytest.mark.parametrize("method", ["radio.stop", "radio.status"])
def test_methods_without_params(handlers: RadioHandlers, method: str) -> None:
    assert code(handlers, method, {"now": True}) == errors.INVALID_PARAMS
    assert handlers.table()[method]({}) == {"status": "idle"}


def test_start(handlers: RadioHandlers) -> None:
    assert code(handlers, "radio.start", {"seed": 1}) == errors.INVALID_PROMPT
    assert code(handlers, "radio.start", {"prompt": "x", "tempo": 9}) == errors.INVALID_PARAMS
    bad = {"prompt": "x", "segment_sec": 1}
    assert code(handlers, "radio.start", bad) == errors.INVALID_PARAMETER
    with pytest.raises(LofiError) as caught:
        handlers.start({"prompt": "lofi", "seed": 3})
    assert caught.value.code == errors.BACKEND_NOT_INSTALLED
    assert "no models" in caught.value.message and caught.value.remedy


def test_position(handlers: RadioHandlers) -> None:
    good = {"station_id": "s", "index": 0, "position_sec": 0.0, "paused": False}
    assert code(handlers, "radio.position", {**good, "station_id": 3}) == errors.INVALID_PARAMS
    for name in ("index", "position_sec", "paused"):
        partial = {k: v for k, v in good.items() if k != name}
        assert code(handlers, "radio.position", partial) == errors.INVALID_PARAMS, name
    assert code(handlers, "radio.position", {**good, "x": 1}) == errors.INVALID_PARAMS
    assert code(handlers, "radio.position", good) == errors.RADIO_NOT_ACTIVE


def test_like(handlers: RadioHandlers) -> None:
    bad: list[dict[str, Any]] = [{"index": "1"}, {"index": True}, {"all": "yes"}, {"every": 1}]
    for params in bad:
        assert code(handlers, "radio.like", params) == errors.INVALID_PARAMS, params
    good: list[dict[str, Any]] = [{}, {"index": 2}, {"all": True}]
    for params in good:
        assert code(handlers, "radio.like", params) == errors.RADIO_NOT_ACTIVE, params


def test_save(handlers: RadioHandlers, radio: RecordingRadio) -> None:
    for params in ({"path": ""}, {"path": "  "}, {"path": 5}, {"file": "/a.flac"}):
        assert code(handlers, "radio.save", params) == errors.INVALID_PARAMS, params
    assert code(handlers, "radio.save", {"path": "rel.flac"}) == errors.INVALID_PARAMETER
    assert radio.saves == []
    reply = handlers.save({"path": "~/x.flac"})
    assert isinstance(reply, Reply) and reply.after is not None
    assert radio.saves == [Path("~/x.flac").expanduser()]
    assert radio.launched == 0  # the writer starts only once the reply is out
    reply.after()
    assert radio.launched == 1
    handlers.save({})
    assert radio.saves[-1] is None  # the service picks the default path


def test_save_without_a_station(tmp_path: Path) -> None:
    service = RadioService(cast(JobRunner, None), TrackCache(tmp_path / "c"), lambda m, p: None)
    handlers = RadioHandlers(service, not_ready, unknown_variant, lambda m, p: None)
    assert code(handlers, "radio.save", {"path": str(tmp_path / "a.flac")}) == (
        errors.RADIO_NOT_ACTIVE
    )
