"""``lofi-daemon setup ace-step``: download (from a local fake hub), export, verify, install.

Two real exports run here (about 90 s each): the command line from a local checkpoint, and the
download path after an interrupted first attempt. Every other test swaps the exporter for a
small script that copies that first installation (see ``FAKE_EXPORTER``), so it stays fast while
still going through the real child process, progress parsing, verification and installation.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import soundfile as sf
from fake_hub import FakeHub
from lofi_export.__main__ import INSTALL_HINT

from lofi_daemon import errors
from lofi_daemon.__main__ import main
from lofi_daemon.cli.install import ProgressPrinter
from lofi_daemon.errors import LofiError
from lofi_daemon.install import installer as setup
from lofi_daemon.install.installer import (
    REPO_ID,
    SetupOptions,
    SetupResult,
    format_bytes,
    plan_setup,
    run_setup,
    verify_installation,
)
from lofi_daemon.model.manifest import load_manifest

Event = tuple[str, int, int, float, str]

# Stands in for ``python -m lofi_export``: copies an exported model directory into OUT, logging a
# ``wrote X.onnx`` line per graph, and records the checkpoint's sha256s as the real exporter does.
# argv: SOURCE MODE [--log-level INFO] onnx CHECKPOINT OUT --force, MODE in ok|hang|corrupt|fail.
FAKE_EXPORTER = """
import hashlib, json, os, shutil, sys, time
from pathlib import Path

source, mode = Path(sys.argv[1]), sys.argv[2]
flags = ("--log-level", "INFO", "onnx", "--force")
checkpoint, out = [Path(a) for a in sys.argv[3:] if a not in flags]
Path(os.environ["FAKE_EXPORTER_PIDFILE"]).write_text(str(os.getpid()))
partial = out.with_name(out.name + ".partial")
shutil.copytree(source, partial)
for index, graph in enumerate(sorted(partial.glob("*.onnx"))):
    print(f"lofi-export: wrote {graph.name} (0.1 MB of weights)", file=sys.stderr, flush=True)
    if mode == "hang":
        time.sleep(600)
if mode == "fail":
    message = "denoiser.onnx: cannot write (No space left on device)"
    print(f"lofi-export: error: {message}", file=sys.stderr)
    sys.exit(1)
manifest = json.loads((partial / "manifest.json").read_text())
for name, info in manifest["source"]["files"].items():
    info["sha256"] = hashlib.sha256((checkpoint / name).read_bytes()).hexdigest()
(partial / "manifest.json").write_text(json.dumps(manifest))
if mode == "corrupt":
    target = partial / "vocoder.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
partial.rename(out)
"""


def lofi_daemon() -> list[str]:
    script = Path(sys.executable).with_name("lofi-daemon")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "lofi_daemon"]


def run_cli(
    *args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*lofi_daemon(), *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        timeout=600,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


@pytest.fixture(scope="module")
def installed(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``lofi-daemon setup ace-step --checkpoint CK --models OUT --yes`` with the real exporter."""
    models = tmp_path_factory.mktemp("setup") / "ace-step"
    result = run_cli(
        "setup", "ace-step", "--checkpoint", tiny_checkpoint, "--models", models, "--yes"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(models)
    return models, result.stderr


@pytest.fixture
def fake_exporter(
    installed: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], tuple[str, ...]]:
    script = tmp_path / "fake_exporter.py"
    script.write_text(FAKE_EXPORTER)
    monkeypatch.setenv("FAKE_EXPORTER_PIDFILE", str(tmp_path / "exporter.pid"))
    return lambda mode: (sys.executable, str(script), str(installed[0]), mode)


@pytest.fixture
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty huggingface_hub home for the hub child processes (no token, no cache)."""
    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return home


def copy_install(installed: tuple[Path, str], tmp_path: Path) -> Path:
    models = tmp_path / "models" / "ace-step"
    shutil.copytree(installed[0], models)
    return models


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def leftovers(models: Path) -> set[str]:
    """What the setup left next to the model directory (besides it and its lock file)."""
    return {p.name for p in models.parent.iterdir()} - {models.name, f".{models.name}.lock"}


def assert_not_installed(models: Path) -> None:
    assert not models.exists()
    with pytest.raises(LofiError) as info:
        load_manifest(models)
    assert info.value.code == errors.MODEL_NOT_FOUND


def phases(events: list[Event]) -> list[str]:
    order: list[str] = []
    for event in events:
        if not order or order[-1] != event[0]:
            order.append(event[0])
    return order


def assert_monotonic(events: list[Event], phase: str) -> list[Event]:
    mine = [e for e in events if e[0] == phase]
    assert mine, f"no {phase} progress"
    assert all(0.0 <= e[3] <= 100.0 for e in mine)
    assert [e[3] for e in mine] == sorted(e[3] for e in mine)
    assert [e[1] for e in mine] == sorted(e[1] for e in mine)
    assert mine[-1][3] == 100.0 and mine[-1][1] == mine[-1][2]
    return mine


def checkpoint_bytes(checkpoint: Path) -> int:
    return sum(p.stat().st_size for p in checkpoint.rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------------
# The two real exports


def test_setup_from_local_checkpoint_then_generate(
    installed: tuple[Path, str], tmp_path: Path
) -> None:
    models, stderr = installed
    manifest = verify_installation(models)
    assert set(manifest.graphs) >= {"text_encoder", "denoiser", "vocoder"}
    assert leftovers(models) == set()
    assert "[export] 100.0%" in stderr and "(6/6)" in stderr
    assert "[verify] 100.0%" in stderr

    out = tmp_path / "t.wav"
    args = ["generate", "x", "--duration", "5", "--steps", "2", "--models", models, "-o", out]
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    info = sf.info(str(out))
    assert info.samplerate == 48000 and info.channels == 2
    assert abs(info.duration - 5.0) < 0.1


def test_download_interrupted_then_resumed_installs(
    tiny_checkpoint: Path, tmp_path: Path, hf_home: Path
) -> None:
    models = tmp_path / "cache" / "ace-step"
    extra = {"README.md": b"# not needed\n", "ace_step_transformer/unused.bin": b"\0" * 4096}
    total = checkpoint_bytes(tiny_checkpoint)
    big = (tiny_checkpoint / "umt5-base/model.safetensors").stat().st_size
    # huggingface_hub writes a download in blocks of this size: stop once one of the big file
    # is on disk (the other files are smaller and done by then at this rate).
    from huggingface_hub.constants import DOWNLOAD_CHUNK_SIZE

    assert big > DOWNLOAD_CHUNK_SIZE
    with FakeHub(tiny_checkpoint, REPO_ID, extra=extra) as hub:
        options = SetupOptions(models_dir=models, endpoint=hub.url, assume_yes=True)
        # First attempt: cancelled part-way through the (throttled) download.
        hub.bytes_per_sec = 5e6
        cancel = threading.Event()
        first: list[Event] = []

        def stop_midway(*event: object) -> None:
            first.append(event)  # type: ignore[arg-type]
            done = int(event[1])  # type: ignore[call-overload]
            if event[0] == "download" and done >= total - big + DOWNLOAD_CHUNK_SIZE:
                cancel.set()

        with pytest.raises(LofiError) as info:
            run_setup(options, progress=stop_midway, cancel=cancel)
        assert info.value.code == errors.GENERATION_CANCELLED
        assert_not_installed(models)
        partial = setup._bytes_on_disk(options.download_dir, plan_setup(options).files)
        assert total - big < partial < total
        assert all(0 < e[1] <= total and e[2] == total for e in first[1:])
        incomplete = options.download_dir / ".cache/huggingface/download"
        resume_at = {p.stat().st_size for p in incomplete.rglob("*.incomplete")}
        assert resume_at and 0 not in resume_at
        assert leftovers(models) == {f"{models.name}.download"}
        seen_before = len(hub.seen())

        # The rerun resumes the partial files (Range requests) and installs.
        hub.bytes_per_sec = None
        events: list[Event] = []
        result = run_setup(options, progress=lambda *e: events.append(e))  # type: ignore[arg-type]
        rerun = hub.seen()[seen_before:]
        extras_requested = [r for r in hub.seen() if "README" in r.path or "unused" in r.path]

    assert isinstance(result, SetupResult) and not result.already_installed
    assert phases(events) == ["download", "export", "verify"]
    download = assert_monotonic(events, "download")
    assert download[0][2] == total and download[0][1] == partial
    export = assert_monotonic(events, "export")
    assert export[-1][1] == 6 and [e[1] for e in export[1:-1]] == list(range(1, 7))
    assert_monotonic(events, "verify")
    assert 0 < result.downloaded_bytes == total - partial

    resumed = [r for r in rerun if r.method == "GET" and r.range and r.range != "bytes=0-100000"]
    assert {r.range for r in resumed} == {f"bytes={size}-" for size in resume_at}
    assert extras_requested == []

    manifest = verify_installation(models)
    assert manifest.model_version == result.model_version
    for name, info_ in manifest.raw["source"]["files"].items():
        digest = hashlib.sha256((tiny_checkpoint / name).read_bytes()).hexdigest()
        assert info_["sha256"] == digest
    assert leftovers(models) == set()  # staging and the download folder are gone


# --------------------------------------------------------------------------------------------
# Interruptions, checksums, refusals (fake exporter)


def test_cancel_during_export_leaves_no_models_dir(
    tiny_checkpoint: Path, tmp_path: Path, fake_exporter: Callable[[str], tuple[str, ...]]
) -> None:
    models = tmp_path / "models" / "ace-step"
    cancel = threading.Event()
    events: list[Event] = []

    def cancel_after_first_graph(*event: object) -> None:
        events.append(event)  # type: ignore[arg-type]
        if event[0] == "export" and event[1] == 1:
            cancel.set()

    options = SetupOptions(models, checkpoint=tiny_checkpoint, exporter=fake_exporter("hang"))
    with pytest.raises(LofiError) as info:
        run_setup(options, progress=cancel_after_first_graph, cancel=cancel)
    assert info.value.code == errors.GENERATION_CANCELLED
    assert_not_installed(models)
    assert leftovers(models) == set()
    pid = int(Path(os.environ["FAKE_EXPORTER_PIDFILE"]).read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the exporter was stopped and reaped

    options = SetupOptions(models, checkpoint=tiny_checkpoint, exporter=fake_exporter("ok"))
    result = run_setup(options)
    assert verify_installation(models).model_version == result.model_version


def test_failed_export_reports_its_error(
    tiny_checkpoint: Path, tmp_path: Path, fake_exporter: Callable[[str], tuple[str, ...]]
) -> None:
    models = tmp_path / "models" / "ace-step"
    options = SetupOptions(models, checkpoint=tiny_checkpoint, exporter=fake_exporter("fail"))
    with pytest.raises(LofiError) as info:
        run_setup(options)
    assert info.value.code == errors.SETUP_FAILED
    assert "No space left on device" in info.value.message
    assert_not_installed(models)
    assert leftovers(models) == set()


def test_checksum_mismatch_is_reported_and_keeps_the_previous_install(
    installed: tuple[Path, str],
    tiny_checkpoint: Path,
    tmp_path: Path,
    fake_exporter: Callable[[str], tuple[str, ...]],
) -> None:
    models = copy_install(installed, tmp_path)
    before = (models / "manifest.json").read_bytes()
    options = SetupOptions(models, checkpoint=tiny_checkpoint, exporter=fake_exporter("corrupt"))
    with pytest.raises(LofiError) as info:
        run_setup(options)
    assert info.value.code == errors.MODEL_LOAD_FAILED
    assert "vocoder.onnx" in info.value.message and "checksum" in info.value.message
    assert "setup ace-step" in info.value.remedy
    assert (models / "manifest.json").read_bytes() == before
    verify_installation(models)  # the old installation is untouched
    assert leftovers(models) == set()


def test_verify_detects_a_corrupt_installed_file(
    installed: tuple[Path, str], tmp_path: Path
) -> None:
    models = copy_install(installed, tmp_path)
    flip_byte(models / "denoiser.onnx")
    result = run_cli("setup", "ace-step", "--verify", "--models", models)
    assert result.returncode == 1
    assert "checksum mismatch" in result.stderr and "denoiser.onnx" in result.stderr
    assert "remedy: Run :Lofi setup ace-step" in result.stderr


def test_setup_repairs_a_corrupt_install_from_the_hub(
    installed: tuple[Path, str],
    tiny_checkpoint: Path,
    tmp_path: Path,
    hf_home: Path,
    fake_exporter: Callable[[str], tuple[str, ...]],
) -> None:
    models = copy_install(installed, tmp_path)
    flip_byte(models / "denoiser.onnx")
    with FakeHub(tiny_checkpoint, REPO_ID) as hub:
        options = SetupOptions(
            models, endpoint=hub.url, assume_yes=True, exporter=fake_exporter("ok")
        )
        result = run_setup(options)
    assert not result.already_installed
    assert result.downloaded_bytes == checkpoint_bytes(tiny_checkpoint)
    verify_installation(models)


def test_a_verified_install_is_left_alone(installed: tuple[Path, str], tmp_path: Path) -> None:
    models = copy_install(installed, tmp_path)
    # Nothing listens on this port: the hub must not be contacted at all.
    options = SetupOptions(models, endpoint="http://127.0.0.1:9")
    events: list[Event] = []
    result = run_setup(options, progress=lambda *e: events.append(e))  # type: ignore[arg-type]
    assert result.already_installed and result.downloaded_bytes == 0
    assert phases(events) == ["verify"]
    assert_monotonic(events, "verify")


def test_download_checksum_mismatch_deletes_the_bad_file(
    tiny_checkpoint: Path,
    tmp_path: Path,
    hf_home: Path,
    fake_exporter: Callable[[str], tuple[str, ...]],
) -> None:
    models = tmp_path / "models" / "ace-step"
    bad = "music_vocoder/diffusion_pytorch_model.safetensors"
    with FakeHub(tiny_checkpoint, REPO_ID) as hub:
        hub.tamper(bad)
        options = SetupOptions(
            models, endpoint=hub.url, assume_yes=True, exporter=fake_exporter("ok")
        )
        with pytest.raises(LofiError) as info:
            run_setup(options)
        assert info.value.code == errors.MODEL_DOWNLOAD_FAILED
        assert bad in info.value.message
        assert_not_installed(models)
        assert not (options.download_dir / bad).exists()
        assert (options.download_dir / "umt5-base/model.safetensors").is_file()

        hub.tampered.clear()
        seen_before = len(hub.seen())
        run_setup(options)
        fetched = [
            r.path
            for r in hub.seen()[seen_before:]
            if r.path.startswith("/cdn/") and r.range != "bytes=0-100000"
        ]
    assert fetched == [f"/cdn/{hub.files[bad].sha256}"]  # only the deleted file again
    verify_installation(models)


def test_no_consent_and_no_terminal_refuses_before_downloading(
    tiny_checkpoint: Path, tmp_path: Path, hf_home: Path
) -> None:
    models = tmp_path / "models" / "ace-step"
    with FakeHub(tiny_checkpoint, REPO_ID) as hub:
        result = run_cli("setup", "ace-step", "--models", models, env={"HF_ENDPOINT": hub.url})
        bodies = [r for r in hub.body_requests() if r.range != "bytes=0-100000"]
    assert result.returncode == 1
    size = format_bytes(checkpoint_bytes(tiny_checkpoint))
    assert f"downloading {size} from {hub.url}/{REPO_ID} needs your consent" in result.stderr
    assert "--yes" in result.stderr
    assert bodies == []
    assert not models.parent.exists() or leftovers(models) == set()
    assert_not_installed(models)


def test_a_declined_download_downloads_nothing(
    tiny_checkpoint: Path, tmp_path: Path, hf_home: Path
) -> None:
    models = tmp_path / "models" / "ace-step"
    asked: list[int] = []
    with FakeHub(tiny_checkpoint, REPO_ID) as hub:
        options = SetupOptions(models, endpoint=hub.url)
        with pytest.raises(LofiError) as info:
            run_setup(options, confirm=lambda plan: asked.append(plan.remaining_bytes) or False)
        bodies = [r for r in hub.body_requests() if r.range != "bytes=0-100000"]
    assert info.value.code == errors.SETUP_FAILED and "declined" in info.value.message
    assert asked == [checkpoint_bytes(tiny_checkpoint)]
    assert bodies == []
    assert not options.download_dir.exists()


def fake_disk(free: int) -> Callable[[object], SimpleNamespace]:
    return lambda path: SimpleNamespace(total=10 * free, used=9 * free, free=free)


def test_insufficient_disk_space_for_the_export(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models" / "ace-step"
    options = SetupOptions(models, checkpoint=tiny_checkpoint)
    needed = plan_setup(options).export_bytes
    monkeypatch.setattr(shutil, "disk_usage", fake_disk(needed - 1))
    with pytest.raises(LofiError) as info:
        run_setup(options)
    assert info.value.code == errors.SETUP_FAILED
    assert "not enough free disk space" in info.value.message
    assert info.value.data["needed_bytes"] == needed
    assert "--models" in info.value.remedy
    assert_not_installed(models)


def test_insufficient_disk_space_counts_the_download(
    tiny_checkpoint: Path, tmp_path: Path, hf_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models" / "ace-step"
    with FakeHub(tiny_checkpoint, REPO_ID) as hub:
        options = SetupOptions(models, endpoint=hub.url, assume_yes=True)
        plan = plan_setup(options)
        monkeypatch.setattr(shutil, "disk_usage", fake_disk(plan.export_bytes))
        with pytest.raises(LofiError) as info:
            run_setup(options)
        bodies = [r for r in hub.body_requests() if r.range != "bytes=0-100000"]
    assert info.value.data["needed_bytes"] == plan.export_bytes + checkpoint_bytes(tiny_checkpoint)
    assert f"{format_bytes(checkpoint_bytes(tiny_checkpoint))} to download" in info.value.message
    assert bodies == []
    assert not options.download_dir.exists()


def test_missing_export_extra_prints_the_install_command(
    tiny_checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    real = importlib.util.find_spec

    def without_torch(name: str, *args: object) -> object:
        return None if name == "torch" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_torch)
    models = tmp_path / "models" / "ace-step"
    code = main(
        ["setup", "ace-step", "--checkpoint", str(tiny_checkpoint), "--models", str(models)]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "missing: torch" in err
    assert INSTALL_HINT in err
    assert_not_installed(models)


def test_one_setup_at_a_time(tiny_checkpoint: Path, tmp_path: Path) -> None:
    fcntl = pytest.importorskip("fcntl")  # the lock is msvcrt's on Windows
    models = tmp_path / "models" / "ace-step"
    models.parent.mkdir(parents=True)
    options = SetupOptions(models, checkpoint=tiny_checkpoint)
    with options.lock_path.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(LofiError) as info:
            run_setup(options)
    assert info.value.code == errors.SETUP_FAILED
    assert "another setup" in info.value.message


def test_refuses_to_replace_a_foreign_folder(tiny_checkpoint: Path, tmp_path: Path) -> None:
    models = tmp_path / "Documents"
    models.mkdir()
    (models / "notes.txt").write_text("mine")
    with pytest.raises(LofiError) as info:
        run_setup(SetupOptions(models, checkpoint=tiny_checkpoint))
    assert "not a lofi.nvim model directory" in info.value.message
    assert (models / "notes.txt").read_text() == "mine"


def test_a_folder_that_is_not_a_checkpoint_is_rejected(tmp_path: Path) -> None:
    options = SetupOptions(tmp_path / "ace-step", checkpoint=tmp_path)
    with pytest.raises(LofiError) as info:
        run_setup(options)
    assert "is not an ACE-Step v1 checkpoint" in info.value.message
    assert "umt5-base/model.safetensors" in info.value.message


def test_the_plan_measures_the_fp32_export_from_the_headers(tiny_checkpoint: Path) -> None:
    plan = plan_setup(SetupOptions(Path("/nonexistent/ace-step"), checkpoint=tiny_checkpoint))
    fp32 = 0
    for path in tiny_checkpoint.rglob("*.safetensors"):
        with path.open("rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(length))
        for key, tensor in header.items():
            if key != "__metadata__":
                count = 1
                for dim in tensor["shape"]:
                    count *= dim
                fp32 += 4 * count
    assert plan.export_bytes == setup._export_estimate(fp32)
    assert plan.download_bytes == 0 and plan.source == "local"


def test_the_runtime_imports_neither_torch_nor_huggingface_hub() -> None:
    code = (
        "import sys, lofi_daemon.install.installer, lofi_daemon.cli.install, lofi_daemon.__main__; "
        "print(sorted({'torch', 'huggingface_hub'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


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


def test_an_exporter_that_cannot_start_is_a_setup_error(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models" / "ace-step"
    exporter = (str(tmp_path / "no-such-python"),)
    with pytest.raises(LofiError) as info:
        run_setup(SetupOptions(models, checkpoint=tiny_checkpoint, exporter=exporter))
    assert info.value.code == errors.SETUP_FAILED
    assert "cannot start" in info.value.message
    assert_not_installed(models)
    assert leftovers(models) == set()


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
