"""The install instructions agree wherever they are written, and name only real packages.

The lazy.nvim spec appears in the README and in ``:help lofi-install``; its ``build`` step is also
the advice of ``:checkhealth lofi`` (``lua/lofi/health.lua``). lofi.nvim is not on PyPI, so no
text may tell anyone to ``pip install lofi-nvim``.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from lofi_daemon.install.extra import INSTALL_HINT

ROOT = Path(__file__).resolve().parents[1]
# What users read: the docs, and every message the code can print.
SCANNED = ("README.md", "CONTRIBUTING.md", "doc", "docs", "lua", "plugin", "lofi_daemon", "export")
NONEXISTENT_PACKAGE = re.compile(r"""pip3?\s+install\s+(-U\s+)?["']?lofi[-_]nvim""")


def readme_spec() -> str:
    """The fenced ``lua`` block of the README that holds ``build =``."""
    blocks = re.findall(
        r"^```lua\n(.*?)^```", (ROOT / "README.md").read_text(), re.DOTALL | re.MULTILINE
    )
    [spec] = [block for block in blocks if "build =" in block]
    return textwrap.dedent(spec).strip()


def help_spec() -> str:
    """The ``>lua`` ... ``<`` block of doc/lofi.txt that holds ``build =``."""
    text = (ROOT / "doc" / "lofi.txt").read_text()
    blocks = re.findall(r">lua\n(.*?)^<", text, re.DOTALL | re.MULTILINE)
    [spec] = [block for block in blocks if "build =" in block]
    return textwrap.dedent(spec).strip()


def build_step(spec: str) -> str:
    [build] = re.findall(r'^\s*build = "(.*)",$', spec, re.MULTILINE)
    return build


def health_build() -> str:
    """``M.BUILD`` of lua/lofi/health.lua: its string literals joined."""
    source = (ROOT / "lua" / "lofi" / "health.lua").read_text()
    match = re.search(r"^M\.BUILD = (.*?)\n\n", source, re.DOTALL | re.MULTILINE)
    assert match, "lua/lofi/health.lua defines M.BUILD"
    return "".join(re.findall(r'"([^"]*)"', match.group(1)))


def export_torch_pin() -> str:
    """The torch requirement of the ``export`` extra in pyproject.toml (``torch==X``)."""
    text = (ROOT / "pyproject.toml").read_text()
    extra = re.search(r"^export = \[(.*?)\]", text, re.DOTALL | re.MULTILINE)
    assert extra, "pyproject.toml has an export extra"
    [pin] = re.findall(r'"(torch==[^"]+)"', extra.group(1))
    return pin


def test_readme_and_help_give_the_same_lazy_spec() -> None:
    assert help_spec() == readme_spec()


def test_the_build_step_pins_torch_and_installs_the_export_extra() -> None:
    build = build_step(readme_spec())
    assert f"pip install {export_torch_pin()} " in build
    assert "pip install -e '.[export]'" in build
    assert build.startswith("python3 -m venv .venv && ")


def test_checkhealth_advises_the_same_build_step() -> None:
    assert health_build() == build_step(readme_spec())


def test_the_export_install_hint_is_a_real_command() -> None:
    assert f"pip install {export_torch_pin()} " in INSTALL_HINT
    assert 'pip install -e ".[export]"' in INSTALL_HINT


def scanned_files() -> list[Path]:
    files: list[Path] = []
    for name in SCANNED:
        path = ROOT / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += [
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix in {".py", ".lua", ".md", ".txt", ".json"}
            ]
    return sorted(files)


def test_no_text_suggests_a_package_that_does_not_exist() -> None:
    assert len(scanned_files()) > 20
    offenders = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in scanned_files()
        for match in NONEXISTENT_PACKAGE.finditer(path.read_text(errors="replace"))
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "text",
    ['pip install "lofi-nvim[export]"', "pip install lofi-nvim", "pip3 install 'lofi_nvim'"],
)
def test_the_package_check_catches_the_wrong_command(text: str) -> None:
    assert NONEXISTENT_PACKAGE.search(text)
