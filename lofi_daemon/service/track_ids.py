"""Track ids: the cache key of a generation.

A track id is the first :data:`TRACK_ID_CHARS` hex digits of a SHA-256 over a canonical JSON of
every parameter that changes the audio (the seed and the output format included), the backend
and the model version; for the audio tasks also the source (see :class:`SourceKey`) and the LoRA
variant. Only the parameters the task and the backend use are hashed (:func:`canonical_params`),
so a text2music id is what it was before the tasks existed, and a v1 id what it was before the
ACE-Step 1.5 parameters existed. It is only defined for fixed seeds: the
daemon draws a seed (and a retake seed) for requests that give none, so such requests are never
cache hits. Ids are also file names in the cache, so :func:`is_track_id` is the check that makes
a client-supplied id safe to use as one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Final

from lofi_daemon.model.backends import TURBO
from lofi_daemon.pipeline.params import (
    BACKEND_FIELDS,
    RETAKE_TASKS,
    SOURCE_TASKS,
    TASK_FIELDS,
    GenerationParams,
    accepted_fields,
)

TRACK_ID_CHARS: Final = 24
TRACK_ID_SCHEME: Final = 1  # bump when the hashed payload changes, so old ids never collide

_FLOAT_TYPES: Final = ("float", "float | None")  # GenerationParams annotations (strings)
_TRACK_ID_RE: Final = re.compile(rf"[0-9a-f]{{{TRACK_ID_CHARS}}}")


def is_track_id(value: object) -> bool:
    """True when ``value`` has the shape of a track id (and so is safe in a file name)."""
    return isinstance(value, str) and _TRACK_ID_RE.fullmatch(value) is not None


#: The fields every v1 task hashes (the text2music ones): all of v1's but the task and its own
#: fields (the backend is hashed beside the params).
COMMON_FIELDS: Final = tuple(
    name
    for name, owners in BACKEND_FIELDS.items()
    if "ace-step" in owners and name not in ("task", "backend") and name not in TASK_FIELDS
)
#: What an ACE-Step 1.5 id hashes: every field that backend takes (it runs text2music only).
TURBO_HASHED_FIELDS: Final = tuple(n for n in accepted_fields(TURBO.name) if n != "backend")


@dataclass(frozen=True)
class SourceKey:
    """What identifies a task's source audio in a track id: ``kind`` "path" (``sha256`` of the
    file) or "track" (``ref`` the source track id, ``sha256`` of its latents file or, without
    one, of its audio file)."""

    kind: str
    sha256: str
    ref: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "sha256": self.sha256}
        if self.ref is not None:
            data["track_id"] = self.ref
        return data


def hashed_fields(task: str, backend: str = "ace-step") -> tuple[str, ...]:
    """The parameter names a ``task`` track id of ``backend`` covers.

    ACE-Step 1.5: :data:`TURBO_HASHED_FIELDS`. v1 text2music: :data:`COMMON_FIELDS`, exactly as
    before the tasks; other tasks add ``task`` and their own fields; the source tasks drop
    ``duration_sec`` (the source decides the length).
    """
    if backend == TURBO.name:
        return TURBO_HASHED_FIELDS
    if task == "text2music":
        return COMMON_FIELDS
    own = tuple(name for name, tasks in TASK_FIELDS.items() if task in tasks)
    common = tuple(n for n in COMMON_FIELDS if not (task in SOURCE_TASKS and n == "duration_sec"))
    return (*common, "task", *own)


def canonical_params(params: GenerationParams) -> dict[str, Any]:
    """The hashed parameters (:func:`hashed_fields`) of the resolved params, float fields as
    floats, so 30 and 30.0 (or -0.0 and 0.0) hash alike."""
    params = params.resolved()
    types = {field.name: str(field.type) for field in dataclasses.fields(GenerationParams)}
    canonical: dict[str, Any] = {}
    for name in hashed_fields(params.task, params.backend):
        value = getattr(params, name)
        if types[name] in _FLOAT_TYPES and value is not None and not isinstance(value, bool):
            value = float(value) + 0.0
        canonical[name] = value
    return canonical


def track_id_for(
    params: GenerationParams,
    *,
    model_version: str,
    backend: str,
    source: SourceKey | None = None,
    variant: str | None = None,
) -> str:
    """The cache key of a generation: every audio-affecting input, hashed.

    ``backend`` is the backend the generation runs on (``params.backend``, which it must equal
    for a 1.5 generation; v1 callers that predate the field pass "ace-step").

    Raises:
        ValueError: when ``params.seed`` (or, for retake, repaint and extend,
            ``params.retake_seed``) is None: a random seed has no stable identity.
    """
    if params.seed is None:
        raise ValueError("a track id needs a fixed seed")
    if params.task in RETAKE_TASKS and params.retake_seed is None:
        raise ValueError("a track id needs a fixed retake seed")
    if backend != params.backend and TURBO.name in (backend, params.backend):
        raise ValueError(f"backend {backend!r} does not match the params' {params.backend!r}")
    payload: dict[str, Any] = {
        "scheme": TRACK_ID_SCHEME,
        "backend": backend,
        "model_version": model_version,
        "params": canonical_params(params),
    }
    if source is not None:
        payload["source"] = source.to_json()
    if variant is not None:
        payload["variant"] = variant
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode("ascii")).hexdigest()[:TRACK_ID_CHARS]
