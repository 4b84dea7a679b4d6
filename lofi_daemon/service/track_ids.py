"""Track ids: the cache key of a generation.

A track id is the first :data:`TRACK_ID_CHARS` hex digits of a SHA-256 over a canonical JSON of
every parameter that changes the audio (the seed and the output format included), the backend
and the model version. It is only defined for a fixed seed: the daemon draws a seed for requests
that give none, so such requests are never cache hits. Ids are also file names in the cache, so
:func:`is_track_id` is the check that makes a client-supplied id safe to use as one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any, Final

from lofi_daemon.pipeline.params import GenerationParams

TRACK_ID_CHARS: Final = 24
TRACK_ID_SCHEME: Final = 1  # bump when the hashed payload changes, so old ids never collide

_TRACK_ID_RE: Final = re.compile(rf"[0-9a-f]{{{TRACK_ID_CHARS}}}")


def is_track_id(value: object) -> bool:
    """True when ``value`` has the shape of a track id (and so is safe in a file name)."""
    return isinstance(value, str) and _TRACK_ID_RE.fullmatch(value) is not None


def canonical_params(params: GenerationParams) -> dict[str, Any]:
    """Parameters with float fields as floats, so 30 and 30.0 (or -0.0 and 0.0) hash alike."""
    canonical: dict[str, Any] = {}
    for field in dataclasses.fields(GenerationParams):
        value = getattr(params, field.name)
        if isinstance(field.default, float) and not isinstance(value, bool):
            value = float(value) + 0.0
        canonical[field.name] = value
    return canonical


def track_id_for(params: GenerationParams, *, model_version: str, backend: str) -> str:
    """The cache key of a generation: every audio-affecting input, hashed.

    Raises:
        ValueError: when ``params.seed`` is None (a random seed has no stable identity).
    """
    if params.seed is None:
        raise ValueError("a track id needs a fixed seed")
    payload = {
        "scheme": TRACK_ID_SCHEME,
        "backend": backend,
        "model_version": model_version,
        "params": canonical_params(params),
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode("ascii")).hexdigest()[:TRACK_ID_CHARS]
