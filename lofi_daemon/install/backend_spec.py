"""What an installation fetches and checks for each backend, chosen by the backend's name.

Both backends install the same way (plan, consent, download, ``lofi-export onnx``, verify,
atomic rename); they differ only in the hub repository, the files taken from it, the files a
local checkpoint must have, the weights that size the export, and the manifest the export
writes. A :class:`BackendSpec` holds those differences; :func:`backend_spec` picks one.

``ace-step`` (v1) takes the four component folders of ``ACE-Step/ACE-Step-v1-3.5B``;
``ace-step-1.5`` takes exactly ``turbo_layout.ALLOW_PATTERNS`` of ``ACE-Step/Ace-Step1.5`` (the
turbo DiT with ``silence_latent.pt``, the VAE and the Qwen3 text encoder), never the 5 Hz planner
LM that shares the repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.model import layout, turbo_layout
from lofi_daemon.model.backends import TURBO, V1


@dataclass(frozen=True)
class BackendSpec:
    """The installation facts of one backend.

    Attributes:
        name: the backend's name (``lofi_daemon.model.backends``).
        title: how messages name its weights ("ACE-Step v1").
        repo_id: the hub repository a download reads.
        allow_patterns: the repository files a download fetches, and nothing else.
        required_files: without these a checkpoint folder (or hub revision) cannot be exported.
        weights: the safetensors files whose fp32 size the export takes on disk.
        copied_tensors: ``(file, tensor)`` pairs the export stores a second time as a fp32
            array beside the graphs (1.5: the Qwen3 token embedding as ``embed_tokens.npy``).
        graphs: how many graphs the exporter writes (until its ``start`` event says).
        env_var: the variable that overrides this backend's model directory.
        lora: whether ``--lora`` variants exist for it.
    """

    name: str
    title: str
    repo_id: str
    allow_patterns: tuple[str, ...]
    required_files: tuple[str, ...]
    weights: tuple[str, ...]
    copied_tensors: tuple[tuple[str, str], ...]
    graphs: int
    env_var: str
    lora: bool

    def checkpoint_remedy(self) -> str:
        folders = sorted({path.split("/", 1)[0] for path in self.required_files})
        return f"Point --checkpoint at a folder with the sub-folders {', '.join(folders)} of {self.repo_id}."


V1_SPEC: Final = BackendSpec(
    name=V1.name,
    title="ACE-Step v1",
    repo_id=layout.REPO_ID,
    allow_patterns=tuple(
        [f"{c.folder}/config.json" for c in layout.COMPONENTS]
        + [f"{c.folder}/{c.weights}" for c in layout.COMPONENTS]
        + [f"{layout.TEXT_ENCODER.folder}/{name}" for name in layout.TOKENIZER_FILES]
    ),
    required_files=tuple(
        [f"{c.folder}/config.json" for c in layout.COMPONENTS]
        + [f"{c.folder}/{c.weights}" for c in layout.COMPONENTS]
        + [f"{layout.TEXT_ENCODER.folder}/tokenizer.json"]
    ),
    weights=tuple(f"{c.folder}/{c.weights}" for c in layout.COMPONENTS),
    copied_tensors=(),
    graphs=6,
    env_var=V1.env_var,
    lora=True,
)

TURBO_SPEC: Final = BackendSpec(
    name=TURBO.name,
    title="ACE-Step 1.5 turbo",
    repo_id=turbo_layout.REPO_ID,
    allow_patterns=turbo_layout.ALLOW_PATTERNS,
    required_files=turbo_layout.REQUIRED_FILES,
    weights=tuple(f"{f.name}/{f.weights}" for f in turbo_layout.FOLDERS),
    # The exporter writes the Qwen3 token embedding as embed_tokens.npy (fp32) for the lyric
    # path, besides the text encoder graph that holds it too.
    copied_tensors=(
        (
            f"{turbo_layout.TEXT_ENCODER.name}/{turbo_layout.TEXT_ENCODER.weights}",
            "embed_tokens.weight",
        ),
    ),
    graphs=len(turbo_layout.GRAPHS),
    env_var=TURBO.env_var,
    lora=False,
)

SPECS: Final = {spec.name: spec for spec in (V1_SPEC, TURBO_SPEC)}


def backend_spec(name: str) -> BackendSpec:
    """The spec of backend ``name``.

    Raises:
        LofiError: INVALID_BACKEND for a name no backend has.
    """
    spec = SPECS.get(name)
    if spec is None:
        known = ", ".join(repr(n) for n in SPECS)
        raise LofiError(errors.INVALID_BACKEND, f"unknown backend {name!r:.60}; use one of {known}")
    return spec


def spec_for_repo(repo_id: str) -> BackendSpec | None:
    """The backend whose weights live in ``repo_id`` (None for another repository, a LoRA)."""
    return next((s for s in SPECS.values() if s.repo_id == repo_id), None)
