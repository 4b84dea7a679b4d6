"""ONNX Runtime vs the project's torch modules on the tiny checkpoint (issue 2).

Every exported graph is run on at least two values of each dynamic length and on batch 1 and 2,
including empty lyrics (one masked token id 0) and ERG query scales; the fp32 outputs must agree
within 1e-4. The linear-attention eps (the ``+ 1e-15`` of ``CustomLiteLAProcessor2_0``, which the
onnxscript optimizer would fold away) is checked in the graph structure and by an
input whose denominators are exactly zero, and the check is shown to fail on a graph whose eps
has been removed. The external-data path of the writer is exercised on one small graph.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from jsonschema import Draft202012Validator
from lofi_export.export_models import export_all_graphs
from lofi_export.manifest_writer import write_manifest
from lofi_export.reference import ReferenceModels, load_reference_models
from onnx import numpy_helper

from lofi_daemon.model.manifest import sha256_file

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "lofi_daemon" / "model" / "manifest.schema.json"
TOLERANCE = 1e-4
EPS = 1e-15

Feeds = dict[str, np.ndarray]


@pytest.fixture(scope="module")
def reference(tiny_checkpoint: Path) -> ReferenceModels:
    return load_reference_models(tiny_checkpoint)


@pytest.fixture(scope="module")
def session(tiny_models: Path) -> Callable[[str], ort.InferenceSession]:
    cache: dict[str, ort.InferenceSession] = {}

    def get(name: str) -> ort.InferenceSession:
        if name not in cache:
            cache[name] = _open(tiny_models / f"{name}.onnx")
        return cache[name]

    return get


def _open(path: Path | bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    source = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _torch_outputs(module: torch.nn.Module, feeds: Feeds) -> list[np.ndarray]:
    with torch.no_grad():
        out = module(*(torch.from_numpy(v) for v in feeds.values()))
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def assert_parity(
    sess: ort.InferenceSession, module: torch.nn.Module, feeds: Feeds
) -> list[np.ndarray]:
    """Run both; check names, shapes, finiteness and max abs error ≤ 1e-4; return ORT outputs."""
    assert [i.name for i in sess.get_inputs()] == list(feeds)
    got = sess.run(None, feeds)
    want = _torch_outputs(module, feeds)
    assert len(got) == len(want)
    for name, g, w in zip((o.name for o in sess.get_outputs()), got, want, strict=True):
        assert g.shape == w.shape, name
        assert np.isfinite(g).all(), f"{name}: non-finite ONNX output"
        assert np.isfinite(w).all(), f"{name}: non-finite torch output"
        error = float(np.abs(g - w).max())
        assert error <= TOLERANCE, f"{name}: max abs error {error:.3g}"
    return got


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _normal(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _scales(
    batch: int, layers: int, erg_rows: tuple[int, ...] = (), erg_layers: range = range(0)
) -> np.ndarray:
    scale = np.ones((batch, layers), np.float32)
    for row in erg_rows:
        scale[row, list(erg_layers)] = 0.01
    return scale


# --------------------------------------------------------------------------------------------
# Cases: (batch, lengths…) per graph; every dynamic length takes at least two values.
# --------------------------------------------------------------------------------------------


def text_encoder_feeds(batch: int, length: int, padded: bool) -> Feeds:
    rng = _rng(100 + length)
    ids = rng.integers(3, 800, (batch, length)).astype(np.int64)
    ids[:, -1] = 1  # </s>
    mask = np.ones((batch, length), np.int64)
    if padded:  # the last row is shorter: padding id 0, mask 0
        ids[-1, -3:] = 0
        mask[-1, -3:] = 0
    erg_rows = (batch - 1,) if batch > 1 else ()
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "q_scale": _scales(batch, 10, erg_rows, range(8, 10)),
    }


def condition_encoder_feeds(
    batch: int, text_len: int, lyric_len: int, empty_rows: tuple[int, ...], speaker: bool
) -> Feeds:
    rng = _rng(200 + text_len * 7 + lyric_len)
    lyric_ids = rng.integers(0, 6693, (batch, lyric_len)).astype(np.int64)
    lyric_mask = np.ones((batch, lyric_len), np.int64)
    for row in empty_rows:  # instrumental: ids 0, mask 0 (ACEStepPipeline.__call__ without lyrics)
        lyric_ids[row], lyric_mask[row] = 0, 0
    text_mask = np.ones((batch, text_len), np.int64)
    if batch > 1:
        text_mask[0, -1] = 0
    erg_rows = (batch - 1,) if batch > 1 else ()
    return {
        "text_hidden": _normal(rng, batch, text_len, 32),
        "text_mask": text_mask,
        "speaker": _normal(rng, batch, 512) if speaker else np.zeros((batch, 512), np.float32),
        "lyric_ids": lyric_ids,
        "lyric_mask": lyric_mask,
        "lyric_q_scale": _scales(batch, 6, erg_rows, range(4, 6)),
    }


def denoiser_feeds(batch: int, frames: int, cond_len: int, timesteps: tuple[float, ...]) -> Feeds:
    rng = _rng(300 + frames + cond_len)
    cond_mask = np.ones((batch, cond_len), np.float32)
    if batch > 1:
        cond_mask[-1, cond_len // 2 :] = 0.0
    erg_rows = (batch - 1,) if batch > 1 else ()
    return {
        "latents": _normal(rng, batch, 8, 16, frames),
        "timestep": np.array(timesteps, np.float32),
        "cond": _normal(rng, batch, cond_len, 64),
        "cond_mask": cond_mask,
        "q_scale": _scales(batch, 20, erg_rows, range(15, 20)),
    }


CASES: dict[str, list[tuple[str, Callable[[], Feeds]]]] = {
    "text_encoder": [
        ("B1-L3", lambda: text_encoder_feeds(1, 3, padded=False)),
        ("B2-L9-padded-erg", lambda: text_encoder_feeds(2, 9, padded=True)),
    ],
    "condition_encoder": [
        ("B1-L4-Y1-empty-lyrics", lambda: condition_encoder_feeds(1, 4, 1, (0,), speaker=False)),
        ("B2-L6-Y5-erg", lambda: condition_encoder_feeds(2, 6, 5, (), speaker=True)),
        ("B2-L3-Y1-empty-lyrics", lambda: condition_encoder_feeds(2, 3, 1, (0, 1), speaker=False)),
        ("B2-L5-Y9-one-empty-row", lambda: condition_encoder_feeds(2, 5, 9, (0,), speaker=False)),
    ],
    "denoiser": [
        ("B1-T5-S4", lambda: denoiser_feeds(1, 5, 4, (500.0,))),
        ("B2-T40-S17-erg", lambda: denoiser_feeds(2, 40, 17, (999.0, 8.928572))),
        ("B2-T13-S9", lambda: denoiser_feeds(2, 13, 9, (250.0, 750.0))),
    ],
    "dcae_decoder": [
        ("B1-T4", lambda: {"latents": _normal(_rng(400), 1, 8, 16, 4)}),
        ("B2-T21", lambda: {"latents": _normal(_rng(401), 2, 8, 16, 21)}),
    ],
    "dcae_encoder": [
        ("B1-W32", lambda: {"mel": _normal(_rng(500), 1, 2, 128, 32)}),
        ("B2-W168", lambda: {"mel": _normal(_rng(501), 2, 2, 128, 168)}),
    ],
    "vocoder": [
        ("B1-F8", lambda: {"mel": _normal(_rng(600), 1, 128, 8) * 2.0 - 5.0}),
        ("B2-F96", lambda: {"mel": _normal(_rng(601), 2, 128, 96) * 2.0 - 5.0}),
    ],
}

PARAMS = [
    pytest.param(graph, build, id=f"{graph}-{case}")
    for graph, cases in CASES.items()
    for case, build in cases
]


@pytest.mark.parametrize(("graph", "build"), PARAMS)
def test_graph_matches_torch(
    graph: str,
    build: Callable[[], Feeds],
    reference: ReferenceModels,
    session: Callable[[str], ort.InferenceSession],
) -> None:
    assert_parity(session(graph), reference.graph(graph), build())


def test_every_exported_graph_has_parity_cases(tiny_models: Path) -> None:
    manifest = json.loads((tiny_models / "manifest.json").read_text())
    assert set(manifest["graphs"]) == set(CASES)


def test_cases_cover_two_values_of_every_dynamic_length(tiny_models: Path) -> None:
    """Every symbolic input dimension of every graph takes at least two values in CASES."""
    manifest = json.loads((tiny_models / "manifest.json").read_text())
    for graph, entry in manifest["graphs"].items():
        seen: dict[str, set[int]] = {}
        for _case, build in CASES[graph]:
            feeds = build()
            for spec in entry["inputs"]:
                for dim, size in zip(spec["shape"], feeds[spec["name"]].shape, strict=True):
                    if isinstance(dim, str):
                        seen.setdefault(dim, set()).add(size)
                    else:
                        assert dim == size, (graph, spec["name"])
        assert seen, graph
        for dim, sizes in seen.items():
            assert len(sizes) >= 2, f"{graph}: dimension {dim} only tried with {sizes}"
        assert {1, 2} <= seen["batch"], graph


def test_empty_lyrics_give_one_masked_token(
    reference: ReferenceModels, session: Callable[[str], ort.InferenceSession]
) -> None:
    """All-masked lyrics: every conformer MHA reduces to its bias; the mask marks the token 0."""
    feeds = condition_encoder_feeds(2, 3, 1, (0, 1), speaker=False)
    cond, cond_mask = assert_parity(
        session("condition_encoder"), reference.condition_encoder, feeds
    )
    assert cond.shape == (2, 1 + 3 + 1, 64)
    np.testing.assert_array_equal(cond_mask, [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])
    # Both rows see the same (id 0, fully masked) lyric token → identical lyric vectors.
    np.testing.assert_allclose(cond[0, -1], cond[1, -1], atol=1e-6)
    # The speaker token of a zero speaker is speaker_embedder.bias.
    bias = reference.condition_encoder.inner.speaker_embedder.bias.detach().numpy()
    np.testing.assert_allclose(cond[:, 0], np.broadcast_to(bias, (2, 64)), atol=1e-6)


# --------------------------------------------------------------------------------------------
# The linear-attention eps (kept because the export runs with optimize=False)
# --------------------------------------------------------------------------------------------


def _scalar_constants(graph: onnx.GraphProto) -> dict[str, float]:
    values: dict[str, float] = {}
    for init in graph.initializer:
        if int(np.prod(init.dims, dtype=np.int64)) == 1:
            values[init.name] = float(numpy_helper.to_array(init).reshape(-1)[0])
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and int(np.prod(attr.t.dims, dtype=np.int64)) == 1:
                    values[node.output[0]] = float(numpy_helper.to_array(attr.t).reshape(-1)[0])
    return values


def eps_guarded_divisions(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The Add nodes that add a 1e-15 constant and feed the denominator of a Div."""
    graph = model.graph
    constants = _scalar_constants(graph)
    producers = {out: node for node in graph.node for out in node.output}
    found = []
    for node in graph.node:
        if node.op_type != "Div":
            continue
        add = producers.get(node.input[1])
        if (
            add is not None
            and add.op_type == "Add"
            and any(
                name in constants and np.isclose(constants[name], EPS, rtol=1e-6, atol=0)
                for name in add.input
            )
        ):
            found.append(add)
    return found


def strip_eps(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` where each eps Add is bypassed (what the onnxscript optimizer does)."""
    stripped = onnx.ModelProto()
    stripped.CopyFrom(model)
    constants = _scalar_constants(stripped.graph)
    adds = {node.output[0]: node for node in eps_guarded_divisions(stripped)}
    for node in stripped.graph.node:
        if node.op_type == "Div" and node.input[1] in adds:
            add = adds[node.input[1]]
            node.input[1] = next(i for i in add.input if i not in constants)
    return stripped


@pytest.mark.parametrize(
    ("graph", "count"), [("denoiser", 20), ("dcae_decoder", 1), ("dcae_encoder", 1)]
)
def test_linear_attention_eps_survives_export(graph: str, count: int, tiny_models: Path) -> None:
    """One ``Div(num, Add(den, 1e-15))`` per linear attention: 20 DiT layers, 1 per DCAE half."""
    model = onnx.load(str(tiny_models / f"{graph}.onnx"))
    assert len(eps_guarded_divisions(model)) == count


def _zero_denominator_feeds() -> Feeds:
    # q_scale 0 makes every query of that block exactly 0, so its self-attention denominators
    # are exactly 0 (and its cross-attention becomes uniform over the valid keys).
    feeds = denoiser_feeds(2, 6, 5, (500.0, 20.0))
    feeds["q_scale"][:, 3] = 0.0
    return feeds


def test_zero_linear_attention_denominator_stays_finite(
    reference: ReferenceModels, session: Callable[[str], ort.InferenceSession]
) -> None:
    assert_parity(session("denoiser"), reference.denoiser, _zero_denominator_feeds())


def test_eps_checks_catch_a_graph_without_eps(tiny_models: Path) -> None:
    """Both eps checks above fail on the same graph with its eps removed."""
    model = onnx.load(str(tiny_models / "denoiser.onnx"))
    stripped = strip_eps(model)
    assert eps_guarded_divisions(stripped) == []
    out = _open(stripped.SerializeToString()).run(None, _zero_denominator_feeds())[0]
    assert np.isnan(out).all()  # block 3's NaN reaches every later position and output
    finite = _open(model.SerializeToString()).run(None, _zero_denominator_feeds())[0]
    assert np.isfinite(finite).all()


# --------------------------------------------------------------------------------------------
# External data (graphs over 2 GB); exercised on one small graph with inline_limit=0
# --------------------------------------------------------------------------------------------


def test_external_data_graph_loads_and_matches(reference: ReferenceModels, tmp_path: Path) -> None:
    out = tmp_path / "external"
    out.mkdir()
    graphs = export_all_graphs(reference.checkpoint, out, inline_limit=0, only=("dcae_decoder",))
    assert [g.name for g in graphs] == ["dcae_decoder"]
    graph = graphs[0]
    data = out / "dcae_decoder.onnx.data"
    assert graph.external_data == data and data.is_file()
    assert sorted(p.name for p in out.iterdir()) == ["dcae_decoder.onnx", "dcae_decoder.onnx.data"]
    # Every initializer lives in the data file, none inline in the graph file.
    model = onnx.load(str(out / "dcae_decoder.onnx"), load_external_data=False)
    assert model.graph.initializer
    for tensor in model.graph.initializer:
        assert tensor.data_location == onnx.TensorProto.EXTERNAL, tensor.name
        assert not tensor.raw_data, tensor.name
        assert {e.key: e.value for e in tensor.external_data}["location"] == data.name
    assert data.stat().st_size >= graph.initializer_bytes

    sess = _open(out / "dcae_decoder.onnx")
    for _case, build in CASES["dcae_decoder"]:
        assert_parity(sess, reference.dcae_decoder, build())

    manifest = write_manifest(out, reference.checkpoint, graphs, precision="fp32")
    entry = manifest["graphs"]["dcae_decoder"]
    assert entry["external_data"] == "dcae_decoder.onnx.data"
    assert manifest["files"]["dcae_decoder.onnx.data"] == {
        "sha256": sha256_file(data),
        "size": data.stat().st_size,
    }
    schema = json.loads(SCHEMA_PATH.read_text())
    graph_schema = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": "#/$defs/graph"}
    Draft202012Validator(graph_schema).validate(entry)
