"""Hostile model directories against one real ``lofi-daemon serve`` subprocess (issue 10, item 24).

The daemon serves a model folder that the test damages and repairs between requests: manifests of
the wrong types or not JSON at all, truncated, corrupt, missing or replaced graph files, the whole
folder gone or a file. After each change the daemon must stay up, ``backends.list`` must say what
is on disk now (``not_installed`` or ``error``, never a cached ``ready``), and a ``generate`` must
fail with a documented code (``MODEL_NOT_FOUND`` or ``MODEL_LOAD_FAILED``), never
``INTERNAL_ERROR``, either as its reply or as its one ``generation_error``. Besides the fixed
cases, seeded random manifest edits that ``jsonschema`` rejects are tried.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_doubles import DaemonProcess, RpcClient
from jsonschema import Draft202012Validator
from model_damage import corrupt_keep_size, truncate

from lofi_daemon import errors
from lofi_daemon.model.manifest import MANIFEST_NAME
from lofi_daemon.model.schema import manifest_schema

GEN: dict[str, Any] = {"prompt": "hostile models", "duration_sec": 5, "infer_steps": 1}
MODEL_CODES = {errors.MODEL_NOT_FOUND, errors.MODEL_LOAD_FAILED}
RANDOM_EDITS = 12
_seeds = itertools.count(1)

Damage = Callable[[Path, dict[str, Any]], object]


def _write_manifest(models: Path, data: Any) -> None:
    (models / MANIFEST_NAME).write_text(json.dumps(data), encoding="utf-8")


def _edit(**fields: Any) -> Damage:
    def apply(models: Path, manifest: dict[str, Any]) -> None:
        _write_manifest(models, {**manifest, **fields})

    return apply


def _text(content: str) -> Damage:
    return lambda models, _m: (models / MANIFEST_NAME).write_text(content, encoding="utf-8")


def _replace_with_copy(name: str, damage: Callable[[Path], None]) -> Damage:
    """Replace the link to a graph by a damaged copy (the shared fixture is never touched)."""

    def apply(models: Path, _manifest: dict[str, Any]) -> None:
        target = models / name
        real = target.resolve()
        target.unlink()
        shutil.copyfile(real, target)
        damage(target)

    return apply


def _replace_by_folder(name: str) -> Damage:
    def apply(models: Path, _manifest: dict[str, Any]) -> None:
        (models / name).unlink()
        (models / name).mkdir()

    return apply


def _remove_folder(models: Path, _manifest: dict[str, Any]) -> None:
    shutil.rmtree(models)


def _folder_is_a_file(models: Path, _manifest: dict[str, Any]) -> None:
    shutil.rmtree(models)
    models.write_text("not a folder")


#: (label, damage, the backends.list status it must report)
HOSTILE: list[tuple[str, Damage, str]] = [
    ("constants is a list", _edit(constants=[]), "error"),
    ("defaults is a list", _edit(defaults=[]), "error"),
    ("files is a list", _edit(files=[]), "error"),
    ("model_version is a number", _edit(model_version=5), "error"),
    ("graphs is a string", _edit(graphs="denoiser.onnx"), "error"),
    ("NaN constant", _text('{"schema_version": 1, "constants": {"dcae_scale": NaN}}'), "error"),
    ("manifest is a list", _text("[1, 2, 3]"), "error"),
    ("manifest is not JSON", _text("{not json"), "error"),
    ("manifest cut short", _text('{"schema_version": 1, "graphs": {'), "error"),
    ("manifest nested too deeply", _text("[" * 100_000 + "]" * 100_000), "error"),
    ("manifest not UTF-8", lambda m, _: (m / MANIFEST_NAME).write_bytes(b"\xff\xfe{}"), "error"),
    ("manifest missing", lambda m, _: (m / MANIFEST_NAME).unlink(), "not_installed"),
    ("manifest is a folder", _replace_by_folder(MANIFEST_NAME), "not_installed"),
    ("graph truncated", _replace_with_copy("vocoder.onnx", truncate), "error"),
    ("graph missing", lambda m, _: (m / "denoiser.onnx").unlink(), "not_installed"),
    ("graph is a folder", _replace_by_folder("dcae_decoder.onnx"), "not_installed"),
    ("tokenizer missing", lambda m, _: (m / "tokenizer.json").unlink(), "not_installed"),
    ("folder deleted", _remove_folder, "not_installed"),
    ("folder is a file", _folder_is_a_file, "not_installed"),
]

#: Values a random edit puts somewhere in the manifest.
ODD_VALUES: list[Any] = [[], {}, "", "x", -1, 0, 2**70, 1.5, None, True, [[[]]], {"a": {"b": []}}]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside ``value`` (dict keys and list indexes)."""
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


def _writer(data: dict[str, Any]) -> Damage:
    return lambda models, _manifest: _write_manifest(models, data)


def random_edits(manifest: dict[str, Any], count: int, seed: int) -> list[tuple[str, Damage]]:
    """``count`` edits of one value each that the schema rejects (so the daemon must refuse)."""
    rng = random.Random(seed)
    validator = Draft202012Validator(manifest_schema())
    paths = sorted(_paths(manifest), key=repr)
    edits: list[tuple[str, Damage]] = []
    while len(edits) < count:
        path, value = rng.choice(paths), rng.choice(ODD_VALUES)
        broken = copy.deepcopy(manifest)
        node = broken
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        if validator.is_valid(broken):
            continue
        edits.append((f"{'.'.join(map(str, path))} = {value!r}", _writer(broken)))
    return edits


def _install(tiny_models: Path, models: Path) -> None:
    """A fresh model folder of links to the fixture's files (cheap; damage replaces links)."""
    if models.is_dir() and not models.is_symlink():
        shutil.rmtree(models)
    elif models.exists() or models.is_symlink():
        models.unlink()
    shutil.copytree(
        tiny_models,
        models,
        copy_function=os.symlink,
        ignore=shutil.ignore_patterns(MANIFEST_NAME),
    )
    shutil.copyfile(tiny_models / MANIFEST_NAME, models / MANIFEST_NAME)


def _backend(client: RpcClient) -> dict[str, Any]:
    """The v1 entry of ``backends.list`` (the damaged folder is v1's)."""
    backends = client.result("backends.list", timeout=60)
    assert isinstance(backends, list)
    (entry,) = [b for b in backends if b["name"] == "ace-step"]
    assert isinstance(entry, dict)
    return entry


def _generate_outcome(client: RpcClient) -> tuple[str, int | None]:
    """("error", code) for a refused or failed generate, ("complete", None) for a track."""
    reply = client.call("generate", {**GEN, "seed": next(_seeds)}, timeout=60)
    if "error" in reply:
        code: int = reply["error"]["code"]
        return "error", code
    done = client.terminal(reply["result"]["track_id"], timeout=300)
    if done["method"] == "generation_error":
        return "error", done["params"]["code"]
    assert done["method"] == "generation_complete", done
    return "complete", None


@pytest.mark.slow
def test_hostile_model_directories(tiny_models: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    _install(tiny_models, models)
    manifest = json.loads((models / MANIFEST_NAME).read_text(encoding="utf-8"))
    cases: list[tuple[str, Damage, str]] = [
        *HOSTILE,
        *((label, damage, "error") for label, damage in random_edits(manifest, RANDOM_EDITS, 10)),
    ]
    # Same size, bad bytes: only loading the graph can tell, so the backend may say ready.
    corrupt = ("graph corrupt", _replace_with_copy("denoiser.onnx", corrupt_keep_size), "ready")
    cases.append(corrupt)
    daemon = DaemonProcess(
        [
            "--models",
            str(models),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--log-file",
            str(tmp_path / "daemon.log"),
        ],
        stderr_path=tmp_path / "stderr.txt",
    )
    client = daemon.client
    try:
        assert client.result("ping", timeout=60)["status"] == "ok", daemon.stderr()
        assert _backend(client)["status"] == "ready"
        for label, damage, expected in cases:
            damage(models, manifest)
            backend = _backend(client)
            assert backend["status"] == expected, (label, backend)
            outcome = _generate_outcome(client)
            assert outcome[0] == "error" and outcome[1] in MODEL_CODES, (label, outcome)
            assert client.result("ping")["status"] == "ok", label
            _install(tiny_models, models)
            assert _backend(client)["status"] == "ready", label  # repaired on disk: ready again
        codes = [m["error"]["code"] for m in client.messages if "error" in m]
        codes += [
            m["params"]["code"] for m in client.messages if m.get("method", "").endswith("error")
        ]
        assert errors.INTERNAL_ERROR not in codes
        assert client.bad_lines == []
        assert client.result("shutdown") == {"status": "shutting_down"}
        assert daemon.wait(60) == 0
    finally:
        daemon.kill()
    assert "Traceback" not in daemon.stderr()
