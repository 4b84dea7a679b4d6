"""``lofi-export onnx`` puts the model directory in place atomically (export/export_models.py):
a failed or interrupted export leaves nothing behind, and an existing folder is replaced only with
``--force``. The graph export itself is stubbed out here; test_parity.py covers it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from lofi_export import export_models as export_models_module
from lofi_export.__main__ import main
from lofi_export.errors import ExportError
from lofi_export.export_models import export_models

ERROR_PREFIX = "lofi-export: error: "


def error_line(stderr: str) -> str:
    """The single ``lofi-export: error:`` line; fails on zero, several, or a traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    assert len(lines) == 1, stderr
    return lines[0]


def _failing_export(exc: BaseException) -> Callable[..., list]:
    def fake(_ckpt: object, out: Path, **_kwargs: object) -> list:
        (out / "denoiser.onnx").write_bytes(b"half written")
        raise exc

    return fake


def test_failure_during_export_leaves_nothing(
    tiny_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        export_models_module,
        "export_all_graphs",
        _failing_export(ExportError("denoiser.onnx: simulated failure")),
    )
    dest = tmp_path / "dest"
    dest.mkdir()
    code = main(["onnx", str(tiny_checkpoint), str(dest / "models")])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert error_line(captured.err) == ERROR_PREFIX + "denoiser.onnx: simulated failure"
    assert captured.err.strip() == ERROR_PREFIX + "denoiser.onnx: simulated failure"
    assert list(dest.iterdir()) == []  # neither the model directory nor a staging folder


def test_interrupted_export_leaves_nothing(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        export_models_module, "export_all_graphs", _failing_export(KeyboardInterrupt())
    )
    with pytest.raises(KeyboardInterrupt):
        export_models(tiny_checkpoint, tmp_path / "models")
    assert list(tmp_path.iterdir()) == []


def test_existing_model_dir_needs_force(
    tiny_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "old.onnx").write_text("old")
    code = main(["onnx", str(tiny_checkpoint), str(models)])
    line = error_line(capsys.readouterr().err)
    assert code == 1 and str(models) in line and "--force" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]
    assert (models / "old.onnx").read_text() == "old"

    # --force replaces the folder as a whole (graph export stubbed out: that is not under test).
    monkeypatch.setattr(export_models_module, "export_all_graphs", lambda *_a, **_k: [])
    assert main(["onnx", str(tiny_checkpoint), str(models), "--force"]) == 0
    assert capsys.readouterr().out.strip() == str(models)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]
    assert sorted(p.name for p in models.iterdir()) == [
        "manifest.json",
        "mel_frontend.npz",
        "tokenizer.json",
    ]
