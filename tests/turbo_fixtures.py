"""Session fixtures for ACE-Step 1.5: a tiny random-weight checkpoint and its exported models.

Both are built with the real command line (``lofi-export tiny --model ace-step-1.5`` and
``lofi-export onnx``), through conftest's cache (``LOFI_TEST_FIXTURE_CACHE``), exactly like the v1
``tiny_checkpoint``/``tiny_models`` fixtures. conftest.py imports them, so any test can ask for
them by name.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def turbo_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import _build_once, _fixture_dir  # at run time: conftest is fully loaded

    path = _fixture_dir(tmp_path_factory, "turbo-tiny") / "checkpoint"
    return _build_once(path, "tiny", str(path), "--model", "ace-step-1.5", "--seed", "0")


@pytest.fixture(scope="session")
def turbo_models(turbo_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import _build_once, _fixture_dir

    path = _fixture_dir(tmp_path_factory, "turbo-models") / "ace-step-1.5"
    return _build_once(path, "onnx", str(turbo_checkpoint), str(path))


@pytest.fixture(scope="session")
def turbo_fp16_models(turbo_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fp16 set of ``turbo_models`` (``lofi-export to-fp16``)."""
    from conftest import _build_once, _fixture_dir

    path = _fixture_dir(tmp_path_factory, "turbo-models-fp16") / "ace-step-1.5"
    return _build_once(path, "to-fp16", str(turbo_models), str(path))
