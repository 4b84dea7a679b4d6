"""The hub child: ``python -m lofi_daemon.install.hub probe|download ...``.

This is the only code of lofi.nvim that imports huggingface_hub, and it runs in a child process
(see :func:`lofi_daemon.install.child.run_hub`), so the daemon stays free of it and a download
can be stopped at once by killing the child. It prints one JSON object on stdout:
``{"ok": true, ...}`` with the answer, or ``{"ok": false, "error": "..."}``.

``probe REPO [--revision REV] [--backend NAME]``
    the commit and the files the export of backend NAME needs (default ``ace-step``), each with
    its size and checksum, plus the size of the weights once stored as fp32 and of the tensors
    the export copies as fp32 arrays (read from the safetensors headers, nothing else
    downloaded).
``download REPO REV DIR [--backend NAME]``
    fetch those files (and only those) into DIR; huggingface_hub resumes partial files found
    there.
``lora-probe REPO``
    the commit, size and checksum of the repository's ``pytorch_lora_weights.safetensors``.
``lora-download REPO REV DIR``
    fetch only that file into DIR.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from typing import Any

from lofi_daemon.install.backend_spec import BackendSpec, backend_spec
from lofi_daemon.model.backends import DEFAULT_BACKEND
from lofi_daemon.model.variants import LORA_FILE


def probe(repo_id: str, revision: str | None, backend: str = DEFAULT_BACKEND) -> dict[str, Any]:
    """The answer to ``probe``: ``revision``, ``files``, ``weights_fp32_bytes`` and
    ``copied_fp32_bytes`` (the fp32 sizes, None when a header cannot be read)."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import filter_repo_objects

    spec = backend_spec(backend)
    api = HfApi()
    info = api.model_info(repo_id, revision=revision, files_metadata=True, timeout=60)
    siblings = list(
        filter_repo_objects(
            info.siblings or [],
            allow_patterns=list(spec.allow_patterns),
            key=lambda s: s.rfilename,
        )
    )
    files = [
        {
            "path": s.rfilename,
            "size": int(s.lfs.size if s.lfs else s.size or 0),
            "sha256": s.lfs.sha256 if s.lfs else None,
            "blob_id": s.blob_id,
        }
        for s in siblings
    ]
    fp32, copied = _fp32_bytes(api, repo_id, info.sha, [s.rfilename for s in siblings], spec)
    return {
        "revision": info.sha,
        "files": files,
        "weights_fp32_bytes": fp32,
        "copied_fp32_bytes": copied,
    }


def _fp32_bytes(
    api: Any, repo_id: str, commit: str | None, names: list[str], spec: BackendSpec
) -> tuple[int | None, int | None]:
    """4 bytes per parameter of the safetensors files, and of the tensors the export copies;
    (None, None) when a header cannot be read."""
    total = copied = 0
    for name in names:
        if not name.endswith(".safetensors"):
            continue
        try:
            meta = api.parse_safetensors_file_metadata(repo_id, name, revision=commit)
        except Exception as exc:  # noqa: BLE001 - the estimate falls back to the file sizes
            print(f"cannot read the header of {name}: {exc}", file=sys.stderr)
            return None, None
        total += 4 * sum(t.parameter_count for t in meta.tensors.values())
        for file, tensor in spec.copied_tensors:
            if file == name and tensor in meta.tensors:
                copied += 4 * meta.tensors[tensor].parameter_count
    return total, copied


def download(
    repo_id: str, revision: str, local_dir: str, backend: str = DEFAULT_BACKEND
) -> dict[str, Any]:
    """The answer to ``download`` (nothing but ``ok``): the files are in ``local_dir``."""
    from huggingface_hub import snapshot_download

    snapshot_download(
        repo_id,
        revision=revision,
        local_dir=local_dir,
        allow_patterns=list(backend_spec(backend).allow_patterns),
        max_workers=4,
    )
    return {}


def lora_probe(repo_id: str) -> dict[str, Any]:
    """The answer to ``lora-probe``: ``revision`` and ``file`` (path, size, sha256, blob_id)."""
    from huggingface_hub import HfApi

    info = HfApi().model_info(repo_id, files_metadata=True, timeout=60)
    found = [s for s in info.siblings or [] if s.rfilename == LORA_FILE]
    if not found:
        raise FileNotFoundError(f"{repo_id} has no {LORA_FILE}")
    file = found[0]
    return {
        "revision": info.sha,
        "file": {
            "path": file.rfilename,
            "size": int(file.lfs.size if file.lfs else file.size or 0),
            "sha256": file.lfs.sha256 if file.lfs else None,
            "blob_id": file.blob_id,
        },
    }


def lora_download(repo_id: str, revision: str, local_dir: str) -> dict[str, Any]:
    """The answer to ``lora-download`` (nothing but ``ok``): the file is in ``local_dir``."""
    from huggingface_hub import hf_hub_download

    hf_hub_download(repo_id, LORA_FILE, revision=revision, local_dir=local_dir)
    return {}


#: What huggingface_hub and requests wrap around the reason of a failure.
_REQUEST_ID = re.compile(r"\s*\(?Request ID: [^)]*\)?", re.IGNORECASE)
_HTTP_PREFIX = re.compile(r"^\d{3} (?:Client|Server) Error\.?\s*")
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\"\]\)]+)")
MAX_ERROR_CHARS = 200


def readable_error(exc: BaseException) -> str:
    """One short line about ``exc`` (no request id, no advice, no nested reprs).

    An HTTP error gives its status and the hub's first sentence (``the hub answered HTTP 404
    (Repository Not Found)``); a network error its innermost reason (``the hub cannot be reached
    (Connection refused)``).
    """
    text = " ".join(_REQUEST_ID.sub("", str(exc)).split())
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        text = _HTTP_PREFIX.sub("", text).split(" for url:", 1)[0].split(". ", 1)[0]
        detail = f"the hub answered HTTP {status}" + (f" ({text.strip(' .')})" if text else "")
    elif isinstance(exc, OSError) or "connect" in type(exc).__name__.lower():
        reason = _ERRNO.search(text)
        if reason is not None:
            why = reason.group(1).strip()
        elif "timed out" in text.lower():
            why = "timed out"
        else:
            why = type(exc).__name__
        detail = f"the hub cannot be reached ({why})"
    else:
        detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return detail if len(detail) <= MAX_ERROR_CHARS else detail[: MAX_ERROR_CHARS - 3] + "..."


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m lofi_daemon.install.hub")
    sub = parser.add_subparsers(dest="command", required=True)
    probe_cmd = sub.add_parser("probe")
    probe_cmd.add_argument("repo_id")
    probe_cmd.add_argument("--revision", default=None)
    probe_cmd.add_argument("--backend", default=DEFAULT_BACKEND)
    fetch_cmd = sub.add_parser("download")
    fetch_cmd.add_argument("repo_id")
    fetch_cmd.add_argument("revision")
    fetch_cmd.add_argument("local_dir")
    fetch_cmd.add_argument("--backend", default=DEFAULT_BACKEND)
    lora_probe_cmd = sub.add_parser("lora-probe")
    lora_probe_cmd.add_argument("repo_id")
    lora_cmd = sub.add_parser("lora-download")
    lora_cmd.add_argument("repo_id")
    lora_cmd.add_argument("revision")
    lora_cmd.add_argument("local_dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        if args.command == "probe":
            answer = probe(args.repo_id, args.revision, args.backend)
        elif args.command == "lora-probe":
            answer = lora_probe(args.repo_id)
        elif args.command == "lora-download":
            answer = lora_download(args.repo_id, args.revision, args.local_dir)
        else:
            answer = download(args.repo_id, args.revision, args.local_dir, args.backend)
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the parent as JSON
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)  # the whole story, for the log
        print(json.dumps({"ok": False, "error": readable_error(exc)}))
        return 1
    print(json.dumps({"ok": True, **answer}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
