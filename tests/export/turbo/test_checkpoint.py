"""``write_turbo_checkpoint`` and ``load_turbo_modules``: the official ACE-Step 1.5 layout.

Headers are parsed here directly (struct + json), so the on-disk format is checked independently
of the code that wrote it. The full preset is checked for key counts, parameter counts and exact
byte sizes against the published files (doc §1.2-1.3) without writing its 6 GB.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from lofi_export.errors import CheckpointError, ExportError
from lofi_export.safetensors_io import write_streaming
from lofi_export.turbo import checkpoint_keys as ck
from lofi_export.turbo.checkpoint import write_turbo_checkpoint
from lofi_export.turbo.load import load_turbo_modules
from lofi_export.turbo.presets import FULL_PRESET, TINY, AceStepConfig, Qwen3Config
from safetensors import safe_open

from lofi_daemon.model import turbo_layout as tl

DIT_FILE = f"{tl.DIT.name}/{tl.DIT.weights}"
VAE_FILE = f"{tl.VAE.name}/{tl.VAE.weights}"
TEXT_FILE = f"{tl.TEXT_ENCODER.name}/{tl.TEXT_ENCODER.weights}"


def _header(path: Path) -> dict[str, Any]:
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header: dict[str, Any] = json.loads(raw[8 : 8 + length])
    return header


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("turbo") / "ck"
    write_turbo_checkpoint(out, "tiny", seed=0)
    return out


def test_folder_and_file_names(root: Path) -> None:
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert files == set(tl.ALLOW_PATTERNS)
    assert {p.name for p in root.iterdir()} == {f.name for f in tl.FOLDERS}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (DIT_FILE, ck.dit_file_shapes(TINY.dit)),
        (VAE_FILE, ck.vae_shapes(TINY.vae)),
        (TEXT_FILE, ck.text_encoder_shapes(TINY.text)),
    ],
)
def test_weights_keys_dtypes_metadata_and_size(
    root: Path, name: str, expected: dict[str, tuple[int, ...]]
) -> None:
    path = root / name
    header = _header(path)
    assert header.pop("__metadata__") == {"format": "pt"}
    assert {k: tuple(v["shape"]) for k, v in header.items()} == expected
    assert {v["dtype"] for v in header.values()} == {"BF16"}
    assert path.stat().st_size == ck.checkpoint_file_size(expected)


def test_dit_file_prefixes(root: Path) -> None:
    keys = _header(root / DIT_FILE).keys() - {"__metadata__"}
    prefixes = {k.split(".")[0] for k in keys}
    assert prefixes == {"decoder", "encoder", "tokenizer", "detokenizer", "null_condition_emb"}
    assert {
        "decoder.proj_in.1.weight",
        "decoder.proj_out.1.bias",
        "encoder.text_projector.weight",
        "encoder.timbre_encoder.special_token",
        "tokenizer.quantizer.project_in.weight",
        "detokenizer.special_tokens",
    } <= keys


def test_configs(root: Path) -> None:
    dit = json.loads((root / tl.DIT.name / "config.json").read_text())
    assert dit["is_turbo"] is True and dit["model_version"] == "turbo"
    assert dit["layer_types"] == ["sliding_attention", "full_attention"] * 2
    assert AceStepConfig.from_json_dict(dit) == TINY.dit
    text = json.loads((root / tl.TEXT_ENCODER.name / "config.json").read_text())
    assert text["architectures"] == ["Qwen3Model"] and text["tie_word_embeddings"] is True
    assert Qwen3Config.from_json_dict(text) == TINY.text
    vae = json.loads((root / tl.VAE.name / "config.json").read_text())
    assert vae["_class_name"] == "AutoencoderOobleck"
    assert {k: vae[k] for k in TINY.vae} == TINY.vae


def test_silence_latent(root: Path) -> None:
    path = root / tl.DIT.name / "silence_latent.pt"
    with zipfile.ZipFile(path) as archive:
        assert "silence_latent/data/0" in archive.namelist()
    latent = torch.load(path, weights_only=True)
    assert latent.dtype == torch.float32
    assert tuple(latent.shape) == (1, TINY.latent_channels, tl.SILENCE_LATENT_FRAMES)
    assert 0.9 < float(latent.std()) < 1.1


def test_same_seed_same_weights_other_seed_differs(root: Path, tmp_path: Path) -> None:
    write_turbo_checkpoint(tmp_path / "a", "tiny", seed=0)
    write_turbo_checkpoint(tmp_path / "b", "tiny", seed=1)
    for name in (DIT_FILE, VAE_FILE, TEXT_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (root / name).read_bytes()
        assert (tmp_path / "b" / name).read_bytes() != (root / name).read_bytes()


def test_bad_requests_leave_nothing(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="unknown preset 'huge'"):
        write_turbo_checkpoint(tmp_path / "x", "huge")
    assert not (tmp_path / "x").exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an empty folder"):
        write_turbo_checkpoint(tmp_path / "busy")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_full_preset_matches_published_files() -> None:
    dit = ck.dit_file_shapes(FULL_PRESET.dit)
    vae = ck.vae_shapes(FULL_PRESET.vae)
    text = ck.text_encoder_shapes(FULL_PRESET.text)
    assert (len(dit), len(vae), len(text)) == (677, 365, 310)
    assert (ck.param_count(dit), ck.param_count(vae), ck.param_count(text)) == (
        2_393_872_518,
        168_695_426,
        595_776_512,
    )
    per_prefix: dict[str, tuple[int, int]] = {}
    for key, shape in dit.items():
        count, params = per_prefix.get(key.split(".")[0], (0, 0))
        per_prefix[key.split(".")[0]] = (count + 1, params + math.prod(shape))
    assert per_prefix == {
        "decoder": (476, 1_575_458_880),
        "encoder": (140, 608_367_616),
        "tokenizer": (32, 105_032_198),
        "detokenizer": (28, 105_011_776),
        "null_condition_emb": (1, 2_048),
    }
    assert ck.checkpoint_file_size(dit) == 4_787_825_604
    assert ck.checkpoint_file_size(vae) == 337_431_388
    assert ck.checkpoint_file_size(text) == 1_191_586_416


def test_load_turbo_modules(root: Path) -> None:
    mods = load_turbo_modules(root)
    c = TINY.latent_channels
    assert tuple(mods.silence_latent.shape) == (1, tl.SILENCE_LATENT_FRAMES, c)
    raw = torch.load(root / tl.DIT.name / "silence_latent.pt", weights_only=True)
    assert torch.equal(mods.silence_latent, raw.transpose(1, 2))
    with safe_open(str(root / DIT_FILE), framework="pt") as handle:
        want = handle.get_tensor("decoder.layers.1.cross_attn.k_norm.weight").float()
    assert torch.equal(mods.dit.layers[1].cross_attn.k_norm.weight, want)
    with safe_open(str(root / TEXT_FILE), framework="pt") as handle:
        emb = handle.get_tensor("embed_tokens.weight").float()
    assert torch.equal(mods.embed_tokens, emb)
    assert mods.embed_tokens.shape == (TINY.text.vocab_size, TINY.text.hidden_size)
    assert not mods.dit.training and not mods.vae.training
    assert all(p.dtype == torch.float32 for p in mods.dit.parameters())
    torch.testing.assert_close(
        mods.text_encoder.rotary_emb.inv_freq, 1e-6 ** (torch.arange(0, 16, 2) / 16)
    )
    with torch.no_grad():
        audio = mods.vae.decode(mods.silence_latent[:, :3].transpose(1, 2)).sample
    assert audio.shape == (1, 2, 3 * tl.SAMPLES_PER_LATENT_FRAME)


def test_load_refuses_a_missing_tensor(root: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "ck"
    shutil.copytree(root, damaged)
    path = damaged / TEXT_FILE
    with safe_open(str(root / TEXT_FILE), framework="pt") as handle:
        kept = [k for k in handle.keys() if k != "norm.weight"]  # noqa: SIM118
        tensors = {k: handle.get_tensor(k) for k in kept}
    entries = [(k, "BF16", tuple(tensors[k].shape), lambda k=k: tensors[k]) for k in kept]
    write_streaming(path, entries, metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"missing tensors norm\.weight"):
        load_turbo_modules(damaged)


def test_load_refuses_a_missing_file(root: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "ck"
    shutil.copytree(root, damaged)
    (damaged / tl.DIT.name / "silence_latent.pt").unlink()
    with pytest.raises(CheckpointError, match=r"silence_latent\.pt"):
        load_turbo_modules(damaged)
