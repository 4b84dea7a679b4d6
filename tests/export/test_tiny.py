"""``lofi-export tiny``: a random checkpoint in the exact layout of ``ACE-Step/ACE-Step-v1-3.5B``.

The session fixture ``tiny_checkpoint`` was written by the real CLI with seed 0. Safetensors
headers are parsed here directly (not through the exporter's reader), so the on-disk format is
checked independently of the code that wrote it.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from lofi_export import __main__ as cli
from lofi_export import tiny
from lofi_export.errors import ExportError
from lofi_export.presets import TINY, Preset
from tokenizers import Tokenizer

from lofi_daemon.model import layout

TRANSFORMER = "ace_step_transformer"
UMT5 = "umt5-base"
DCAE = "music_dcae_f8c8"
VOCODER = "music_vocoder"
LAYOUT = {
    TRANSFORMER: {"config.json", "diffusion_pytorch_model.safetensors"},
    UMT5: {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    },
    DCAE: {"config.json", "diffusion_pytorch_model.safetensors"},
    VOCODER: {"config.json", "diffusion_pytorch_model.safetensors"},
}
WEIGHTS = {
    folder: next(f for f in files if f.endswith(".safetensors")) for folder, files in LAYOUT.items()
}
DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2}


def read_header(path: Path) -> dict[str, dict]:
    """The safetensors header: 8-byte little-endian length, then JSON (checked for consistency)."""
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    header.pop("__metadata__", None)
    ends = []
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        assert end - begin == math.prod(entry["shape"]) * DTYPE_BYTES[entry["dtype"]], name
        ends.append(end)
    assert 8 + length + max(ends) == len(data)
    return header


def layer_indices(keys: list[str], prefix: str) -> set[int]:
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    return {int(m.group(1)) for key in keys if (m := pattern.match(key))}


@pytest.fixture(scope="module")
def headers(tiny_checkpoint: Path) -> dict[str, dict[str, dict]]:
    return {folder: read_header(tiny_checkpoint / folder / WEIGHTS[folder]) for folder in LAYOUT}


def test_official_folder_and_file_names(tiny_checkpoint: Path) -> None:
    assert {p.name for p in tiny_checkpoint.iterdir()} == set(LAYOUT)
    for folder, files in LAYOUT.items():
        assert {p.name for p in (tiny_checkpoint / folder).iterdir()} == files, folder
    assert {c.folder for c in layout.COMPONENTS} == set(LAYOUT)
    # The staging folder (".<name>.*") was renamed into place, not left beside the checkpoint.
    staging = [
        p
        for p in tiny_checkpoint.parent.iterdir()
        if p.name.startswith(f".{tiny_checkpoint.name}.")
    ]
    assert staging == []


def test_transformer_is_bf16_with_the_unused_entries(headers: dict[str, dict[str, dict]]) -> None:
    header = headers[TRANSFORMER]
    assert {e["dtype"] for e in header.values()} == {"BF16"}
    keys = list(header)
    for name in ("add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"):
        assert f"transformer_blocks.0.cross_attn.{name}.weight" in header
    assert any(k.startswith("projectors.") for k in keys)
    assert header["lyric_embs.weight"]["shape"] == [6693, 32]
    assert header["proj_in.early_conv_layers.0.weight"]["shape"] == [2048, 8, 16, 1]
    assert header["final_layer.linear.weight"]["shape"] == [128, 64]
    assert not any("rotary_emb" in k for k in keys)  # non-persistent buffers are not stored


def test_dcae_is_16_bit(headers: dict[str, dict[str, dict]]) -> None:
    dtypes = {e["dtype"] for e in headers[DCAE].values()}
    assert len(dtypes) == 1 and dtypes <= {"BF16", "F16"}
    assert any(k.startswith("encoder.") for k in headers[DCAE])
    assert any(k.startswith("decoder.") for k in headers[DCAE])


def test_vocoder_is_16_bit_with_weight_norm_pairs_and_mel_buffers(
    headers: dict[str, dict[str, dict]], tiny_checkpoint: Path
) -> None:
    header = headers[VOCODER]
    dtypes = {e["dtype"] for e in header.values()}
    assert len(dtypes) == 1 and dtypes <= {"BF16", "F16"}
    gains = [k for k in header if k.endswith(".weight_g")]
    assert gains and all(k.startswith("head.") for k in gains)
    for gain in gains:
        direction = header[gain[:-1] + "v"]
        assert header[gain]["shape"] == [direction["shape"][0]] + [1] * (
            len(direction["shape"]) - 1
        )
        assert gain[: -len("_g")] not in header  # the plain weight is not stored beside the pair
    for kind in ("conv_pre", "conv_post", "ups.0", "resblocks.0.convs1.0", "resblocks.0.convs2.0"):
        assert f"head.{kind}.weight_g" in header and f"head.{kind}.weight_v" in header
    assert not any(k.startswith("backbone.") and "weight_g" in k for k in header)
    assert header["mel_transform.spectrogram.window"]["shape"] == [2048]
    assert header["mel_transform.mel_scale.fb"]["shape"] == [1025, 128]

    path = tiny_checkpoint / VOCODER / WEIGHTS[VOCODER]
    window = read_16bit(path, header, "mel_transform.spectrogram.window")
    fb = read_16bit(path, header, "mel_transform.mel_scale.fb")
    n = np.arange(2048)
    np.testing.assert_allclose(window, 0.5 - 0.5 * np.cos(2 * np.pi * n / 2048), atol=4e-3)
    assert fb.min() >= 0 and np.all(fb.sum(axis=0) > 0)


def read_16bit(path: Path, header: dict[str, dict], key: str) -> np.ndarray:
    """One BF16 or F16 tensor as float32 (numpy has no bfloat16: widen the raw bits)."""
    data = path.read_bytes()
    start = 8 + int.from_bytes(data[:8], "little")
    begin, end = header[key]["data_offsets"]
    raw = data[start + begin : start + end]
    if header[key]["dtype"] == "F16":
        values = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    else:
        values = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    return values.reshape(header[key]["shape"])


def test_umt5_is_f32_without_the_tied_embedding(headers: dict[str, dict[str, dict]]) -> None:
    header = headers[UMT5]
    assert {e["dtype"] for e in header.values()} == {"F32"}
    assert header["shared.weight"]["shape"] == [256384, 32]
    assert "encoder.embed_tokens.weight" not in header
    assert len(header) == 1 + 10 * 10 + 1  # shared, 10 tensors per block, final norm
    for block in range(10):
        assert (
            f"encoder.block.{block}.layer.0.SelfAttention.relative_attention_bias.weight" in header
        )


def test_tokenizer_files(tiny_checkpoint: Path) -> None:
    folder = tiny_checkpoint / UMT5
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    ids = tokenizer.encode("relaxed lofi hip hop, piano, 80 bpm").ids
    assert len(ids) > 2 and ids[-1] == 1  # </s> appended, T5 convention
    assert 1 not in ids[:-1] and all(0 <= i < 256384 for i in ids)
    assert tokenizer.token_to_id("<pad>") == 0 and tokenizer.token_to_id("<unk>") == 2
    special = json.loads((folder / "special_tokens_map.json").read_text())
    assert special["eos_token"] == "</s>" and special["pad_token"] == "<pad>"
    assert json.loads((folder / "tokenizer_config.json").read_text())["eos_token"] == "</s>"


def test_erg_layer_indices_exist(
    tiny_checkpoint: Path, headers: dict[str, dict[str, dict]]
) -> None:
    dit = layer_indices(list(headers[TRANSFORMER]), "transformer_blocks")
    umt5 = layer_indices(list(headers[UMT5]), "encoder.block")
    conformer = layer_indices(list(headers[TRANSFORMER]), "lyric_encoder.encoders")
    assert dit == set(range(len(dit))) and len(dit) >= 20
    assert umt5 == set(range(10))
    assert conformer == set(range(6))
    assert set(range(*layout.ERG_DIFFUSION_LAYERS)) == {15, 16, 17, 18, 19} <= dit
    assert set(range(*layout.ERG_TAG_LAYERS)) == {8, 9} <= umt5
    assert set(range(*layout.ERG_LYRIC_LAYERS)) == {4, 5} <= conformer
    configs = {f: json.loads((tiny_checkpoint / f / "config.json").read_text()) for f in LAYOUT}
    assert configs[TRANSFORMER]["num_layers"] == len(dit)
    assert configs[UMT5]["num_layers"] == 10


def _write(path: Path, seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["tiny", str(path), "--seed", str(seed)]) == 0
    assert capsys.readouterr().out.strip() == str(path)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_other_weights(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path / "again", 0, capsys)
    _write(tmp_path / "other", 1, capsys)
    reference = _files(tiny_checkpoint)
    assert _files(tmp_path / "again") == reference
    other = _files(tmp_path / "other")
    assert set(other) == set(reference)
    for name, data in reference.items():
        if name.endswith(".safetensors"):
            assert other[name] != data, name
            assert len(other[name]) == len(data), name
        else:  # configs and tokenizer do not depend on the seed
            assert other[name] == data, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "other"]


def test_refuses_a_non_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "keep.txt").write_text("mine")
    assert cli.main(["tiny", str(tmp_path / "ck")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lofi-export: error: ") and str(tmp_path / "ck") in err
    assert [p.name for p in (tmp_path / "ck").iterdir()] == ["keep.txt"]


def test_fills_an_empty_folder_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The component writers are stubbed: only the staging and the final move are under test.
    def write(root: Path, _preset: Preset, _seed: int) -> None:
        with (root / "part").open("a") as handle:
            handle.write("x")

    def fail(_root: Path, _preset: Preset, _seed: int) -> None:
        raise ExportError("simulated failure")

    for name in ("_write_transformer", "_write_umt5", "_write_dcae"):
        monkeypatch.setattr(tiny, name, write)
    monkeypatch.setattr(tiny, "_write_vocoder", fail)
    target = tmp_path / "ck"
    target.mkdir()
    with pytest.raises(ExportError, match="simulated failure"):
        tiny.write_tiny_checkpoint(target, TINY)
    assert [p.name for p in tmp_path.iterdir()] == ["ck"] and list(target.iterdir()) == []

    monkeypatch.setattr(tiny, "_write_vocoder", write)
    tiny.write_tiny_checkpoint(target, TINY)
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no staging or old folder left
    assert (target / "part").read_text() == "xxxx"


@pytest.mark.parametrize("argv", [["onnx", "CK", "OUT"], ["tiny", "CK"]])
def test_without_the_export_extra_prints_the_install_command(
    argv: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(cli, "missing_export_packages", lambda: ["torch", "onnxscript"])
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "missing: torch, onnxscript" in captured.err
    assert 'pip install torch==2.13.0 && pip install -e ".[export]"' in captured.err
    assert list(tmp_path.iterdir()) == []  # nothing was attempted
