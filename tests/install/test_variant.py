"""``lofi-daemon setup ace-step --lora``: a LoRA variant beside the base (install/variant.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from install.support import run_cli
from safetensors.torch import save_file

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.install.options import InstallOptions
from lofi_daemon.install.variant import VariantOptions, default_name, run_variant_install
from lofi_daemon.model.manifest import load_manifest
from lofi_daemon.model.variants import LORA_FILE, list_variants
from lofi_daemon.pipeline.engine import Engine
from lofi_daemon.pipeline.params import GenerationParams

#: The base model directory, the setup arguments before --lora, the first setup's result.
Setup = tuple[Path, list[str | Path], subprocess.CompletedProcess[str]]


def write_denoiser_lora(folder: Path) -> None:
    """A rank-4 LoRA on to_q and to_out.0 of every self-attention of the tiny transformer."""
    gen = torch.Generator().manual_seed(5)
    tensors = {}
    for block in range(20):
        for module in ("attn.to_q", "attn.to_out.0"):
            key = f"transformer_blocks.{block}.{module}"
            tensors[f"{key}.lora_A.weight"] = torch.randn(4, 64, generator=gen)
            tensors[f"{key}.lora_B.weight"] = torch.randn(64, 4, generator=gen)
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / LORA_FILE))


@pytest.fixture(scope="module")
def setup_variant(
    tiny_checkpoint: Path, tiny_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> Setup:
    root = tmp_path_factory.mktemp("variant")
    base = root / "ace-step"
    shutil.copytree(tiny_models, base)
    write_denoiser_lora(root / "My LoRA!")
    args: list[str | Path] = [
        "setup",
        "ace-step",
        "--models",
        base,
        "--checkpoint",
        tiny_checkpoint,
    ]
    result = run_cli(*args, "--lora", root / "My LoRA!", "--lora-weight", "0.5", "--yes")
    assert result.returncode == 0, result.stderr
    return base, args, result


def test_setup_installs_a_linked_variant(setup_variant: Setup) -> None:
    base, _, result = setup_variant
    target = base / "variants" / "My-LoRA"
    assert result.stdout.strip().splitlines()[-1] == str(target)
    manifest = load_manifest(target)
    assert manifest.raw["lora"]["graphs"] == ["denoiser"]
    assert manifest.raw["lora"]["base"]["files"] == "hardlink"
    for name in manifest.files:
        linked = os.stat(target / name).st_ino == os.stat(base / name).st_ino
        assert linked is not name.startswith("denoiser."), name
    assert [(v["name"], v["weight"]) for v in list_variants(base)] == [("My-LoRA", 0.5)]
    assert sorted(p.name for p in (base / "variants").iterdir()) == ["My-LoRA"]


def test_engine_generates_with_the_variant(setup_variant: Setup, tmp_path: Path) -> None:
    base, _, _ = setup_variant
    params = GenerationParams(prompt="lofi piano", duration_sec=5.0, seed=3, infer_steps=4)
    variant = Engine(base / "variants" / "My-LoRA", threads=2)
    with_lora = variant.generate(params, tmp_path / "a.wav")
    plain = Engine(base, threads=2).generate(params, tmp_path / "b.wav")
    audio_lora, rate = sf.read(tmp_path / "a.wav")
    audio_plain, _ = sf.read(tmp_path / "b.wav")
    assert rate == 48000 and audio_lora.shape == audio_plain.shape
    assert np.abs(audio_lora - audio_plain).max() > 1e-3  # the LoRA changed the track
    assert with_lora.model_version != plain.model_version


def test_rerun_leaves_the_variant_alone(setup_variant: Setup, tiny_checkpoint: Path) -> None:
    base, args, _ = setup_variant
    lora = base.parent / "My LoRA!"
    again = run_cli(*args, "--lora", lora, "--lora-weight", "0.5", "--yes")
    assert again.returncode == 0 and "already installed" in again.stderr
    other = run_cli(*args, "--lora", lora, "--lora-weight", "0.25", "--lora-name", "My-LoRA")
    assert other.returncode != 0 and "installed from another LoRA or weight" in other.stderr


def test_no_checkpoint_is_a_clear_error(tiny_models: Path, tmp_path: Path) -> None:
    base = tmp_path / "ace-step"
    shutil.copytree(tiny_models, base)
    write_denoiser_lora(tmp_path / "lora")
    options = VariantOptions(str(tmp_path / "lora"), base=InstallOptions(models_dir=base))
    with pytest.raises(LofiError) as info:
        run_variant_install(options)
    assert info.value.code == errors.SETUP_FAILED
    assert "checkpoint is not on disk" in info.value.message
    assert "--checkpoint DIR" in (info.value.remedy or "")
    assert not (base / "variants").exists()


def test_no_base_and_bad_lora_location(tmp_path: Path) -> None:
    options = VariantOptions("nowhere/at all", base=InstallOptions(models_dir=tmp_path / "none"))
    with pytest.raises(LofiError) as info:
        run_variant_install(options)
    assert info.value.code == errors.SETUP_FAILED
    assert "setup ace-step" in (info.value.remedy or "")


@pytest.mark.parametrize(
    ("lora", "name"),
    [
        ("/x/zh_rap_lora/", "zh_rap_lora"),
        (f"/x/rap v2/{LORA_FILE}", "rap-v2"),
        ("ACE-Step/ACE-Step-v1-chinese-rapper-LoRA", "ACE-Step-v1-chinese-rapper-LoRA"),
        ("/x/.hidden", "hidden"),
        ("/x/My LoRA!", "My-LoRA"),
    ],
)
def test_default_names(lora: str, name: str) -> None:
    assert default_name(lora) == name
