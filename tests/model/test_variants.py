"""Variant folders beside a base model (lofi_daemon/model/variants.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model.variants import check_variant_name, list_variants, variant_dir


def _variant(models: Path, name: str, lora: dict | None) -> Path:
    path = models / "variants" / name
    path.mkdir(parents=True)
    manifest = {"schema_version": 1} | ({"lora": lora} if lora is not None else {})
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "x" * 65, "sp ace", "é"])
def test_bad_names_are_invalid_parameters(tmp_path: Path, name: str) -> None:
    with pytest.raises(LofiError) as info:
        variant_dir(tmp_path, name)
    assert info.value.code == errors.INVALID_PARAMETER
    assert repr(name) in info.value.message


def test_good_names() -> None:
    for name in ("rap", "zh_rap-v1.2", "x" * 64, "..a"):
        assert check_variant_name(name) == name


def test_missing_variant_names_the_setup_command(tmp_path: Path) -> None:
    _variant(tmp_path, "rap", {"source": "ACE-Step/rap-lora", "weight": 1.0})
    with pytest.raises(LofiError) as info:
        variant_dir(tmp_path, "jazz")
    assert info.value.code == errors.BACKEND_NOT_INSTALLED
    assert "installed: rap" in info.value.message
    assert "lofi-daemon setup ace-step --lora" in (info.value.remedy or "")
    assert variant_dir(tmp_path, "rap") == tmp_path / "variants" / "rap"


def test_list_variants_skips_what_is_not_a_variant(tmp_path: Path) -> None:
    assert list_variants(tmp_path) == []
    _variant(tmp_path, "b-lora", {"source": "/loras/b", "weight": 0.5})
    _variant(tmp_path, "a-lora", {"source": "me/a", "weight": 1.0})
    _variant(tmp_path, "no-lora", None)
    _variant(tmp_path, ".a.setup", {"source": "x", "weight": 1.0})
    (tmp_path / "variants" / "broken").mkdir()
    assert [(v["name"], v["lora"], v["weight"]) for v in list_variants(tmp_path)] == [
        ("a-lora", "me/a", 1.0),
        ("b-lora", "/loras/b", 0.5),
    ]
