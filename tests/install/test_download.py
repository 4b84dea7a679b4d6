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
from lofi_daemon.install.download import git_blob_id
from lofi_daemon.install.installer import InstallResult, run_install
from lofi_daemon.install.options import REPO_ID, InstallOptions
from lofi_daemon.install.plan import bytes_on_disk, plan_install
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
