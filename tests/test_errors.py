"""``lua/lofi/errors.lua`` mirrors the daemon's error table, and its own codes never collide."""

from __future__ import annotations

import re
from pathlib import Path

from lofi_daemon.errors import ERROR_TABLE

ERRORS_LUA = Path(__file__).resolve().parents[1] / "lua" / "lofi" / "errors.lua"
ENTRY = re.compile(r"^\s*([A-Z][A-Z0-9_]*)\s*=\s*(-?\d+),\s*$")


def lua_table(name: str) -> dict[str, int]:
    """The ``NAME = code,`` entries of ``M.<name> = { ... }`` in errors.lua."""
    lines = ERRORS_LUA.read_text(encoding="utf-8").splitlines()
    start = lines.index(f"M.{name} = {{")
    entries: dict[str, int] = {}
    for line in lines[start + 1 :]:
        if line.strip() == "}":
            return entries
        match = ENTRY.match(line)
        assert match, f"unexpected line in M.{name}: {line!r}"
        assert match.group(1) not in entries, f"duplicate {match.group(1)}"
        entries[match.group(1)] = int(match.group(2))
    raise AssertionError(f"M.{name} is not closed")


def test_daemon_codes_match_error_table() -> None:
    assert lua_table("daemon") == {row.name: row.code for row in ERROR_TABLE}


def test_client_codes_have_their_own_range() -> None:
    client = lua_table("client")
    daemon_codes = {row.code for row in ERROR_TABLE}
    assert client, "no client codes"
    assert len(set(client.values())) == len(client), "two client names share a code"
    for name, code in client.items():
        assert -32199 <= code <= -32100, f"{name} = {code} is outside -32199..-32100"
        assert code not in daemon_codes, f"{name} = {code} collides with a daemon code"
    assert not set(client) & {row.name for row in ERROR_TABLE}


def test_first_line_of_an_exception() -> None:
    from lofi_daemon.errors import first_line

    assert first_line(RuntimeError("boom\nsecond line"), 3) == "boo"
    assert first_line(MemoryError(), 100) == "MemoryError"
    assert first_line(OSError("  \n"), 100) == "OSError"
