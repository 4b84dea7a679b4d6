"""What the README and .gitignore say about the command line (issue 10, item 27)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
RANDOM_WEIGHTS = (
    "lofi-export tiny ck && lofi-daemon setup ace-step --checkpoint ck --models models && "
    'lofi-daemon generate "lofi" --models models -o track.wav'
)


def _fenced_blocks(text: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def test_the_random_weight_command_is_a_fenced_block_to_copy() -> None:
    assert any(RANDOM_WEIGHTS in block.splitlines() for block in _fenced_blocks(README))


def test_no_inline_command_is_split_over_two_lines() -> None:
    prose = re.sub(r"^```.*?^```$", "", README, flags=re.MULTILINE | re.DOTALL)
    for paragraph in prose.split("\n\n"):
        for line in paragraph.splitlines():
            # an odd number of backticks on a line opens a span that the next line closes
            assert line.count("`") % 2 == 0, line


def test_the_readme_says_where_generate_writes() -> None:
    text = " ".join(README.split())
    assert "else to `lofi-SEED.wav`" in text and "`OUT.json`" in text
    assert "not a lofi sidecar" in text


def test_gitignore_covers_the_walk_through_and_help_tags() -> None:
    for path in ("ck/x.safetensors", "models/manifest.json", "doc/tags"):
        result = subprocess.run(
            ["git", "check-ignore", "-q", path], cwd=ROOT, check=False, capture_output=True
        )
        assert result.returncode == 0, f"{path} is not ignored"
    # Not the sources that merely look alike.
    for path in ("lofi_daemon/model/manifest.py", "doc/lofi.txt", "tests/model/test_schema.py"):
        result = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False)
        assert result.returncode == 1, f"{path} is ignored"
