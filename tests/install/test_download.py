"""The download from a local fake hub: resuming an interrupted download, checksums of the files.

One real export runs here (about 90 s): the download path after an interrupted first attempt.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
from fake_hub import FakeHub
from install.support import (
    Event,
    FakeExporter,
    assert_monotonic,
    assert_not_installed,
    checkpoint_bytes,
    leftovers,
    phases,
    recorder,
)

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.install.download import download, git_blob_id
from lofi_daemon.install.installer import InstallResult, run_install
from lofi_daemon.install.options import REPO_ID, InstallOptions
from lofi_daemon.install.plan import bytes_on_disk, plan_install
from lofi_daemon.install.progress import Reporter
from lofi_daemon.install.verify import verify_installation


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
        options = InstallOptions(models_dir=models, endpoint=hub.url, assume_yes=True)
        # First attempt: cancelled part-way through the (throttled) download.
        hub.bytes_per_sec = 5e6
        cancel = threading.Event()
        first: list[Event] = []
        record = recorder(first)

        def stop_midway(phase: str, done: int, total_: int, percent: float, message: str) -> None:
            record(phase, done, total_, percent, message)
            if phase == "download" and done >= total - big + DOWNLOAD_CHUNK_SIZE:
                cancel.set()

        with pytest.raises(LofiError) as info:
            run_install(options, progress=stop_midway, cancel=cancel)
        assert info.value.code == errors.GENERATION_CANCELLED
        assert_not_installed(models)
        partial = bytes_on_disk(options.download_dir, plan_install(options).files)
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
        result = run_install(options, progress=recorder(events))
        rerun = hub.seen()[seen_before:]
        extras_requested = [r for r in hub.seen() if "README" in r.path or "unused" in r.path]

    assert isinstance(result, InstallResult) and not result.already_installed
    assert phases(events) == ["download", "export", "verify"]
    download = assert_monotonic(events, "download")
    assert download[0][2] == total and download[0][1] == partial
    export = assert_monotonic(events, "export")
    # Each graph is announced as it starts (issue 10, item 13): done counts the finished ones.
    assert export[-1][1] == 6 and [e[1] for e in export[1:-1]] == list(range(6))
    assert all(
        e[4].startswith("exporting ") and e[4].endswith(f".onnx ({i}/6)")
        for i, e in enumerate(export[1:-1], 1)
    ), export
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


def test_download_checksum_mismatch_deletes_the_bad_file(
    tiny_checkpoint: Path,
    tmp_path: Path,
    hf_home: Path,
    fake_exporter: FakeExporter,
) -> None:
    models = tmp_path / "models" / "ace-step"
    bad = "music_vocoder/diffusion_pytorch_model.safetensors"
    with FakeHub(tiny_checkpoint, REPO_ID) as hub:
        hub.tamper(bad)
        options = InstallOptions(
            models, endpoint=hub.url, assume_yes=True, exporter=fake_exporter("ok")
        )
        with pytest.raises(LofiError) as info:
            run_install(options)
        assert info.value.code == errors.MODEL_DOWNLOAD_FAILED
        assert bad in info.value.message
        assert_not_installed(models)
        assert not (options.download_dir / bad).exists()
        assert (options.download_dir / "umt5-base/model.safetensors").is_file()

        hub.tampered.clear()
        seen_before = len(hub.seen())
        run_install(options)
        fetched = [
            r.path
            for r in hub.seen()[seen_before:]
            if r.path.startswith("/cdn/") and r.range != "bytes=0-100000"
        ]
    assert fetched == [f"/cdn/{hub.files[bad].sha256}"]  # only the deleted file again
    verify_installation(models)


def test_the_git_blob_id_is_the_one_git_computes(tmp_path: Path) -> None:
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello\n")
    assert git_blob_id(path) == "ce013625030ba8dba906f756967f9e9ca394464a"  # git hash-object


# -- a hub that fails: one readable line and the offline route (issue 10, item 26) -------------


def _assert_readable(error: LofiError, *, resumes: bool) -> None:
    assert error.code == errors.MODEL_DOWNLOAD_FAILED
    assert "\n" not in error.message and "\\" not in error.message
    assert "Request ID" not in error.message and "Traceback" not in error.message
    assert len(error.message) < 240, error.message
    assert "--checkpoint DIR" in error.remedy and "checkpoint=DIR" in error.remedy
    assert ("resumes where it stopped" in error.remedy) is resumes


def test_an_unknown_repository_is_one_readable_line(
    tiny_checkpoint: Path, tmp_path: Path, hf_home: Path
) -> None:
    with FakeHub(tiny_checkpoint, REPO_ID) as hub:
        options = InstallOptions(
            tmp_path / "ace-step", endpoint=hub.url, repo_id="someone/else", assume_yes=True
        )
        with pytest.raises(LofiError) as info:
            run_install(options)
    assert info.value.message == (
        f"cannot read the file list of someone/else from {hub.url}: "
        "the hub answered HTTP 404 (Repository Not Found)"
    )
    _assert_readable(info.value, resumes=False)


def test_an_unreachable_hub_is_one_readable_line(tmp_path: Path, hf_home: Path) -> None:
    # Nothing listens on this port.
    options = InstallOptions(tmp_path / "ace-step", endpoint="http://127.0.0.1:9", assume_yes=True)
    with pytest.raises(LofiError) as info:
        run_install(options)
    assert info.value.message.endswith("the hub cannot be reached (Connection refused)")
    _assert_readable(info.value, resumes=False)


@pytest.mark.parametrize("partial", [False, True], ids=["nothing-yet", "partly-downloaded"])
def test_a_failed_download_promises_a_resume_only_with_bytes_on_disk(
    tiny_checkpoint: Path, tmp_path: Path, hf_home: Path, partial: bool
) -> None:
    models = tmp_path / "ace-step"
    with FakeHub(tiny_checkpoint, REPO_ID) as hub:
        plan = plan_install(InstallOptions(models, endpoint=hub.url))
    # The hub is gone now: the download child fails.
    options = InstallOptions(models, endpoint="http://127.0.0.1:9")
    if partial:
        folder = options.download_dir / ".cache" / "huggingface" / "download"
        folder.mkdir(parents=True)
        (folder / "abc.incomplete").write_bytes(b"x" * 1000)
    with pytest.raises(LofiError) as info:
        download(plan, options, Reporter(None), threading.Event(), None)
    # huggingface_hub may give up quietly when part of the folder exists: then the file check
    # reports the missing files; either way the message is one line with the offline route.
    assert info.value.message.startswith(
        (f"cannot download {REPO_ID} from http://127.0.0.1:9: ", "the download is incomplete: ")
    )
    _assert_readable(info.value, resumes=partial)
