"""``lofi-export onnx`` on an ACE-Step 1.5 checkpoint (export/turbo/export.py, graphs.py, detect.py).

Each exported graph is compared with the project's torch module (``load_turbo_modules``) at two
values of every dynamic length; the manifest, the three arrays and the refusals of a damaged or
unknown checkpoint folder are checked against docs and common contract names."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from lofi_export.__main__ import main
from lofi_export.turbo.load import TurboModules, load_turbo_modules

from lofi_daemon.model import layout, turbo_layout

ERROR_PREFIX = "lofi-export: error: "
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def modules(turbo_checkpoint: Path) -> TurboModules:
    return load_turbo_modules(turbo_checkpoint)


@pytest.fixture(scope="module")
def manifest(turbo_models: Path) -> dict[str, Any]:
    return json.loads((turbo_models / "manifest.json").read_text())


def _session(models: Path, name: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(models / f"{name}.onnx"), providers=["CPUExecutionProvider"])


def _max_diff(onnx_out: np.ndarray, torch_out: torch.Tensor) -> float:
    assert onnx_out.shape == tuple(torch_out.shape)
    return float(np.abs(onnx_out - torch_out.numpy()).max())


@pytest.mark.parametrize("length", [9, 40])
def test_text_encoder_matches_torch(turbo_models: Path, modules: TurboModules, length: int) -> None:
    ids = torch.randint(0, modules.text_config.vocab_size, (1, length), generator=_gen(length))
    (hidden,) = _session(turbo_models, "text_encoder").run(None, {"input_ids": ids.numpy()})
    with torch.no_grad():
        expected = modules.text_encoder(ids)
    assert _max_diff(hidden, expected) <= TOLERANCE


@pytest.mark.parametrize(("text_len", "lyric_len"), [(7, 12), (33, 70)])
def test_condition_encoder_matches_torch(
    turbo_models: Path, modules: TurboModules, text_len: int, lyric_len: int
) -> None:
    dt = modules.dit_config.text_hidden_dim
    gen = _gen(text_len)
    text = torch.randn(1, text_len, dt, generator=gen)
    lyric = torch.randn(1, lyric_len, dt, generator=gen)
    text_states, lyric_states = _session(turbo_models, "condition_encoder").run(
        None, {"text_hidden": text.numpy(), "lyric_embeds": lyric.numpy()}
    )
    with torch.no_grad():
        want_text, want_lyric = modules.condition_encoder(text, lyric)
    assert _max_diff(text_states, want_text) <= TOLERANCE
    assert _max_diff(lyric_states, want_lyric) <= TOLERANCE


@pytest.mark.parametrize(("frames", "cond_len", "t"), [(128, 21, 1.0), (200, 46, 0.3)])
def test_dit_matches_torch(
    turbo_models: Path, modules: TurboModules, frames: int, cond_len: int, t: float
) -> None:
    cfg = modules.dit_config
    c = cfg.audio_acoustic_hidden_dim
    gen = _gen(frames)
    x = torch.randn(1, frames, c, generator=gen)
    enc = torch.randn(1, cond_len, cfg.hidden_size, generator=gen)
    context = torch.randn(1, frames, 2 * c, generator=gen)
    timestep = torch.tensor([t], dtype=torch.float32)
    (velocity,) = _session(turbo_models, "dit").run(
        None,
        {
            "hidden_states": x.numpy(),
            "timestep": timestep.numpy(),
            "encoder_hidden_states": enc.numpy(),
            "context_latents": context.numpy(),
        },
    )
    with torch.no_grad():
        expected = modules.dit(x, timestep, enc, context)
    assert _max_diff(velocity, expected) <= TOLERANCE


@pytest.mark.parametrize("frames", [128, 201])
def test_vae_decoder_matches_torch(
    turbo_models: Path, turbo_checkpoint: Path, modules: TurboModules, frames: int
) -> None:
    """Against the weight-normed torch VAE, run in float64 (the export folds the weight norm, so
    the two differ by float32 rounding only)."""
    z = torch.randn(1, modules.dit_config.audio_acoustic_hidden_dim, frames, generator=_gen(frames))
    (audio,) = _session(turbo_models, "vae_decoder").run(None, {"latents": z.numpy()})
    assert audio.shape == (1, 2, turbo_layout.SAMPLES_PER_LATENT_FRAME * frames)
    exact = load_turbo_modules(turbo_checkpoint).vae.double()  # its own copy: .double() is in place
    with torch.no_grad():
        reference = exact.decode(z.double()).sample.float()
    assert 1.0 < float(reference.abs().max()) < 100.0  # audio-like, and the peak limit runs
    assert _max_diff(audio, reference) <= TOLERANCE


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_arrays(turbo_models: Path, modules: TurboModules) -> None:
    embed = np.load(turbo_models / "embed_tokens.npy")
    silence = np.load(turbo_models / "silence_latent.npy")
    timbre = np.load(turbo_models / "silence_timbre.npy")
    assert embed.dtype == silence.dtype == timbre.dtype == np.float32
    np.testing.assert_array_equal(embed, modules.embed_tokens.numpy())
    channels = modules.dit_config.audio_acoustic_hidden_dim
    assert silence.shape == (turbo_layout.SILENCE_LATENT_FRAMES, channels)
    np.testing.assert_array_equal(silence, modules.silence_latent[0].numpy())
    with torch.no_grad():
        expected = modules.condition_encoder.timbre(
            modules.silence_latent[:, : turbo_layout.TIMBRE_FRAMES]
        )
    assert timbre.shape == (1, 1, modules.dit_config.hidden_size)
    np.testing.assert_allclose(timbre, expected.numpy(), rtol=0, atol=1e-6)


IO = {
    "text_encoder": (["input_ids"], ["hidden"]),
    "condition_encoder": (["text_hidden", "lyric_embeds"], ["text_states", "lyric_states"]),
    "dit": (
        ["hidden_states", "timestep", "encoder_hidden_states", "context_latents"],
        ["velocity"],
    ),
    "vae_decoder": (["latents"], ["audio"]),
}


def test_manifest(
    turbo_models: Path, turbo_checkpoint: Path, manifest: dict[str, Any], modules: TurboModules
) -> None:
    assert set(manifest) == {
        "schema_version",
        "backend",
        "variant",
        "model_version",
        "precision",
        "graphs",
        "arrays",
        "tokenizer",
        "constants",
        "defaults",
        "files",
    }
    assert (manifest["schema_version"], manifest["backend"], manifest["variant"]) == (
        1,
        "ace-step-1.5",
        "turbo",
    )
    assert manifest["precision"] == "fp32"
    assert manifest["model_version"] == f"ace-step-1.5-turbo-{_version_hex(turbo_checkpoint)}"
    assert sorted(manifest["graphs"]) == sorted(turbo_layout.GRAPHS)  # written with sorted keys
    for name, (inputs, outputs) in IO.items():
        entry = manifest["graphs"][name]
        assert entry["file"] == f"{name}.onnx" and entry["external_data"] is None
        assert [i["name"] for i in entry["inputs"]] == inputs
        assert [o["name"] for o in entry["outputs"]] == outputs
        assert all(o["dtype"] == "float32" for o in entry["outputs"])
    ids = manifest["graphs"]["text_encoder"]["inputs"][0]
    assert ids["dtype"] == "int64" and ids["shape"][0] == 1
    assert manifest["arrays"] == {
        name: {"file": f"{name}.npy"}
        for name in ("embed_tokens", "silence_latent", "silence_timbre")
    }
    assert manifest["tokenizer"] == {"file": "tokenizer.json"}
    assert (turbo_models / "tokenizer.json").read_bytes() == (
        turbo_checkpoint / turbo_layout.TEXT_ENCODER.name / "tokenizer.json"
    ).read_bytes()
    cfg, tcfg = modules.dit_config, modules.text_config
    assert manifest["constants"] == {
        "sample_rate": 48000,
        "samples_per_latent_frame": 1920,
        "latent_channels": cfg.audio_acoustic_hidden_dim,
        "patch_size": 2,
        "hidden_size": cfg.hidden_size,
        "text_hidden_size": tcfg.hidden_size,
        "vocab_size": tcfg.vocab_size,
        "text_max_tokens": 256,
        "lyric_max_tokens": 2048,
        "timbre_frames": 750,
        "silence_frames": 15000,
        "min_duration_sec": 5.0,
        "max_duration_sec": 600.0,
    }
    assert manifest["defaults"] == {"shift": 3, "steps": 8, "vocal_language": "unknown"}


def test_manifest_files_hashes_and_sizes(turbo_models: Path, manifest: dict[str, Any]) -> None:
    on_disk = sorted(p.name for p in turbo_models.iterdir() if p.name != "manifest.json")
    assert sorted(manifest["files"]) == on_disk
    assert len(on_disk) == 4 + 3 + 1
    for name, info in manifest["files"].items():
        data = (turbo_models / name).read_bytes()
        assert info == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _version_hex(checkpoint: Path) -> str:
    folder = checkpoint / turbo_layout.DIT.name
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    raw = (folder / turbo_layout.DIT.weights).read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    digest.update(raw[: 8 + length])
    return digest.hexdigest()[:12]


# -- refusals -----------------------------------------------------------------------------------


def _error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith(ERROR_PREFIX)]
    assert len(lines) == 1, err
    return lines[0]


def _copy(checkpoint: Path, dest: Path) -> Path:
    shutil.copytree(checkpoint, dest)
    return dest


def _edit_json(path: Path, **changes: object) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


DIT, VAE, TEXT = turbo_layout.DIT.name, turbo_layout.VAE.name, turbo_layout.TEXT_ENCODER.name
DAMAGE: list[tuple[str, Callable[[Path], object], str, str]] = [
    ("vae-config", lambda r: (r / VAE / "config.json").unlink(), f"{VAE}/config.json", "missing"),
    ("vae-folder", lambda r: shutil.rmtree(r / VAE), VAE, "missing folder"),
    (
        "silence-latent",
        lambda r: (r / DIT / "silence_latent.pt").unlink(),
        f"{DIT}/silence_latent.pt",
        "missing file",
    ),
    (
        "tokenizer",
        lambda r: (r / TEXT / "tokenizer.json").unlink(),
        f"{TEXT}/tokenizer.json",
        "missing file",
    ),
    (
        "dit-weights",
        lambda r: (r / DIT / "model.safetensors").unlink(),
        f"{DIT}/model.safetensors",
        "missing file",
    ),
    (
        "shape-mismatch",
        lambda r: _edit_json(r / DIT / "config.json", intermediate_size=96),
        f"{DIT}/model.safetensors",
        "has shape",
    ),
    (
        "bad-silence",
        lambda r: torch.save(torch.zeros(1, 3, 10), r / DIT / "silence_latent.pt"),
        f"{DIT}/silence_latent.pt",
        "expected a float tensor",
    ),
]


@pytest.mark.parametrize(
    ("damage", "names", "says"), [d[1:] for d in DAMAGE], ids=[d[0] for d in DAMAGE]
)
def test_damaged_checkpoint_is_refused_and_leaves_nothing(
    turbo_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: Callable[[Path], object],
    names: str,
    says: str,
) -> None:
    root = _copy(turbo_checkpoint, tmp_path / "ck")
    damage(root)
    dest = tmp_path / "dest"
    dest.mkdir()
    line = _error(["onnx", str(root), str(dest / "models")], capsys)
    assert str(root / names) in line and says in line, line
    assert list(dest.iterdir()) == []


def test_unknown_layout_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "ck"
    (root / "something-else").mkdir(parents=True)
    line = _error(["onnx", str(root), str(tmp_path / "models")], capsys)
    assert "not an ACE-Step checkpoint" in line
    assert "acestep-v15-turbo" in line and "ace_step_transformer" in line
    assert not (tmp_path / "models").exists()


def test_mixed_layout_is_refused(
    turbo_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _copy(turbo_checkpoint, tmp_path / "ck")
    (root / layout.TRANSFORMER.folder).mkdir()
    line = _error(["onnx", str(root), str(tmp_path / "models")], capsys)
    assert "both ACE-Step v1" in line and layout.TRANSFORMER.folder in line
    assert not (tmp_path / "models").exists()


def test_existing_model_dir_needs_force(
    turbo_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "old.onnx").write_text("old")
    line = _error(["onnx", str(turbo_checkpoint), str(models)], capsys)
    assert str(models) in line and "--force" in line
    assert (models / "old.onnx").read_text() == "old"
