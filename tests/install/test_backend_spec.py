"""Installing ACE-Step 1.5 turbo: what it fetches (never the planner LM), the plan, consent,
resume and the refusals; all without exporting (the stand-in checkpoint of ``turbo_support``).

The end-to-end 1.5 setup with the real exporter is in ``test_turbo_install.py``.
"""

from __future__ import annotations

import fnmatch
import json
import sys
import threading
from pathlib import Path

import pytest
from fake_hub import TURBO_DECOY_LM, FakeHub, turbo_decoys
from install.support import (
    Event,
    FakeTerminal,
    assert_not_installed,
    checkpoint_bytes,
    leftovers,
    recorder,
)
from install.turbo_support import fp32_bytes, write_turbo_checkpoint

from lofi_daemon import errors
from lofi_daemon.__main__ import main
from lofi_daemon.errors import LofiError
from lofi_daemon.install import options as v1_options
from lofi_daemon.install.backend_spec import SPECS, TURBO_SPEC, V1_SPEC, backend_spec
from lofi_daemon.install.installer import run_install
from lofi_daemon.install.options import InstallOptions
from lofi_daemon.install.plan import bytes_on_disk, export_estimate, plan_install
from lofi_daemon.install.progress import format_bytes
from lofi_daemon.install.variant import VariantOptions, run_variant_install
from lofi_daemon.model import layout, turbo_layout
from lofi_daemon.model.backends import BACKENDS

TURBO = turbo_layout.BACKEND
SILENCE = f"{turbo_layout.DIT.name}/silence_latent.pt"


@pytest.fixture
def turbo_ck(tmp_path: Path) -> Path:
    return write_turbo_checkpoint(tmp_path / "turbo-checkpoint")


def turbo_options(models: Path, **kwargs: object) -> InstallOptions:
    return InstallOptions(models, backend=TURBO, **kwargs)  # type: ignore[arg-type]


# -- the spec ----------------------------------------------------------------------------------


def test_every_backend_has_a_spec_and_v1_keeps_its_lists() -> None:
    assert set(SPECS) == set(BACKENDS)
    assert backend_spec("ace-step") is V1_SPEC and backend_spec(TURBO) is TURBO_SPEC
    assert V1_SPEC.allow_patterns == v1_options.ALLOW_PATTERNS
    assert V1_SPEC.required_files == v1_options.REQUIRED_FILES
    assert InstallOptions().repo_id == layout.REPO_ID == v1_options.REPO_ID
    assert turbo_options(Path("x")).repo_id == turbo_layout.REPO_ID
    with pytest.raises(LofiError) as info:
        InstallOptions(backend="ace-step-2")
    assert info.value.code == errors.INVALID_BACKEND and "ace-step-2" in info.value.message


def test_the_1_5_allow_list_is_the_three_dit_only_folders_and_never_the_lm() -> None:
    assert TURBO_SPEC.repo_id == "ACE-Step/Ace-Step1.5"
    assert TURBO_SPEC.allow_patterns == turbo_layout.ALLOW_PATTERNS
    folders = {p.split("/", 1)[0] for p in TURBO_SPEC.allow_patterns}
    assert folders == {"acestep-v15-turbo", "vae", "Qwen3-Embedding-0.6B"}
    assert SILENCE in TURBO_SPEC.allow_patterns and SILENCE in TURBO_SPEC.required_files
    assert set(TURBO_SPEC.required_files) <= set(TURBO_SPEC.allow_patterns)
    # huggingface_hub filters with fnmatch: no pattern may match anything of the planner LM.
    for decoy in [*turbo_decoys(), "acestep-5Hz-lm-0.6B/model.safetensors"]:
        assert not any(fnmatch.fnmatch(decoy, p) for p in TURBO_SPEC.allow_patterns), decoy
    assert TURBO_SPEC.lora is False and TURBO_SPEC.graphs == 4


# -- the plan ----------------------------------------------------------------------------------


def test_the_local_plan_counts_fp32_weights_and_the_embedding_copy(
    turbo_ck: Path, tmp_path: Path
) -> None:
    plan = plan_install(turbo_options(tmp_path / TURBO, checkpoint=turbo_ck))
    every, embed = fp32_bytes()
    assert plan.source == "local" and plan.download_bytes == 0
    assert plan.export_bytes == export_estimate(every, embed) == export_estimate(every) + embed


def test_the_hub_plan_takes_only_the_allow_list_and_sizes_the_export(
    turbo_ck: Path, tmp_path: Path, hf_home: Path
) -> None:
    with FakeHub(turbo_ck, turbo_layout.REPO_ID, extra=turbo_decoys()) as hub:
        plan = plan_install(turbo_options(tmp_path / TURBO, endpoint=hub.url))
        bodies = [r for r in hub.body_requests() if r.range != "bytes=0-100000"]
        lm_requests = [r for r in hub.seen() if TURBO_DECOY_LM in r.path]
    assert {f.path for f in plan.files} == set(turbo_layout.ALLOW_PATTERNS)
    assert plan.download_bytes == checkpoint_bytes(turbo_ck)
    assert plan.export_bytes == export_estimate(*fp32_bytes())
    silence = next(f for f in plan.files if f.path == SILENCE)
    assert silence.sha256 is not None  # an LFS file: checked by sha256 after the download
    assert bodies == [] and lm_requests == []


def test_a_hub_revision_without_silence_latent_is_refused(
    turbo_ck: Path, tmp_path: Path, hf_home: Path
) -> None:
    (turbo_ck / SILENCE).unlink()
    with FakeHub(turbo_ck, turbo_layout.REPO_ID) as hub, pytest.raises(LofiError) as info:
        plan_install(turbo_options(tmp_path / TURBO, endpoint=hub.url))
    assert info.value.code == errors.MODEL_DOWNLOAD_FAILED
    assert f"lacks {SILENCE}" in info.value.message


def test_a_local_checkpoint_without_silence_latent_installs_nothing(
    turbo_ck: Path, tmp_path: Path
) -> None:
    (turbo_ck / SILENCE).unlink()
    models = tmp_path / "models" / TURBO
    with pytest.raises(LofiError) as info:
        run_install(turbo_options(models, checkpoint=turbo_ck))
    assert info.value.code == errors.SETUP_FAILED
    assert "is not an ACE-Step 1.5 turbo checkpoint" in info.value.message
    assert f"(missing {SILENCE})" in info.value.message
    assert "acestep-v15-turbo" in info.value.remedy and turbo_layout.REPO_ID in info.value.remedy
    assert_not_installed(models)
    assert leftovers(models) == set()


# -- consent, resume and refusals ----------------------------------------------------------------


def test_a_declined_1_5_download_fetches_nothing(
    turbo_ck: Path,
    tmp_path: Path,
    hf_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    models = tmp_path / "models" / TURBO
    monkeypatch.setattr(sys, "stdin", FakeTerminal("n\n"))
    with FakeHub(turbo_ck, turbo_layout.REPO_ID, extra=turbo_decoys()) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        code = main(["setup", TURBO, "--models", str(models), "--no-progress"])
        bodies = [r for r in hub.body_requests() if r.range != "bytes=0-100000"]
    err = capsys.readouterr().err
    assert code == 1
    size = format_bytes(checkpoint_bytes(turbo_ck))
    assert f"download {size} of ACE-Step 1.5 turbo weights" in err
    assert "[y/N]" in err and "declined" in err
    assert bodies == []
    assert_not_installed(models)


def test_without_a_terminal_the_1_5_download_needs_yes(
    turbo_ck: Path, tmp_path: Path, hf_home: Path
) -> None:
    with FakeHub(turbo_ck, turbo_layout.REPO_ID) as hub:
        options = turbo_options(tmp_path / TURBO, endpoint=hub.url)
        with pytest.raises(LofiError) as info:
            run_install(options)
        bodies = [r for r in hub.body_requests() if r.range != "bytes=0-100000"]
    assert "needs your consent" in info.value.message and f"{turbo_layout.REPO_ID}" in (
        info.value.message
    )
    assert f":Lofi setup {TURBO}" in info.value.remedy
    assert info.value.data["download_bytes"] == checkpoint_bytes(turbo_ck)
    assert bodies == []


def test_an_interrupted_1_5_download_resumes(tmp_path: Path, hf_home: Path) -> None:
    from huggingface_hub.constants import DOWNLOAD_CHUNK_SIZE

    checkpoint = write_turbo_checkpoint(tmp_path / "ck", big_bytes=3 * DOWNLOAD_CHUNK_SIZE)
    total = checkpoint_bytes(checkpoint)
    models = tmp_path / "models" / TURBO
    with FakeHub(checkpoint, turbo_layout.REPO_ID, extra=turbo_decoys()) as hub:
        options = turbo_options(models, endpoint=hub.url, assume_yes=True)
        hub.bytes_per_sec = 5e6
        cancel = threading.Event()

        def stop_midway(phase: str, done: int, total_: int, percent: float, message: str) -> None:
            if phase == "download" and done >= DOWNLOAD_CHUNK_SIZE:
                cancel.set()

        with pytest.raises(LofiError) as info:
            run_install(options, progress=stop_midway, cancel=cancel)
        assert info.value.code == errors.GENERATION_CANCELLED
        files = plan_install(options).files
        partial = bytes_on_disk(options.download_dir, files)
        assert 0 < partial < total
        seen_before = len(hub.seen())

        # The rerun resumes the partial file; stop it as the export begins (a stand-in
        # checkpoint cannot be exported).
        hub.bytes_per_sec = None
        again = threading.Event()
        events: list[Event] = []
        record = recorder(events)

        def stop_at_export(phase: str, done: int, total_: int, percent: float, msg: str) -> None:
            record(phase, done, total_, percent, msg)
            if phase == "export":
                again.set()

        with pytest.raises(LofiError):
            run_install(options, progress=stop_at_export, cancel=again)
        rerun = hub.seen()[seen_before:]
        lm_requests = [r for r in hub.seen() if TURBO_DECOY_LM in r.path]
    downloads = [e for e in events if e[0] == "download"]
    assert downloads[0][1] == partial and downloads[-1][1] == total
    assert any(
        r.range and r.range.startswith("bytes=") and r.range != "bytes=0-100000"
        for r in rerun
        if r.method == "GET"
    )
    assert lm_requests == []
    assert bytes_on_disk(options.download_dir, files) == total
    assert not (options.download_dir / TURBO_DECOY_LM).exists()
    assert_not_installed(models)


def test_1_5_setup_will_not_replace_the_v1_models(turbo_ck: Path, tmp_path: Path) -> None:
    v1 = tmp_path / "models" / "ace-step"
    v1.mkdir(parents=True)
    manifest = json.dumps({"schema_version": 1, "model_version": "ace-step-v1-x"})
    (v1 / "manifest.json").write_text(manifest)
    with pytest.raises(LofiError) as info:
        run_install(turbo_options(v1, checkpoint=turbo_ck))
    assert info.value.code == errors.SETUP_FAILED
    assert "holds the ace-step models" in info.value.message
    assert (v1 / "manifest.json").read_text() == manifest
    assert sorted(p.name for p in v1.iterdir()) == ["manifest.json"]


def test_lora_is_a_v1_only_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    models = tmp_path / TURBO
    code = main(["setup", TURBO, "--models", str(models), "--lora", "someone/lora", "--yes"])
    err = capsys.readouterr().err
    assert code == 1
    assert "--lora" in err and "ace-step (v1) only" in err and TURBO in err
    assert not models.exists()
    with pytest.raises(LofiError) as info:
        run_variant_install(VariantOptions("someone/lora", base=turbo_options(models)))
    assert info.value.code == errors.INVALID_PARAMETER
    assert TURBO in info.value.message
