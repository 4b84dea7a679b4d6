"""``lofi-daemon setup ace-step`` on a terminal: the download prompt and the progress display.

(The module under test is ``lofi_daemon/cli/install.py``.)
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from fake_hub import FakeHub
from install.support import FakeTerminal, checkpoint_bytes

from lofi_daemon.__main__ import main
from lofi_daemon.cli.install import ProgressPrinter
from lofi_daemon.install.options import REPO_ID
from lofi_daemon.install.progress import format_bytes


def test_the_terminal_prompt_states_the_size_and_a_no_stops(
    tiny_checkpoint: Path,
    tmp_path: Path,
    hf_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    models = tmp_path / "models" / "ace-step"
    monkeypatch.setattr(sys, "stdin", FakeTerminal("n\n"))
    with FakeHub(tiny_checkpoint, REPO_ID) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        code = main(["setup", "ace-step", "--models", str(models), "--no-progress"])
        bodies = [r for r in hub.body_requests() if r.range != "bytes=0-100000"]
    err = capsys.readouterr().err
    assert code == 1
    assert f"download {format_bytes(checkpoint_bytes(tiny_checkpoint))} of ACE-Step" in err
    assert "[y/N]" in err and "declined" in err
    assert bodies == []


@pytest.mark.parametrize("tty", [True, False])
def test_the_progress_printer(tty: bool) -> None:
    stream = FakeTerminal() if tty else io.StringIO()
    printer = ProgressPrinter(enabled=True, stream=stream)
    for done in range(0, 101, 5):
        printer("download", done, 100, float(done), f"{done} of 100")
    printer("export", 1, 6, 16.67, "exported text_encoder.onnx (1/6)")
    printer.finish()
    text = stream.getvalue()
    if tty:
        assert text.count("\r") == 22 and "[download] 100.0%  100 of 100\n" in text
        assert text.endswith("[export]  16.7%  exported text_encoder.onnx (1/6)\n")
    else:
        lines = text.splitlines()
        assert [line.split("%")[0] for line in lines[:11]] == [
            f"[download] {p:5.1f}" for p in range(0, 101, 10)
        ]
        assert lines[11:] == ["[export]  16.7%  exported text_encoder.onnx (1/6)"]
