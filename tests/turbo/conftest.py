"""A synthetic 1.5 turbo model directory: the exported layout with tiny hand-built ONNX graphs.

The graphs honour the I/O contract of the real export (names, dtypes, shapes) with a few linear
ops, so pipeline logic (manifest, tokens, shapes, cancel, errors) is tested in milliseconds. The
real tiny export (``turbo_models``, tests/turbo_fixtures.py) is what the end-to-end tests use.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, pre_tokenizers, processors

V_BYTES = 256
DT, H, C = 6, 5, 4  # text hidden, DiT hidden, latent channels
HOP = 1920
SILENCE_FRAMES = 300


def _tokenizer() -> Tokenizer:
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.add_special_tokens(["<|endoftext|>"])
    eot = tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(
        single="$A <|endoftext|>",
        pair="$A <|endoftext|> $B <|endoftext|>",
        special_tokens=[("<|endoftext|>", eot)],
    )
    return tok


def _save(graph: onnx.GraphProto, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _io(name: str, dtype: int, shape: list[str | int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(array), name)


def build_synthetic(root: Path, vocab: int) -> Path:
    """Write the synthetic model directory to ``root`` and return it."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    f32 = TensorProto.FLOAT
    embed = rng.standard_normal((vocab, DT)).astype(np.float32)
    # text_encoder: hidden = tanh(embed[ids])
    _save(
        helper.make_graph(
            [
                helper.make_node("Gather", ["E", "input_ids"], ["g"]),
                helper.make_node("Tanh", ["g"], ["hidden"]),
            ],
            "text_encoder",
            [_io("input_ids", TensorProto.INT64, [1, "L"])],
            [_io("hidden", f32, [1, "L", DT])],
            [_init("E", embed)],
        ),
        root / "text_encoder.onnx",
    )
    # condition_encoder: two projections
    _save(
        helper.make_graph(
            [
                helper.make_node("MatMul", ["text_hidden", "Wt"], ["text_states"]),
                helper.make_node("MatMul", ["lyric_embeds", "Wl"], ["lyric_states"]),
            ],
            "condition_encoder",
            [_io("text_hidden", f32, [1, "Lt", DT]), _io("lyric_embeds", f32, [1, "Ly", DT])],
            [_io("text_states", f32, [1, "Lt", H]), _io("lyric_states", f32, [1, "Ly", H])],
            [
                _init("Wt", rng.standard_normal((DT, H)).astype(np.float32) * 0.3),
                _init("Wl", rng.standard_normal((DT, H)).astype(np.float32) * 0.3),
            ],
        ),
        root / "condition_encoder.onnx",
    )
    # dit: v = 0.5·x + t·(ctx @ Wc) + mean_S(enc @ We); fails on odd T like the real graph
    _save(
        helper.make_graph(
            [
                helper.make_node("MatMul", ["context_latents", "Wc"], ["c"]),
                helper.make_node("Mul", ["c", "timestep"], ["ct"]),
                helper.make_node("MatMul", ["encoder_hidden_states", "We"], ["e"]),
                helper.make_node("ReduceMean", ["e"], ["em"], axes=[1], keepdims=1),
                helper.make_node("Mul", ["hidden_states", "half"], ["xh"]),
                helper.make_node("Add", ["xh", "ct"], ["s"]),
                helper.make_node("Add", ["s", "em"], ["velocity"]),
                # an even-T check: reshape to pairs of frames
                helper.make_node("Reshape", ["hidden_states", "pairs"], ["paired"]),
            ],
            "dit",
            [
                _io("hidden_states", f32, [1, "T", C]),
                _io("timestep", f32, [1]),
                _io("encoder_hidden_states", f32, [1, "S", H]),
                _io("context_latents", f32, [1, "T", 2 * C]),
            ],
            [_io("velocity", f32, [1, "T", C]), _io("paired", f32, [1, "P", 2, C])],
            [
                _init("Wc", rng.standard_normal((2 * C, C)).astype(np.float32) * 0.2),
                _init("We", rng.standard_normal((H, C)).astype(np.float32) * 0.2),
                _init("half", np.asarray([0.5], dtype=np.float32)),
                _init("pairs", np.asarray([1, -1, 2, C], dtype=np.int64)),
            ],
        ),
        root / "dit.onnx",
    )
    # vae_decoder: [1,C,T] -> [1,2,1920·T], frame by frame
    _save(
        helper.make_graph(
            [
                helper.make_node("Transpose", ["latents"], ["lt"], perm=[0, 2, 1]),
                helper.make_node("MatMul", ["lt", "Wv"], ["m"]),
                helper.make_node("Reshape", ["m", "s4"], ["r4"]),
                helper.make_node("Transpose", ["r4"], ["t4"], perm=[0, 2, 1, 3]),
                helper.make_node("Reshape", ["t4", "s3"], ["audio"]),
            ],
            "vae_decoder",
            [_io("latents", f32, [1, C, "T"])],
            [_io("audio", f32, [1, 2, "N"])],
            [
                _init("Wv", rng.standard_normal((C, 2 * HOP)).astype(np.float32) * 0.5),
                _init("s4", np.asarray([1, -1, 2, HOP], dtype=np.int64)),
                _init("s3", np.asarray([1, 2, -1], dtype=np.int64)),
            ],
        ),
        root / "vae_decoder.onnx",
    )
    np.save(root / "embed_tokens.npy", embed)
    np.save(
        root / "silence_latent.npy",
        rng.standard_normal((SILENCE_FRAMES, C)).astype(np.float32),
    )
    np.save(root / "silence_timbre.npy", rng.standard_normal((1, 1, H)).astype(np.float32))
    return root


def write_manifest(root: Path, vocab: int, **changes: object) -> None:
    """(Re)write ``root/manifest.json`` listing the files there; ``changes`` override keys."""
    graphs: dict[str, dict[str, object]] = {
        name: {"file": f"{name}.onnx", "external_data": None, "inputs": [], "outputs": []}
        for name in ("text_encoder", "condition_encoder", "dit", "vae_decoder")
    }
    files = {
        p.name: {"size": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
        for p in sorted(root.iterdir())
        if p.name != "manifest.json"
    }
    manifest: dict[str, object] = {
        "schema_version": 1,
        "backend": "ace-step-1.5",
        "variant": "turbo",
        "model_version": "ace-step-1.5-turbo-000000000000",
        "precision": "fp32",
        "graphs": graphs,
        "arrays": {
            n: {"file": f"{n}.npy"} for n in ("embed_tokens", "silence_latent", "silence_timbre")
        },
        "tokenizer": {"file": "tokenizer.json"},
        "constants": {
            "sample_rate": 48000,
            "samples_per_latent_frame": HOP,
            "latent_channels": C,
            "patch_size": 2,
            "hidden_size": H,
            "text_hidden_size": DT,
            "vocab_size": vocab,
            "text_max_tokens": 256,
            "lyric_max_tokens": 2048,
            "timbre_frames": 750,
            "silence_frames": SILENCE_FRAMES,
            "min_duration_sec": 5.0,
            "max_duration_sec": 600.0,
        },
        "defaults": {"shift": 3, "steps": 8, "vocal_language": "unknown"},
        "files": files,
    }
    manifest.update(changes)
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")


@pytest.fixture(scope="session")
def synthetic_turbo_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic-turbo") / "models"
    root.mkdir()
    tok = _tokenizer()
    tok.save(str(root / "tokenizer.json"))
    vocab = tok.get_vocab_size()
    build_synthetic(root, vocab)
    write_manifest(root, vocab)
    return root


@pytest.fixture
def synthetic_turbo(synthetic_turbo_source: Path, tmp_path: Path) -> Path:
    """A fresh copy per test (tests may damage it)."""
    import shutil

    dest = tmp_path / "ace-step-1.5"
    shutil.copytree(synthetic_turbo_source, dest)
    return dest
