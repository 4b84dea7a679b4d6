"""``tracks.read``: a finished track's audio bytes, in chunks, over the JSON-RPC connection.

When the daemon runs on another machine (``ssh gpu-box lofi-daemon serve``, docs/protocol.md
"tracks.read"), the editor cannot open the paths the daemon reports; it fetches the file with
``tracks.read`` instead, one chunk after another, and checks the whole file against ``sha256``.

A read answers from the file as it is on disk: the file is opened without following symlinks,
``size`` and the slice come from the same open file, and the whole-file digest is computed once
per ``(path, size, mtime)`` and remembered (:class:`DigestMemo`), so a client fetching a 10 MB
track in 1 MiB chunks costs one hash, not ten.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import threading
from collections import OrderedDict
from typing import Any, Final

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.fsutil import SAFE_READ_FLAGS
from lofi_daemon.service.cache import TrackCache
from lofi_daemon.service.method_params import check_params

METHOD: Final = "tracks.read"
PARAMS: Final = ("track_id", "offset", "length")
#: The largest (and the default) ``length``: 1 MiB of audio is ~1.4 MB of base64 on the line.
MAX_READ_BYTES: Final = 1024 * 1024
_HASH_BLOCK: Final = 1024 * 1024
_MEMO_ENTRIES: Final = 64

_Key = tuple[str, int, int]


class DigestMemo:
    """The sha256 of whole files, by ``(path, size, mtime_ns)``; the newest ``limit`` kept."""

    def __init__(self, limit: int = _MEMO_ENTRIES) -> None:
        self._limit = limit
        self._digests: OrderedDict[_Key, str] = OrderedDict()
        self._lock = threading.Lock()
        self.computed = 0  # how many digests were computed (for tests)

    def digest(self, fd: int, key: _Key) -> str:
        """The hex sha256 of the file open as ``fd`` (``key`` describes it)."""
        with self._lock:
            known = self._digests.get(key)
            if known is not None:
                self._digests.move_to_end(key)
                return known
        sha = hashlib.sha256()
        offset = 0
        while True:
            block = os.pread(fd, _HASH_BLOCK, offset)
            if not block:
                break
            sha.update(block)
            offset += len(block)
        hexdigest = sha.hexdigest()
        with self._lock:
            self.computed += 1
            self._digests[key] = hexdigest
            while len(self._digests) > self._limit:
                self._digests.popitem(last=False)
        return hexdigest


def _int_param(params: dict[str, Any], name: str, default: int) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise LofiError(errors.INVALID_PARAMS, f"{METHOD}: {name} must be an integer")
    return value


def read_request(params: dict[str, Any]) -> tuple[str, int, int]:
    """The checked ``(track_id, offset, length)`` of a ``tracks.read`` request.

    Raises:
        LofiError: INVALID_PARAMS for an unknown name or a wrong type; INVALID_PARAMETER for a
            negative offset or a length outside 0..MAX_READ_BYTES.
    """
    check_params(params, PARAMS, METHOD)
    track_id = params.get("track_id")
    if not isinstance(track_id, str):
        raise LofiError(errors.INVALID_PARAMS, f"{METHOD} needs a string track_id")
    offset = _int_param(params, "offset", 0)
    length = _int_param(params, "length", MAX_READ_BYTES)
    if offset < 0:
        raise LofiError(errors.INVALID_PARAMETER, f"offset must be 0 or more, not {offset}")
    if not 0 <= length <= MAX_READ_BYTES:
        raise LofiError(
            errors.INVALID_PARAMETER,
            f"length must be 0 to {MAX_READ_BYTES} bytes (1 MiB), not {length}",
        )
    return track_id, offset, length


class TrackReader:
    """Answers ``tracks.read`` from ``cache`` (finished tracks only: the sidecar is written
    after the audio, so a track in progress is not found)."""

    def __init__(self, cache: TrackCache, memo: DigestMemo | None = None) -> None:
        self.cache = cache
        self.memo = memo or DigestMemo()

    def read(self, params: dict[str, Any]) -> dict[str, Any]:
        """The ``tracks.read`` result: ``{track_id, offset, length, size, sha256, eof, data}``.

        Raises:
            LofiError: the parameter errors of :func:`read_request`; TRACK_NOT_FOUND for an
                unknown or unfinished track (or one whose file vanished); INVALID_PARAMETER
                for an offset past the end of the file.
        """
        track_id, offset, length = read_request(params)
        entry = self.cache.get(track_id, touch=False)
        if entry is None:
            raise LofiError(errors.TRACK_NOT_FOUND, f"no cached track {track_id[:64]!r}")
        try:
            fd = os.open(entry.path, SAFE_READ_FLAGS)
        except OSError as exc:
            raise LofiError(
                errors.TRACK_NOT_FOUND, f"the audio of {track_id} cannot be opened: {exc}"
            ) from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise LofiError(errors.TRACK_NOT_FOUND, f"the audio of {track_id} is not a file")
            size = info.st_size
            if offset > size:
                raise LofiError(
                    errors.INVALID_PARAMETER,
                    f"offset {offset} is past the end of the track ({size} bytes)",
                )
            data = os.pread(fd, length, offset) if length else b""
            digest = self.memo.digest(fd, (str(entry.path), size, info.st_mtime_ns))
        except OSError as exc:
            raise LofiError(
                errors.TRACK_NOT_FOUND, f"the audio of {track_id} cannot be read: {exc}"
            ) from exc
        finally:
            os.close(fd)
        return {
            "track_id": track_id,
            "offset": offset,
            "length": len(data),
            "size": size,
            "sha256": digest,
            "eof": offset + len(data) >= size,
            "data": base64.b64encode(data).decode("ascii"),
        }
