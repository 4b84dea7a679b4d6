"""A local stand-in for the Hugging Face hub, enough for ``huggingface_hub`` 0.36 downloads.

It serves one model repository from a folder on 127.0.0.1 (a random port) and implements what
``HfApi.model_info(files_metadata=True)``, ``HfApi.parse_safetensors_file_metadata`` and
``snapshot_download(local_dir=..., allow_patterns=...)`` call:

* ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}``: the commit ``sha`` and
  the ``siblings`` (with ``size``, ``blobId`` and ``lfs`` when ``blobs=True`` is asked).
* ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: small files answer 200 with ``ETag`` (the git
  blob id), ``X-Repo-Commit`` and ``Content-Length``; LFS files (``*.safetensors``) answer 302 to
  an absolute ``/cdn/{sha256}`` address with ``X-Linked-Etag``/``X-Linked-Size``, as the hub does.
* ``GET /cdn/{sha256}``: the bytes, with ``Range: bytes=S-[E]`` answered by 206 (resume).

Files ending in ``.safetensors`` or ``.pt`` are LFS files, as in the hub's default
``.gitattributes``. :func:`turbo_decoys` gives the files of ``ACE-Step/Ace-Step1.5`` that a 1.5
install must never fetch (the 5 Hz planner LM and repository extras), to serve beside a 1.5
checkpoint. Unknown repositories, revisions and files get 404 with the hub's ``X-Error-Code``. Every request
is recorded; ``bytes_per_sec`` throttles file bodies (to observe and interrupt a download) and
``tamper`` serves a file whose bytes no longer match its published sha256.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

HOST = "127.0.0.1"
CHUNK = 64 << 10
LFS_SUFFIXES = (".safetensors", ".pt")
#: The planner LM of the 1.5 bundle: in the same repository, never needed by the DiT-only path.
TURBO_DECOY_LM = "acestep-5Hz-lm-1.7B"


def _safetensors(name: str, values: int) -> bytes:
    """A valid safetensors file holding one float32 tensor of zeros."""
    header = json.dumps(
        {name: {"dtype": "F32", "shape": [values], "data_offsets": [0, 4 * values]}}
    )
    raw = header.encode() + b" " * (-len(header) % 8)
    return len(raw).to_bytes(8, "little") + raw + bytes(4 * values)


def turbo_decoys() -> dict[str, bytes]:
    """``extra`` files for a 1.5 hub: the planner LM folder and files outside the allow list."""
    return {
        f"{TURBO_DECOY_LM}/config.json": b'{"architectures": ["Qwen3ForCausalLM"]}\n',
        f"{TURBO_DECOY_LM}/model.safetensors": _safetensors("lm_head.weight", 4096),
        f"{TURBO_DECOY_LM}/tokenizer.json": b"{}\n",
        "config.json": b'{"is_turbo": true}\n',
        "README.md": b"# ACE-Step 1.5\n",
        "acestep-v15-turbo/modeling_acestep_v15_turbo.py": b"# remote code, not needed\n",
        "Qwen3-Embedding-0.6B/chat_template.jinja": b"{{ messages }}\n",
    }


@dataclass(frozen=True)
class HubFile:
    path: str
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def blob_id(self) -> str:
        """The git blob id of what git stores: the file, or its LFS pointer."""
        stored = self.pointer() if self.lfs else self.data
        return hashlib.sha1(b"blob %d\0" % len(stored) + stored).hexdigest()

    def pointer(self) -> bytes:
        return (
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\n"
            f"size {len(self.data)}\n"
        ).encode()


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: str | None


class FakeHub:
    """Serve ``root`` (plus ``extra`` files) as the model repository ``repo_id``."""

    def __init__(self, root: Path, repo_id: str, *, extra: dict[str, bytes] | None = None) -> None:
        self.repo_id = repo_id
        self.files: dict[str, HubFile] = {}
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            name = path.relative_to(root).as_posix()
            self.files[name] = HubFile(name, path.read_bytes(), name.endswith(LFS_SUFFIXES))
        for name, data in (extra or {}).items():
            self.files[name] = HubFile(name, data, name.endswith(LFS_SUFFIXES))
        listing = json.dumps({n: f.sha256 for n, f in self.files.items()}, sort_keys=True)
        self.commit = hashlib.sha1(listing.encode()).hexdigest()
        self.by_sha = {f.sha256: f for f in self.files.values()}
        self.bytes_per_sec: float | None = None
        self.tampered: dict[str, bytes] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((HOST, 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._server.server_port}"

    def __enter__(self) -> FakeHub:  # noqa: PYI034 - typing_extensions is not a dependency
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def tamper(self, name: str) -> None:
        """Serve ``name`` with one byte changed (same size) while its metadata stays the same."""
        data = bytearray(self.files[name].data)
        data[len(data) // 2] ^= 0xFF
        self.tampered[name] = bytes(data)

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def seen(self, method: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if method is None or r.method == method]

    def body_requests(self) -> list[Request]:
        """GETs that fetch file contents (CDN downloads and small files), not metadata."""
        return [
            r
            for r in self.seen("GET")
            if r.path.startswith("/cdn/")
            or ("/resolve/" in r.path and not self._is_lfs_url(r.path))
        ]

    def _is_lfs_url(self, path: str) -> bool:
        entry = self.files.get(path.split("/resolve/", 1)[1].split("/", 1)[-1])
        return entry is not None and entry.lfs

    def model_info(self, revision: str, blobs: bool) -> dict:
        siblings = []
        for f in self.files.values():
            sibling: dict = {"rfilename": f.path}
            if blobs:
                sibling["blobId"] = f.blob_id
                sibling["size"] = len(f.data)
                if f.lfs:
                    sibling["lfs"] = {
                        "size": len(f.data),
                        "sha256": f.sha256,
                        "pointerSize": len(f.pointer()),
                    }
            siblings.append(sibling)
        return {
            "_id": "fake",
            "id": self.repo_id,
            "modelId": self.repo_id,
            "sha": self.commit,
            "private": False,
            "siblings": siblings,
        }


def _handler_for(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 30

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:
            self._route(head=True)

        def do_GET(self) -> None:
            self._route(head=False)

        # -- routing ---------------------------------------------------------------------

        def _route(self, head: bool) -> None:
            url = urlparse(self.path)
            path = unquote(url.path)
            hub.record(Request(self.command, path, self.headers.get("Range")))
            try:
                if path.startswith("/api/models/"):
                    self._api(path.removeprefix("/api/models/"), parse_qs(url.query))
                elif path.startswith("/cdn/"):
                    self._cdn(path.removeprefix("/cdn/"), head)
                elif "/resolve/" in path:
                    self._resolve(path, head)
                else:
                    self._error(404, "RepoNotFound", "no such route")
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _api(self, rest: str, query: dict[str, list[str]]) -> None:
            repo, _, revision = rest.partition("/revision/")
            if repo != hub.repo_id:
                self._error(404, "RepoNotFound", f"Repository {repo} not found")
                return
            if revision not in ("", "main", hub.commit):
                self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                return
            blobs = query.get("blobs", ["false"])[0].lower() == "true"
            body = json.dumps(hub.model_info(revision or "main", blobs)).encode()
            self._send(200, {"Content-Type": "application/json"}, body, head=False)

        def _resolve(self, path: str, head: bool) -> None:
            repo, _, rest = path.lstrip("/").partition("/resolve/")
            revision, _, name = rest.partition("/")
            if repo != hub.repo_id:
                self._error(404, "RepoNotFound", f"Repository {repo} not found")
                return
            if revision not in ("main", hub.commit):
                self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                return
            entry = hub.files.get(name)
            if entry is None:
                self._error(404, "EntryNotFound", f"{name} does not exist", commit=True)
                return
            common = {"X-Repo-Commit": hub.commit, "Accept-Ranges": "bytes"}
            if entry.lfs:
                headers = {
                    **common,
                    "ETag": f'"{entry.blob_id}"',
                    "X-Linked-Etag": f'"{entry.sha256}"',
                    "X-Linked-Size": str(len(entry.data)),
                    "Location": f"{hub.url}/cdn/{entry.sha256}",
                }
                self._send(302, headers, b"", head=head)
                return
            self._file(entry, {**common, "ETag": f'"{entry.blob_id}"'}, head)

        def _cdn(self, sha: str, head: bool) -> None:
            entry = hub.by_sha.get(sha)
            if entry is None:
                self._error(404, "EntryNotFound", "no such object")
                return
            self._file(entry, {"ETag": f'"{entry.sha256}"', "Accept-Ranges": "bytes"}, head)

        # -- responses -------------------------------------------------------------------

        def _file(self, entry: HubFile, headers: dict[str, str], head: bool) -> None:
            data = hub.tampered.get(entry.path, entry.data)
            wanted = self.headers.get("Range")
            status = 200
            if wanted is not None:
                span = _parse_range(wanted, len(data))
                if span is None:
                    headers = {**headers, "Content-Range": f"bytes */{len(data)}"}
                    self._send(416, headers, b"", head=head)
                    return
                start, end = span
                headers = {**headers, "Content-Range": f"bytes {start}-{end}/{len(data)}"}
                data, status = data[start : end + 1], 206
            self._send(status, headers, data, head=head, throttle=True)

        def _error(self, status: int, code: str, message: str, commit: bool = False) -> None:
            headers = {"X-Error-Code": code, "X-Error-Message": message}
            if commit:
                headers["X-Repo-Commit"] = hub.commit
            body = json.dumps({"error": message}).encode()
            self._send(status, {**headers, "Content-Type": "application/json"}, body, head=False)

        def _send(
            self,
            status: int,
            headers: dict[str, str],
            body: bytes,
            *,
            head: bool,
            throttle: bool = False,
        ) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if head or self.command == "HEAD":
                return
            for at in range(0, len(body), CHUNK):
                self.wfile.write(body[at : at + CHUNK])
                rate = hub.bytes_per_sec
                if throttle and rate:
                    time.sleep(CHUNK / rate)

    return Handler


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """``bytes=S-`` or ``bytes=S-E`` → (S, E) inclusive, clipped; None if unsatisfiable."""
    unit, _, spec = value.partition("=")
    first, _, last = spec.partition("-")
    if unit.strip() != "bytes" or not first.strip().isdigit():
        return None
    start = int(first)
    end = int(last) if last.strip().isdigit() else size - 1
    if start >= size or end < start:
        return None
    return start, min(end, size - 1)
