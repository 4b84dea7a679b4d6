"""Loading an official-layout checkpoint: every damage gives one clear CLI error line (issue 2).

Damaged checkpoints are variants of the session's tiny checkpoint: the untouched component
folders are symlinked, only the damaged one is copied and edited. Each case runs
``lofi-export onnx CK OUT`` (in process through ``main``; one case also as ``python -m``) and
checks exit status 1, exactly one ``lofi-export: error:`` line naming the file and key, and that
neither ``OUT`` nor a temporary folder is left behind.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from lofi_export.__main__ import main
from lofi_export.components import build_transformer, state_shapes
from lofi_export.export_models import export_all_graphs
from lofi_export.modules.conformer import ConformerConfig
from lofi_export.modules.transformer import unused_checkpoint_shapes
from lofi_export.opened_checkpoint import open_checkpoint
from lofi_export.presets import TINY
from lofi_export.reference import load_reference_models
from safetensors.torch import load_file, save_file

TRANSFORMER = "ace_step_transformer"
UMT5 = "umt5-base"
DCAE = "music_dcae_f8c8"
VOCODER = "music_vocoder"
FOLDERS = (TRANSFORMER, UMT5, DCAE, VOCODER)
WEIGHTS = {
    TRANSFORMER: "diffusion_pytorch_model.safetensors",
    UMT5: "model.safetensors",
    DCAE: "diffusion_pytorch_model.safetensors",
    VOCODER: "diffusion_pytorch_model.safetensors",
}
ERROR_PREFIX = "lofi-export: error: "

Tensors = dict[str, torch.Tensor]


# --------------------------------------------------------------------------------------------
# Building damaged checkpoints
# --------------------------------------------------------------------------------------------


def variant(source: Path, root: Path, folder: str | None = None) -> Path:
    """A checkpoint at ``root`` sharing ``source``'s folders; ``folder`` (if any) is a real copy."""
    root.mkdir(parents=True)
    for name in FOLDERS:
        if name == folder:
            shutil.copytree(source / name, root / name)
        else:
            (root / name).symlink_to(source / name, target_is_directory=True)
    return root


def edit_tensors(root: Path, folder: str, edit: Callable[[Tensors], None]) -> Path:
    """Rewrite ``folder``'s safetensors file after ``edit`` changed its tensor dict."""
    path = root / folder / WEIGHTS[folder]
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path


def _drop(key: str) -> Callable[[Tensors], None]:
    def edit(tensors: Tensors) -> None:
        tensors.pop(key)

    return edit


def _add(key: str, shape: tuple[int, ...]) -> Callable[[Tensors], None]:
    def edit(tensors: Tensors) -> None:
        tensors[key] = torch.zeros(shape, dtype=torch.bfloat16)

    return edit


def _reshape(key: str, shape: tuple[int, ...]) -> Callable[[Tensors], None]:
    def edit(tensors: Tensors) -> None:
        tensors[key] = torch.zeros(shape, dtype=tensors[key].dtype)

    return edit


def _retype(key: str, dtype: torch.dtype) -> Callable[[Tensors], None]:
    def edit(tensors: Tensors) -> None:
        tensors[key] = tensors[key].to(dtype)

    return edit


def _edit_config(path: Path, **changes: object) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _truncate(path: Path, keep: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep])


# --------------------------------------------------------------------------------------------
# Running the CLI and checking its one error line
# --------------------------------------------------------------------------------------------


def error_line(stderr: str) -> str:
    """The single ``lofi-export: error:`` line; fails on zero, several, or a traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    assert len(lines) == 1, stderr
    return lines[0]


def run_onnx_cli(checkpoint: Path, dest: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """``lofi-export onnx CHECKPOINT DEST/models`` in process; returns the error line."""
    dest.mkdir(exist_ok=True)
    models = dest / "models"
    code = main(["onnx", str(checkpoint), str(models)])
    captured = capsys.readouterr()
    assert code == 1, captured.err
    assert captured.out == ""
    line = error_line(captured.err)
    assert captured.err.strip() == line  # nothing else on stderr
    assert not models.exists()
    assert list(dest.iterdir()) == []  # no staging folder either
    return line


def _case(
    name: str,
    folder: str | None,
    damage: Callable[[Path], object],
    expect: Callable[[Path], list[str]],
) -> Any:
    """One parametrized case: the folder to copy (others are symlinked), damage, expected text."""
    return pytest.param(folder, damage, expect, id=name)


def _weights(root: Path, folder: str) -> str:
    return str(root / folder / WEIGHTS[folder])


CASES = [
    _case(
        "missing-folder",
        None,
        lambda r: (r / VOCODER).unlink(),
        lambda r: [str(r / VOCODER), "missing folder"],
    ),
    _case(
        "missing-weights-file",
        DCAE,
        lambda r: (r / DCAE / WEIGHTS[DCAE]).unlink(),
        lambda r: [_weights(r, DCAE), "missing file"],
    ),
    _case(
        "missing-config",
        TRANSFORMER,
        lambda r: (r / TRANSFORMER / "config.json").unlink(),
        lambda r: [str(r / TRANSFORMER / "config.json"), "missing file"],
    ),
    _case(
        "corrupt-config",
        UMT5,
        lambda r: (r / UMT5 / "config.json").write_text("{oops"),
        lambda r: [str(r / UMT5 / "config.json"), "not valid JSON"],
    ),
    _case(
        "config-value-of-wrong-type",
        TRANSFORMER,
        lambda r: _edit_config(r / TRANSFORMER / "config.json", num_layers="twenty"),
        lambda r: [str(r / TRANSFORMER / "config.json"), "'str'"],
    ),
    _case(
        "missing-tokenizer",
        UMT5,
        lambda r: (r / UMT5 / "tokenizer.json").unlink(),
        lambda r: [str(r / UMT5 / "tokenizer.json"), "missing file"],
    ),
    _case(
        "missing-key-transformer",
        TRANSFORMER,
        lambda r: edit_tensors(r, TRANSFORMER, _drop("transformer_blocks.3.attn.to_k.bias")),
        lambda r: [_weights(r, TRANSFORMER), "missing", "'transformer_blocks.3.attn.to_k.bias'"],
    ),
    _case(
        "missing-key-umt5",
        UMT5,
        lambda r: edit_tensors(r, UMT5, _drop("encoder.final_layer_norm.weight")),
        lambda r: [_weights(r, UMT5), "missing", "'encoder.final_layer_norm.weight'"],
    ),
    _case(
        "missing-key-vocoder",
        VOCODER,
        lambda r: edit_tensors(r, VOCODER, _drop("mel_transform.mel_scale.fb")),
        lambda r: [_weights(r, VOCODER), "missing", "'mel_transform.mel_scale.fb'"],
    ),
    _case(
        "unexpected-key",
        TRANSFORMER,
        lambda r: edit_tensors(r, TRANSFORMER, _add("transformer_blocks.0.attn.to_x.weight", (4,))),
        lambda r: [
            _weights(r, TRANSFORMER),
            "unexpected",
            "'transformer_blocks.0.attn.to_x.weight'",
        ],
    ),
    _case(
        "unexpected-key-dcae",
        DCAE,
        lambda r: edit_tensors(r, DCAE, _add("decoder.extra.weight", (2, 2))),
        lambda r: [_weights(r, DCAE), "unexpected", "'decoder.extra.weight'"],
    ),
    _case(
        "wrong-shape",
        TRANSFORMER,
        lambda r: edit_tensors(r, TRANSFORMER, _reshape("genre_embedder.weight", (64, 33))),
        lambda r: [_weights(r, TRANSFORMER), "'genre_embedder.weight'", "[64, 33]", "[64, 32]"],
    ),
    _case(
        "wrong-shape-umt5",
        UMT5,
        lambda r: edit_tensors(r, UMT5, _reshape("shared.weight", (1000, 32))),
        lambda r: [_weights(r, UMT5), "'shared.weight'", "[1000, 32]"],
    ),
    _case(
        "wrong-shape-vocoder",
        VOCODER,
        lambda r: edit_tensors(r, VOCODER, _reshape("head.conv_pre.weight_v", (128, 32, 3))),
        lambda r: [_weights(r, VOCODER), "'head.conv_pre.weight_v'", "[128, 32, 3]"],
    ),
    _case(
        "wrong-dtype-i64",
        TRANSFORMER,
        lambda r: edit_tensors(r, TRANSFORMER, _retype("speaker_embedder.bias", torch.int64)),
        lambda r: [_weights(r, TRANSFORMER), "'speaker_embedder.bias'", "I64"],
    ),
    _case(
        "corrupt-file",
        DCAE,
        lambda r: (r / DCAE / WEIGHTS[DCAE]).write_bytes(os.urandom(4096)),
        lambda r: [_weights(r, DCAE), "corrupt"],
    ),
    _case(
        "corrupt-header-json",
        VOCODER,
        lambda r: (r / VOCODER / WEIGHTS[VOCODER]).write_bytes(
            (16).to_bytes(8, "little") + b"{not json at all" + b"\0" * 64
        ),
        lambda r: [_weights(r, VOCODER), "corrupt", "header"],
    ),
    _case(
        "truncated-data",
        VOCODER,
        lambda r: _truncate(r / VOCODER / WEIGHTS[VOCODER], -1000),
        lambda r: [_weights(r, VOCODER), "truncated"],
    ),
    _case(
        "truncated-header",
        TRANSFORMER,
        lambda r: _truncate(r / TRANSFORMER / WEIGHTS[TRANSFORMER], 100),
        lambda r: [_weights(r, TRANSFORMER), "truncated"],
    ),
    _case(
        "empty-file",
        UMT5,
        lambda r: (r / UMT5 / WEIGHTS[UMT5]).write_bytes(b""),
        lambda r: [_weights(r, UMT5), "truncated"],
    ),
]


@pytest.mark.parametrize(("folder", "damage", "expect"), CASES)
def test_damaged_checkpoint_gives_one_error_line(
    folder: str | None,
    damage: Callable[[Path], object],
    expect: Callable[[Path], list[str]],
    tiny_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = variant(tiny_checkpoint, tmp_path / "ck", folder)
    damage(root)
    line = run_onnx_cli(root, tmp_path / "dest", capsys)
    for fragment in expect(root):
        assert fragment in line, line


def test_missing_checkpoint_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = run_onnx_cli(tmp_path / "nowhere", tmp_path / "dest", capsys)
    assert str(tmp_path / "nowhere") in line and "does not exist" in line


def test_error_through_python_m(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """The real entry point: exit 1, the error as the last stderr line, no traceback."""
    root = variant(tiny_checkpoint, tmp_path / "ck", TRANSFORMER)
    edit_tensors(root, TRANSFORMER, _retype("lyric_proj.weight", torch.int64))
    dest = tmp_path / "dest"
    dest.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "lofi_export", "onnx", str(root), str(dest / "models")],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert result.stderr.strip().splitlines()[-1] == line
    assert _weights(root, TRANSFORMER) in line and "'lyric_proj.weight'" in line and "I64" in line
    assert list(dest.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Tolerated keys and inferred sizes
# --------------------------------------------------------------------------------------------

UNUSED_KEY = re.compile(
    r"^(projectors\.\d+\.\d+\.(weight|bias)"
    r"|transformer_blocks\.\d+\.cross_attn\.(add_[qkv]_proj|to_add_out)\.(weight|bias))$"
)


def _header_keys(path: Path) -> list[str]:
    with path.open("rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
    header.pop("__metadata__", None)
    return list(header)


def test_unused_keys_are_tolerated_and_logged(
    tiny_checkpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keys = _header_keys(tiny_checkpoint / TRANSFORMER / WEIGHTS[TRANSFORMER])
    unused = [k for k in keys if UNUSED_KEY.match(k)]
    # 20 blocks × 4 projections × (weight, bias) + 2 projectors × 3 linears × (weight, bias)
    assert len(unused) == 20 * 4 * 2 + 2 * 3 * 2
    with caplog.at_level(logging.INFO, logger="lofi_export.checkpoint"):
        ckpt = open_checkpoint(tiny_checkpoint)
    messages = [r.getMessage() for r in caplog.records if "ignoring" in r.getMessage()]
    assert len(messages) == 1
    assert str(ckpt.transformer.weights_path) in messages[0]
    assert f"ignoring {len(unused)} tensors unused at inference" in messages[0]


def test_unused_key_with_wrong_name_is_rejected(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Only the exact unused families are tolerated, not anything that looks similar.
    root = variant(tiny_checkpoint, tmp_path / "ck", TRANSFORMER)
    edit_tensors(root, TRANSFORMER, _add("transformer_blocks.0.attn.add_q_proj.weight", (64, 64)))
    line = run_onnx_cli(root, tmp_path / "dest", capsys)
    assert "'transformer_blocks.0.attn.add_q_proj.weight'" in line


def _write_transformer(root: Path, conformer: ConformerConfig, seed: int) -> None:
    """A transformer folder whose lyric conformer has non-default sizes (none in config.json)."""
    config = dataclasses.replace(TINY.transformer, lyric_hidden_size=conformer.output_size)
    torch.manual_seed(seed)
    model = build_transformer(config, conformer, device="cpu")
    tensors = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    for key, shape in unused_checkpoint_shapes(config).items():
        tensors[key] = torch.zeros(shape, dtype=torch.bfloat16)
    folder = root / TRANSFORMER
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config.to_json_dict()))
    save_file(tensors, str(folder / WEIGHTS[TRANSFORMER]), metadata={"format": "pt"})
    assert set(state_shapes(model)) <= set(tensors)


def test_conformer_sizes_are_inferred_from_shapes(tiny_checkpoint: Path, tmp_path: Path) -> None:
    conformer = ConformerConfig(output_size=48, attention_heads=3, linear_units=40, num_blocks=7)
    assert conformer != TINY.conformer
    root = tmp_path / "ck"
    root.mkdir()
    for name in (UMT5, DCAE, VOCODER):
        (root / name).symlink_to(tiny_checkpoint / name, target_is_directory=True)
    _write_transformer(root, conformer, seed=5)

    ckpt = open_checkpoint(root)
    assert ckpt.conformer_config == conformer
    reference = load_reference_models(root)
    assert len(reference.condition_encoder.inner.lyric_encoder.encoders) == 7

    out = tmp_path / "graphs"
    out.mkdir()
    export_all_graphs(ckpt, out, only=("condition_encoder",))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    sess = ort.InferenceSession(
        str(out / "condition_encoder.onnx"), options, providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(0)
    for lyric_len in (1, 6):
        feeds = {
            "text_hidden": rng.standard_normal((2, 4, 32)).astype(np.float32),
            "text_mask": np.ones((2, 4), np.int64),
            "speaker": np.zeros((2, 512), np.float32),
            "lyric_ids": rng.integers(0, 6693, (2, lyric_len)).astype(np.int64),
            "lyric_mask": np.ones((2, lyric_len), np.int64) * (lyric_len > 1),
            "lyric_q_scale": np.ones((2, 7), np.float32),
        }
        got = sess.run(None, feeds)
        with torch.no_grad():
            want = reference.condition_encoder(*(torch.from_numpy(v) for v in feeds.values()))
        for g, w in zip(got, want, strict=True):
            assert g.shape == tuple(w.shape)
            assert float(np.abs(g - w.numpy()).max()) <= 1e-4
