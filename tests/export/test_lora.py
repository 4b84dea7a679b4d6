"""LoRA merging (export/lora.py) and ``lofi-export onnx --lora ... --base ...`` (export/variant.py).

The expected weights are computed here from the tensors the test wrote (``W + w·s·B@A`` with the
scaling rules of peft ``LoraLayer.update_layer``), not through the module under test.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import run_export
from lofi_export.errors import ExportError
from lofi_export.lora import LORA_FILE, read_lora
from lofi_export.reference import load_reference_models
from safetensors.torch import save_file

from lofi_daemon.model.manifest import load_manifest

TOLERANCE = 1e-4
RANK = 4


def write_lora(
    folder: Path,
    shapes: dict[str, tuple[int, int]],
    *,
    seed: int = 0,
    metadata: dict | None = None,
    extra: dict[str, torch.Tensor] | None = None,
    rank: int = RANK,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write a random PEFT LoRA for modules → (out, in); return module → (A, B) as float32."""
    gen = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    factors = {}
    for module, (out_dim, in_dim) in shapes.items():
        a = torch.randn(rank, in_dim, generator=gen).to(torch.bfloat16)
        b = torch.randn(out_dim, rank, generator=gen).to(torch.bfloat16)
        tensors[f"{module}.lora_A.weight"] = a
        tensors[f"{module}.lora_B.weight"] = b
        factors[module] = (a.float().numpy(), b.float().numpy())
    tensors.update(extra or {})
    folder.mkdir(parents=True, exist_ok=True)
    header = {"format": "pt"}
    if metadata is not None:
        header["lora_adapter_metadata"] = json.dumps(metadata)
    save_file(tensors, str(folder / LORA_FILE), metadata=header)
    return factors


SMALL = {"blocks.0.attn.to_q": (6, 5), "blocks.0.attn.to_out.0": (6, 6)}
SMALL_CKPT = {f"{m}.weight": s for m, s in SMALL.items()} | {"blocks.0.attn.to_q.bias": (6,)}


def test_merge_is_w_plus_weight_scaling_b_at_a(tmp_path: Path) -> None:
    factors = write_lora(tmp_path, SMALL, metadata={"r": RANK, "lora_alpha": 8})
    lora = read_lora(tmp_path, 0.7, SMALL_CKPT)
    rng = np.random.default_rng(1)
    for module, (a, b) in factors.items():
        base = rng.standard_normal(SMALL[module]).astype(np.float32)
        expected = base + 0.7 * (8 / RANK) * (b @ a)
        got = lora.merged(f"{module}.weight", base)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    bias = np.ones(6, np.float32)
    assert lora.merged("blocks.0.attn.to_q.bias", bias) is bias


@pytest.mark.parametrize(
    ("metadata", "scaling", "alpha"),
    [
        (None, 1.0, None),  # diffusers without metadata: lora_alpha = r
        ({"r": RANK, "lora_alpha": 8}, 8 / RANK, 8.0),
        ({"r": RANK, "lora_alpha": 8, "use_rslora": True}, 8 / math.sqrt(RANK), 8.0),
    ],
    ids=["no-metadata", "alpha-over-r", "rslora"],
)
def test_scaling_from_metadata(
    tmp_path: Path, metadata: dict | None, scaling: float, alpha: float | None
) -> None:
    write_lora(tmp_path, SMALL, metadata=metadata)
    lora = read_lora(tmp_path, 1.0, SMALL_CKPT)
    record = lora.record()
    assert record["scaling"] == pytest.approx(scaling)
    assert record["alpha"] == alpha
    assert record["metadata"] is (metadata is not None)
    assert record["rank"] == RANK and record["matched_modules"] == 2


def test_rank_and_alpha_patterns_apply_per_module(tmp_path: Path) -> None:
    metadata = {"r": RANK, "lora_alpha": 8, "alpha_pattern": {"to_out.0": 2}}
    write_lora(tmp_path, SMALL, metadata=metadata)
    record = read_lora(tmp_path, 1.0, SMALL_CKPT).record()
    assert record["scaling"] is None
    assert record["scaling_by_module"] == {
        "blocks.0.attn.to_q": pytest.approx(2.0),
        "blocks.0.attn.to_out.0": pytest.approx(0.5),
    }


def _error(tmp_path: Path, checkpoint: dict = SMALL_CKPT) -> str:
    with pytest.raises(ExportError) as info:
        read_lora(tmp_path, 1.0, checkpoint)
    return str(info.value)


def test_lora_matching_nothing_is_an_error(tmp_path: Path) -> None:
    write_lora(tmp_path, {"transformer.blocks.0.attn.to_q": (6, 5)})
    message = _error(tmp_path)
    assert "no LoRA module matches the ACE-Step transformer" in message
    assert "transformer.blocks.0.attn.to_q" in message and "prefix=None" in message


def test_partly_unmatched_lora_lists_the_modules(tmp_path: Path) -> None:
    write_lora(tmp_path, {**SMALL, "blocks.0.ff.nope": (6, 6), "blocks.1.x": (2, 2)})
    message = _error(tmp_path)
    assert "2 of 4 LoRA modules match nothing" in message
    assert "blocks.0.ff.nope" in message and "blocks.1.x" in message


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"blocks.0.attn.to_q.alpha": torch.tensor(4.0)}, "unsupported LoRA key"),
        ({"blocks.0.attn.to_k.lora_A.weight": torch.zeros(RANK, 5)}, "lora_A or lora_B missing"),
    ],
    ids=["kohya-alpha", "half-pair"],
)
def test_malformed_keys(tmp_path: Path, extra: dict[str, torch.Tensor], expected: str) -> None:
    write_lora(tmp_path, SMALL, extra=extra)
    assert expected in _error(tmp_path, {**SMALL_CKPT, "blocks.0.attn.to_k.weight": (6, 5)})


def test_shape_and_rank_mismatches(tmp_path: Path) -> None:
    write_lora(tmp_path / "shape", {"blocks.0.attn.to_q": (6, 4)})
    assert "do not fit the weight [6, 5]" in _error(tmp_path / "shape")
    write_lora(tmp_path / "rank", SMALL, metadata={"r": 8, "lora_alpha": 8})
    assert "has rank 4 but lora_adapter_metadata says r=8" in _error(tmp_path / "rank")


def test_missing_file_and_bad_weight(tmp_path: Path) -> None:
    assert f"no {LORA_FILE}" in _error(tmp_path)
    write_lora(tmp_path, SMALL)
    with pytest.raises(ExportError, match="finite"):
        read_lora(tmp_path, float("nan"), SMALL_CKPT)


# --------------------------------------------------------------------------------------------
# The exporter on the tiny checkpoint: --lora with --base (the path `setup --lora` takes).
# --------------------------------------------------------------------------------------------

#: The exported variant and the LoRA factors (module → (A, B)) it was made from.
Variant = tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]
WEIGHT = 0.75
ALPHA = 8.0


def tiny_targets(checkpoint: Path) -> dict[str, tuple[int, int]]:
    """to_q/k/v/out.0 of attn and cross_attn in every block, lyric linear_q/k/v."""
    from lofi_export.opened_checkpoint import open_checkpoint

    shapes = open_checkpoint(checkpoint).transformer.shapes()
    wanted = (
        "attn.to_q.",
        "attn.to_k.",
        "attn.to_v.",
        "attn.to_out.0.",
        ".self_attn.linear_q.",
        ".self_attn.linear_k.",
        ".self_attn.linear_v.",
    )
    return {
        key.removesuffix(".weight"): (shape[0], shape[1])
        for key, shape in shapes.items()
        if key.endswith(".weight") and any(w in key for w in wanted)
    }


@pytest.fixture(scope="module")
def variant(
    tiny_checkpoint: Path, tiny_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> Variant:
    root = tmp_path_factory.mktemp("lora-export")
    targets = tiny_targets(tiny_checkpoint)
    assert any("cross_attn" in t for t in targets) and any("lyric" in t for t in targets)
    factors = write_lora(
        root / "lora",
        targets,
        seed=3,
        metadata={"r": RANK, "lora_alpha": ALPHA, "use_rslora": True},
    )
    out = root / "variant"
    result = run_export(
        "onnx", str(tiny_checkpoint), str(out), "--lora", str(root / "lora"),
        "--lora-weight", str(WEIGHT), "--base", str(tiny_models),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out, factors


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_variant_manifest_and_linked_files(variant: Variant, tiny_models: Path) -> None:
    out, _ = variant
    manifest, base = load_manifest(out), load_manifest(tiny_models)
    lora = manifest.raw["lora"]
    assert lora["weight"] == WEIGHT and lora["rslora"] is True
    assert lora["scaling"] == pytest.approx(ALPHA / math.sqrt(RANK))
    assert lora["graphs"] == ["condition_encoder", "denoiser"]
    assert lora["base"] == {"model_version": base.model_version, "files": "hardlink"}
    assert manifest.model_version != base.model_version
    assert set(manifest.files) == set(base.files)
    for name in base.files:
        same = os.stat(out / name).st_ino == os.stat(tiny_models / name).st_ino
        assert same is not name.startswith(("denoiser.", "condition_encoder.")), name


def test_variant_denoiser_matches_torch_with_merged_weights(
    variant: Variant, tiny_checkpoint: Path, tiny_models: Path
) -> None:
    out, factors = variant
    reference = load_reference_models(tiny_checkpoint)
    dit = reference.denoiser.inner
    scaling = ALPHA / math.sqrt(RANK)
    with torch.no_grad():
        params = dict(dit.named_parameters())
        for module, (a, b) in factors.items():
            weight = params[f"{module}.weight"]
            weight += torch.from_numpy(WEIGHT * scaling * (b.astype(np.float64) @ a)).float()
    rng = np.random.default_rng(7)
    feeds = {
        "latents": rng.standard_normal((2, 8, 16, 9)).astype(np.float32),
        "timestep": np.array([700.0, 30.0], np.float32),
        "cond": rng.standard_normal((2, 6, 64)).astype(np.float32),
        "cond_mask": np.ones((2, 6), np.float32),
        "q_scale": np.ones((2, 20), np.float32),
    }
    got = _session(out / "denoiser.onnx").run(None, feeds)[0]
    with torch.no_grad():
        want = reference.denoiser(*(torch.from_numpy(v) for v in feeds.values())).numpy()
    assert float(np.abs(got - want).max()) <= TOLERANCE
    base = _session(tiny_models / "denoiser.onnx").run(None, feeds)[0]
    assert float(np.abs(got - base).max()) > 1e-2  # the LoRA changed the output
    lyrics = {
        "text_hidden": rng.standard_normal((1, 3, 32)).astype(np.float32),
        "text_mask": np.ones((1, 3), np.int64),
        "speaker": np.zeros((1, 512), np.float32),
        "lyric_ids": rng.integers(3, 500, (1, 5)).astype(np.int64),
        "lyric_mask": np.ones((1, 5), np.int64),
        "lyric_q_scale": np.ones((1, 6), np.float32),
    }
    cond = _session(out / "condition_encoder.onnx").run(None, lyrics)[0]
    with torch.no_grad():
        want_cond = reference.condition_encoder(*(torch.from_numpy(v) for v in lyrics.values()))
    assert float(np.abs(cond - want_cond[0].numpy()).max()) <= TOLERANCE


def test_unmatched_lora_fails_and_writes_nothing(
    tiny_checkpoint: Path, tiny_models: Path, tmp_path: Path
) -> None:
    write_lora(tmp_path / "lora", {"transformer.transformer_blocks.0.attn.to_q": (64, 64)})
    out = tmp_path / "out"
    result = run_export(
        "onnx", str(tiny_checkpoint), str(out), "--lora", str(tmp_path / "lora"),
        "--base", str(tiny_models),
    )  # fmt: skip
    assert result.returncode == 1
    assert "no LoRA module matches the ACE-Step transformer" in result.stderr
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lora"]
