"""``generate``'s ``variant`` (lofi_daemon/service/variants.py): the variant's own engine runs
the job, the variant is part of the track id and recorded, an unknown one fails in the reply.
``lofi_daemon.model.variants`` is a stand-in module here."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from daemon_checks import GEN, MakeDaemon, error_code
from daemon_doubles import FakeEngine

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.service.variants import VariantEngines


@pytest.fixture(autouse=True)
def variants_module(monkeypatch: pytest.MonkeyPatch) -> None:
    def variant_dir(models_dir: Path, name: str) -> Path:
        if name != "jazz":
            raise LofiError(errors.INVALID_PARAMETER, f"no installed variant {name!r}")
        return models_dir / "variants" / name

    module = types.ModuleType("lofi_daemon.model.variants")
    module.variant_dir = variant_dir  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lofi_daemon.model.variants", module)


def test_a_variant_runs_on_its_own_engine(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    base, jazz = FakeEngine(), FakeEngine()
    made: list[Path] = []

    def factory(folder: Path) -> FakeEngine:
        made.append(folder)
        return jazz

    base.models_dir = tmp_path / "models"  # type: ignore[attr-defined]
    daemon = make_daemon(base)
    daemon.server.handlers.variants = VariantEngines(base, factory)
    client = daemon.client
    plain = client.result("generate", {**GEN, "seed": 1})
    varied = client.result("generate", {**GEN, "seed": 1, "variant": "jazz"})
    assert plain["track_id"] != varied["track_id"]
    done = client.terminal(varied["track_id"])
    assert done["method"] == "generation_complete"
    assert made == [tmp_path / "models" / "variants" / "jazz"]
    assert len(jazz.calls) == 1 and client.terminal(plain["track_id"])
    assert len(base.calls) == 1
    meta_path = Path(done["params"]["path"]).with_suffix(".json")
    assert json.loads(meta_path.read_text(encoding="utf-8"))["variant"] == "jazz"
    again = client.result("generate", {**GEN, "seed": 1, "variant": "jazz"})
    assert again["status"] == "cached" and made == [made[0]]  # one engine per variant


@pytest.mark.parametrize(
    ("variant", "code"), [("rock", errors.INVALID_PARAMETER), (7, errors.INVALID_PARAMS)]
)
def test_an_unknown_variant_fails_in_the_reply(
    make_daemon: MakeDaemon, tmp_path: Path, variant: object, code: int
) -> None:
    base = FakeEngine()
    base.models_dir = tmp_path / "models"  # type: ignore[attr-defined]
    daemon = make_daemon(base)
    daemon.server.handlers.variants = VariantEngines(base, lambda folder: FakeEngine())
    assert error_code(daemon.client.call("generate", {**GEN, "variant": variant})) == code
    assert base.calls == []


class ResidentEngine(FakeEngine):
    def residency_status(self) -> dict[str, object]:
        return {"mode": "auto", "resident": [], "last_drop": None}


def test_the_variants_engines_residency_is_listed_by_variant(tmp_path: Path) -> None:
    base = FakeEngine()
    base.models_dir = tmp_path / "models"  # type: ignore[attr-defined]
    engines = VariantEngines(base, lambda folder: ResidentEngine())
    assert engines.residency() == {}  # none made yet
    engines.get("jazz")
    assert engines.residency() == {
        "variant:jazz": {"mode": "auto", "resident": [], "last_drop": None}
    }
