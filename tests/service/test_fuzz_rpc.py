"""Property-based fuzz of one real ``lofi-daemon serve`` subprocess (no models installed, so no
generation runs): random bytes, invalid UTF-8, non-objects, batches, wrong types, unknown
methods, notifications and huge lines. Every line is followed, batch by batch, by a sync ping;
since the daemon answers lines in order, the replies between two syncs must be exactly the
replies the batch calls for.

The last test starts daemons (fake engine) over random hostile cache folders instead."""

from __future__ import annotations

import itertools
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from daemon_doubles import DaemonProcess, RpcClient, write_fake_models
from hostile_cache import (
    GENERATE,
    HOSTILE_KINDS,
    add_track,
    age,
    foreign_names,
    id_for,
    plant_hostile,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lofi_daemon import errors
from lofi_daemon.service.cache import TrackCache

KNOWN_METHODS = [
    "ping",
    "generate",
    "cancel",
    "status",
    "backends.list",
    "get_backends",
    "tracks.list",
    "tracks.delete",
    "tracks.read",
    "setup",
    "setup.cancel",
]  # shutdown is left out: it would end the run
GENERATE_FIELDS = [
    "prompt",
    "duration_sec",
    "seed",
    "infer_steps",
    "guidance_scale",
    "scheduler",
    "cfg_type",
    "omega_scale",
    "guidance_interval",
    "format",
    "wav_subtype",
    "use_erg_tag",
    "priority",
    "backend",
]
KNOWN_CODES = {row.code for row in errors.ERROR_TABLE}
TERMINALS = ("generation_complete", "generation_error", "generation_cancelled")
MIN_MESSAGES = 1000


@dataclass(frozen=True)
class Expect:
    """What one line must produce: no reply, one reply with ``reply_id``, or one error with a
    null id and a code from ``null_codes``."""

    kind: str  # "none" | "reply" | "null"
    reply_id: Any = None
    codes: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Message:
    line: bytes
    expect: Expect


_ids = itertools.count(10**9)  # far from the ids RpcClient.call uses (1, 2, ...)


def fresh_id(style: int) -> Any:
    n = next(_ids)
    return [n, f"fz-{n}", f"ñ-{n}-\ud800", n + 0.5, -n - 1][style % 5]


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
wrapping = st.sampled_from([(b"", b""), (b"  ", b""), (b"", b"\r"), (b"\t", b"  \r")])


def encode(value: Any, wrap: tuple[bytes, bytes] = (b"", b"")) -> bytes:
    return wrap[0] + json.dumps(value).encode("utf-8") + wrap[1]


def _classify_bytes(data: bytes) -> Expect | None:
    """Independent oracle for arbitrary bytes (None: skip the rare valid object)."""
    if not data.strip():
        return Expect("none")
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_reject)
    except (ValueError, RecursionError):
        return Expect("null", codes=frozenset({errors.PARSE_ERROR}))
    if isinstance(value, dict):
        return None
    return Expect("null", codes=frozenset({errors.INVALID_REQUEST}))


def _reject(name: str) -> Any:
    raise ValueError(name)


@st.composite
def random_bytes(draw: st.DrawFn) -> Message:
    data = draw(st.binary(max_size=300)).replace(b"\n", b"")
    expect = _classify_bytes(data)
    if expect is None:
        data, expect = b"{", Expect("null", codes=frozenset({errors.PARSE_ERROR}))
    return Message(data, expect)


@st.composite
def invalid_utf8(draw: st.DrawFn) -> Message:
    bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf"]))
    request_id = fresh_id(draw(st.integers(0, 4)))
    head = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "ping", "params": {"x": "<>"}})
    line = head.encode().replace(b"<>", b"a" + bad + b"b")
    return Message(line, Expect("null", codes=frozenset({errors.PARSE_ERROR})))


@st.composite
def non_objects(draw: st.DrawFn) -> Message:
    value = draw(json_values.filter(lambda v: not isinstance(v, dict)))
    if draw(st.booleans()):  # a batch of well-formed requests
        value = [{"jsonrpc": "2.0", "id": fresh_id(0), "method": "ping"}] * draw(st.integers(0, 3))
    return Message(
        encode(value, draw(wrapping)), Expect("null", codes=frozenset({errors.INVALID_REQUEST}))
    )


def generate_params() -> st.SearchStrategy[Any]:
    field_values = st.dictionaries(
        st.sampled_from(GENERATE_FIELDS),
        json_values | st.sampled_from(["euler", "wav", "high"]),
        max_size=6,
    )
    valid = st.fixed_dictionaries(
        {
            "prompt": st.text(min_size=1, max_size=50).filter(str.strip),
            "duration_sec": st.floats(5, 240),
        },
        optional={"seed": st.integers(0, 2**32 - 1), "infer_steps": st.integers(1, 200)},
    )
    return field_values | valid


@st.composite
def requests(draw: st.DrawFn) -> Message:
    """Well-formed requests of known or unknown methods, with any params."""
    method = draw(
        st.sampled_from(KNOWN_METHODS) | st.text(max_size=20).filter(lambda m: m != "shutdown")
    )
    params = draw(
        st.one_of(
            st.just(None),
            generate_params(),
            st.fixed_dictionaries({"track_id": json_values | st.text(max_size=30)}),
            st.dictionaries(st.text(max_size=10), json_values, max_size=4),
            st.lists(json_values, max_size=3),
        )
    )
    request_id = fresh_id(draw(st.integers(0, 4)))
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return Message(encode(message, draw(wrapping)), Expect("reply", request_id))


@st.composite
def broken_requests(draw: st.DrawFn) -> Message:
    """Objects with an id whose other members are wrong."""
    request_id = fresh_id(draw(st.integers(0, 4)))
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": "ping"}
    flaw = draw(st.sampled_from(["jsonrpc", "no-jsonrpc", "method", "no-method", "params", "id"]))
    if flaw == "jsonrpc":
        message["jsonrpc"] = draw(json_values.filter(lambda v: v != "2.0"))
    elif flaw == "no-jsonrpc":
        del message["jsonrpc"]
    elif flaw == "method":
        message["method"] = draw(json_values.filter(lambda v: not isinstance(v, str)))
    elif flaw == "no-method":
        del message["method"]
    elif flaw == "params":
        message["params"] = draw(json_scalars.filter(lambda v: v is not None))
    else:
        message["id"] = draw(
            st.booleans()
            | st.lists(json_scalars, max_size=2)
            | st.dictionaries(st.text(max_size=3), json_scalars, max_size=2)
        )
        return Message(encode(message), Expect("null", codes=frozenset({errors.INVALID_REQUEST})))
    return Message(
        encode(message), Expect("reply", request_id, frozenset({errors.INVALID_REQUEST}))
    )


@st.composite
def notifications(draw: st.DrawFn) -> Message:
    method = draw(
        st.sampled_from(KNOWN_METHODS) | st.text(max_size=20).filter(lambda m: m != "shutdown")
    )
    message: dict[str, Any] = {"method": method}
    if draw(st.booleans()):
        message["jsonrpc"] = draw(st.just("2.0") | json_values)
    if draw(st.booleans()):
        message["params"] = draw(json_values | generate_params())
    return Message(encode(message, draw(wrapping)), Expect("none"))


@st.composite
def objects_without_id(draw: st.DrawFn) -> Message:
    value = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=4))
    value.pop("id", None)
    if isinstance(value.get("method"), str):
        value["method"] = draw(json_values.filter(lambda v: not isinstance(v, str)))
    return Message(encode(value), Expect("null", codes=frozenset({errors.INVALID_REQUEST})))


@st.composite
def big_requests(draw: st.DrawFn) -> Message:
    size = draw(st.integers(20_000, 200_000))
    request_id = fresh_id(draw(st.integers(0, 4)))
    method = draw(st.sampled_from(["generate", "ping", "cancel"]))
    key = {"generate": "prompt", "ping": "padding", "cancel": "track_id"}[method]
    message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {key: "é" * size}}
    return Message(encode(message), Expect("reply", request_id))


messages = st.one_of(
    random_bytes(),
    invalid_utf8(),
    non_objects(),
    requests(),
    requests(),
    broken_requests(),
    notifications(),
    objects_without_id(),
    big_requests(),
)


# -- the daemon and the checker --------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "no-models").mkdir()
    proc = DaemonProcess(
        [
            "--models",
            str(root / "no-models"),
            "--cache-dir",
            str(root / "cache"),
            "--log-file",
            str(root / "daemon.log"),
            "--log-level",
            "WARNING",
        ],
        stderr_path=root / "stderr.txt",
        # setup needs backend "ace-step", which the random params do not produce; should one
        # start anyway, no hub is reachable and nothing is installed without confirm.
        env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"},
    )
    yield proc
    proc.kill()


class Checker:
    def __init__(self, proc: DaemonProcess) -> None:
        self.proc = proc
        self.client = proc.client
        self.seen = len(self.client.messages)  # messages already checked
        self.sent = 0

    def run(self, batch: list[Message]) -> None:
        sync_id = f"sync-{next(_ids)}"
        payload = b"".join(m.line + b"\n" for m in batch)
        payload += json.dumps({"jsonrpc": "2.0", "id": sync_id, "method": "ping"}).encode() + b"\n"
        self.proc.proc.stdin.write(payload)  # type: ignore[union-attr]
        self.proc.proc.stdin.flush()  # type: ignore[union-attr]
        self.client.response(sync_id, timeout=60)
        replies = [m for m in self.client.messages[self.seen :] if "method" not in m]
        self.seen = len(self.client.messages)
        assert replies[-1]["id"] == sync_id and "result" in replies[-1]
        replies = replies[:-1]
        expected = [m.expect for m in batch if m.expect.kind != "none"]
        assert len(replies) == len(expected), (
            f"{len(replies)} replies for {len(expected)} expected:\n"
            + "\n".join(short(r) for r in replies)
            + "\n---\n"
            + "\n".join(short(m) for m in batch)
        )
        for reply, expect in zip(replies, expected, strict=True):
            check_shape(reply)
            context = f"{short(reply)} / {expect}"
            if expect.kind == "reply":
                assert reply["id"] == expect.reply_id, context
            else:
                assert reply["id"] is None and "error" in reply, context
            if expect.codes:
                assert reply["error"]["code"] in expect.codes, context
        assert self.client.bad_lines == []
        self.sent += len(batch)


def short(item: Any, limit: int = 300) -> str:
    text = repr(item)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def check_shape(reply: dict[str, Any]) -> None:
    assert reply["jsonrpc"] == "2.0"
    assert ("result" in reply) != ("error" in reply)
    if "error" in reply:
        error = reply["error"]
        assert error["code"] in KNOWN_CODES
        assert isinstance(error["message"], str) and error["message"]
        assert error["data"]["name"] == errors.error_info(error["code"]).name
        assert error["data"]["remedy"]


def test_fuzz_never_kills_the_daemon_and_answers_every_request(daemon: DaemonProcess) -> None:
    checker = Checker(daemon)

    @settings(
        max_examples=110,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(batch=st.lists(messages, min_size=10, max_size=14))
    def run(batch: list[Message]) -> None:
        checker.run(batch)

    run()
    assert checker.sent >= MIN_MESSAGES
    assert daemon.proc.poll() is None
    assert daemon.client.result("ping")["status"] == "ok"


def test_huge_lines(daemon: DaemonProcess) -> None:
    ten_mb = 10 * 1024 * 1024
    checker = Checker(daemon)
    batch = [
        Message(b"x" * ten_mb, Expect("null", codes=frozenset({errors.PARSE_ERROR}))),
        Message(b"\xff" * ten_mb, Expect("null", codes=frozenset({errors.PARSE_ERROR}))),
        Message(b"[" * ten_mb, Expect("null", codes=frozenset({errors.PARSE_ERROR}))),
        Message(
            encode(
                {
                    "jsonrpc": "2.0",
                    "id": "big-ping",
                    "method": "ping",
                    "params": {"padding": "p" * ten_mb},
                }
            ),
            Expect("reply", "big-ping", frozenset({errors.INVALID_PARAMS})),
        ),
        Message(
            encode(
                {
                    "jsonrpc": "2.0",
                    "id": "big-prompt",
                    "method": "generate",
                    "params": {"prompt": "lofi " * (ten_mb // 5), "duration_sec": 30},
                }
            ),
            Expect("reply", "big-prompt", frozenset({errors.INVALID_PROMPT})),
        ),
        Message(
            encode([{"jsonrpc": "2.0", "id": n, "method": "ping"} for n in range(200_000)]),
            Expect("null", codes=frozenset({errors.INVALID_REQUEST})),
        ),
        Message(
            encode({"jsonrpc": "2.0", "method": "ping", "params": {"padding": "n" * ten_mb}}),
            Expect("none"),
        ),
    ]
    checker.run(batch)
    assert daemon.proc.poll() is None


def test_the_daemon_still_shuts_down_cleanly(daemon: DaemonProcess) -> None:
    reply = daemon.client.call("generate", {"prompt": "after the storm", "duration_sec": 30})
    assert reply["error"]["code"] == errors.MODEL_NOT_FOUND
    assert daemon.client.result("shutdown") == {"status": "shutting_down"}
    assert daemon.wait(30) == 0
    assert daemon.client.bad_lines == []


# -- hostile cache directories (issue 10, items 15, 16, 20, 21) -------------------------------


@dataclass(frozen=True)
class CachePlan:
    """A cache folder to start a daemon over: real tracks, hostile entries and foreign files."""

    good: tuple[int, ...]  # seeds of real tracks
    hostile: tuple[tuple[int, str], ...]  # (seed, kind from HOSTILE_KINDS)
    foreign: tuple[int, ...]  # seeds whose track id names the foreign files
    old: bool  # everything older than the startup sweep's grace period
    requested: tuple[int, ...]  # seeds generated once the daemon is up


@st.composite
def cache_plans(draw: st.DrawFn) -> CachePlan:
    seeds = draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=7, unique=True))
    cut = draw(st.integers(0, len(seeds)))
    kinds = st.sampled_from(HOSTILE_KINDS)
    return CachePlan(
        good=tuple(seeds[:cut]),
        hostile=tuple((seed, draw(kinds)) for seed in seeds[cut:]),
        foreign=tuple(draw(st.lists(st.sampled_from(seeds), max_size=2, unique=True))),
        old=draw(st.booleans()),
        requested=tuple(draw(st.lists(st.sampled_from(seeds), max_size=3, unique=True))),
    )


def plant_cache(plan: CachePlan, root: Path, outside: Path) -> tuple[dict[Path, bytes], set[Path]]:
    """Build the folder; returns the foreign files (with their bytes) and the planted hostile
    paths that a daemon must not remove unless it regenerates their track."""
    cache = TrackCache(root / "cache")
    for seed in plan.good:
        add_track(cache, seed)
    planted: set[Path] = set()
    for seed, kind in plan.hostile:
        planted.update(plant_hostile(cache, seed, kind, outside))
    foreign: dict[Path, bytes] = {}
    for seed in plan.foreign:
        for name in foreign_names(id_for(seed)):
            path = cache.root / name
            path.write_bytes(name.encode())
            foreign[path] = name.encode()
    if plan.old:
        for path in [*cache.root.iterdir(), *outside.iterdir()]:
            age(path)
    return foreign, planted


def check_hostile_cache(plan: CachePlan, root: Path) -> None:
    outside = root / "outside"
    outside.mkdir()
    foreign, planted = plant_cache(plan, root, outside)
    outside_bytes = {p: p.read_bytes() for p in outside.iterdir()}
    models = write_fake_models(root / "models")
    args = ["--models", str(models), "--cache-dir", str(root / "cache")]
    daemon = DaemonProcess(
        [*args, "--log-level", "WARNING", "--log-file", str(root / "daemon.log")],
        stderr_path=root / "stderr.txt",
        fake_engine=True,
    )
    try:
        client = daemon.client
        assert client.result("ping", timeout=60)["status"] == "ok", daemon.stderr()
        check_listing(client, root, {id_for(s) for s in plan.good})
        for seed in plan.requested:
            check_generate(client, seed, cached=seed in plan.good)
        done = {id_for(s) for s in plan.requested}
        check_listing(client, root, {id_for(s) for s in plan.good} | _completed(client, done))
        assert client.result("shutdown") == {"status": "shutting_down"}
        assert daemon.wait(30) == 0
        assert client.bad_lines == []
    finally:
        daemon.kill()
    regenerated = {id_for(s) for s in plan.requested}
    for path in planted:
        if not any(path.name.startswith(track_id) for track_id in regenerated):
            assert os.path.lexists(path), f"{path.name} was removed"
    for path, data in foreign.items():
        assert path.read_bytes() == data, f"{path.name} changed"
    for path, data in outside_bytes.items():
        assert path.read_bytes() == data, f"{path.name} (outside the cache) changed"


def check_listing(client: RpcClient, root: Path, expected: set[str]) -> None:
    listed = client.result("tracks.list")
    json.dumps(listed, allow_nan=False)
    assert {t["track_id"] for t in listed["tracks"]} == expected
    real_root = (root / "cache").resolve()
    for track in listed["tracks"]:
        path = Path(track["path"])
        assert path.parent == real_root and path.is_file() and not path.is_symlink()
        assert isinstance(track["duration_sec"], (int, float))


def check_generate(client: RpcClient, seed: int, *, cached: bool) -> None:
    reply = client.call("generate", {**GENERATE, "seed": seed})
    check_shape(reply)
    track_id = id_for(seed)
    assert reply["result"]["track_id"] == track_id
    assert reply["result"]["status"] == ("cached" if cached else "queued")
    end = client.terminal(track_id, timeout=60)
    client.result("ping")  # every notification sent so far is in
    ends = [m for m in client.events(track_id) if m["method"] in TERMINALS]
    assert ends == [end], ends
    if end["method"] == "generation_error":
        assert end["params"]["code"] in KNOWN_CODES
    else:
        assert end["method"] == "generation_complete" and end["params"]["cached"] is cached


def _completed(client: RpcClient, track_ids: set[str]) -> set[str]:
    return {
        m["params"]["track_id"]
        for m in client.messages
        if m.get("method") == "generation_complete" and m["params"]["track_id"] in track_ids
    }


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="symlinks and FIFOs")
def test_fuzz_hostile_cache_directories() -> None:
    """A real daemon (fake engine) started over random hostile cache folders: it stays up,
    lists only the real tracks (never a path outside the cache), answers generate with exactly
    one terminal notification per request, and removes nothing that is not its own."""

    @settings(max_examples=15, deadline=None, database=None)
    @given(plan=cache_plans())
    def run(plan: CachePlan) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            check_hostile_cache(plan, Path(tmp))

    run()
