"""The import graph of ``lofi_daemon`` and ``lofi_export`` (the ``export/`` folder), read with ``ast``.

Every ``import`` statement counts, wherever it stands: at module level, inside a function, or under
``if TYPE_CHECKING:`` (a circle through type-only imports is still a circle a reader has to untangle).

The rules:

* **No import circles** anywhere in either package.
* **The runtime never imports the exporter or its heavy dependencies**: no module of
  ``lofi_daemon`` imports ``lofi_export``, torch, onnx, onnxscript, transformers, diffusers or
  safetensors, not even inside a function. It runs ``python -m lofi_export`` as a child process and
  probes for the extra with ``importlib.util.find_spec``. ``huggingface_hub`` may only be imported
  inside the functions of a child-process entry point (a module with an
  ``if __name__ == "__main__":`` block other than ``lofi_daemon.__main__``), so the daemon process
  itself never loads it.
* **The exporter imports only the runtime's model contract** and what it shares by design:

  - ``lofi_daemon.model`` (checkpoint layout and pipeline constants, the manifest and its
    ``sha256_file``, the typed constants): the contract the exporter writes and the runtime reads;
  - ``lofi_daemon.fsutil``: the one atomic-write module (staging and replacing the model folder);
  - ``lofi_daemon.pipeline.params``: the generation defaults the manifest records;
  - ``lofi_daemon.pipeline.providers``: ``bench-torch`` creates ONNX Runtime sessions exactly as
    the runtime does;
  - ``lofi_daemon.errors``: ``bench-torch`` reports the runtime's error when a model directory does
    not load.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"lofi_daemon": ROOT / "lofi_daemon", "lofi_export": ROOT / "export"}

RUNTIME_FORBIDDEN = (
    "lofi_export",
    "torch",
    "onnx",
    "onnxscript",
    "transformers",
    "diffusers",
    "safetensors",
)
HUB = "huggingface_hub"
EXPORTER_MAY_IMPORT = (
    "lofi_daemon.model",
    "lofi_daemon.fsutil",
    "lofi_daemon.pipeline.params",
    "lofi_daemon.pipeline.providers",
    "lofi_daemon.errors",
)


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # a module of ours, or the dotted name of an external one
    line: int
    in_function: bool


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool
    tree: ast.Module

    @property
    def is_child_entry(self) -> bool:
        """Run as ``python -m`` (has a ``__main__`` block), other than the daemon's own CLI."""
        return self.name != "lofi_daemon.__main__" and any(
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name)
            and node.test.left.id == "__name__"
            for node in self.tree.body
        )


@functools.cache
def modules() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            name = ".".join([package, *parts])
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            found[name] = Module(name, path, is_package, tree)
    return found


def _walk(node: ast.AST, in_function: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    for child in ast.iter_child_nodes(node):
        yield child, in_function
        nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
        yield from _walk(child, nested)


def _resolve(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(module: Module) -> list[Import]:
    known = modules()
    found: list[Import] = []
    for node, in_function in _walk(module.tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            # ``from pkg import mod`` imports the submodule when there is one.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        found += [Import(module.name, t, node.lineno, in_function) for t in dict.fromkeys(targets)]
    return found


@functools.cache
def all_imports() -> tuple[Import, ...]:
    return tuple(i for module in modules().values() for i in imports_of(module))


def _is_under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def internal_graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for imp in all_imports():
        if imp.target in known and imp.target != imp.source:
            graph[imp.source].add(imp.target)
    return graph


def _where(imp: Import) -> str:
    path = modules()[imp.source].path.relative_to(ROOT)
    return f"{path}:{imp.line} imports {imp.target}"


# --------------------------------------------------------------------------------------------


def test_the_graph_is_read() -> None:
    """Guards the rules below against passing on an empty or misread graph."""
    graph = internal_graph()
    assert "lofi_export.opened_checkpoint" in graph["lofi_export.export_models"]
    assert "lofi_daemon.fsutil" in graph["lofi_export.export_models"]
    assert "lofi_daemon.model.manifest" in graph["lofi_export.manifest_writer"]
    assert "lofi_export.errors" in graph["lofi_export.__main__"]  # inside a function
    assert any(_is_under(i.target, "torch") for i in all_imports())


def test_cycle_finder() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"a"}}) == [["a"]]


def test_no_import_cycles() -> None:
    assert find_cycles(internal_graph()) == []


def test_runtime_never_imports_the_exporter_or_torch() -> None:
    bad = [
        _where(i)
        for i in all_imports()
        if _is_under(i.source, "lofi_daemon")
        and any(_is_under(i.target, name) for name in RUNTIME_FORBIDDEN)
    ]
    assert bad == []


def test_runtime_imports_the_hub_only_in_child_processes() -> None:
    known = modules()
    bad = [
        _where(i)
        for i in all_imports()
        if _is_under(i.source, "lofi_daemon")
        and _is_under(i.target, HUB)
        and not (i.in_function and known[i.source].is_child_entry)
    ]
    assert bad == []


def test_exporter_imports_only_the_runtime_model_contract() -> None:
    bad = [
        _where(i)
        for i in all_imports()
        if _is_under(i.source, "lofi_export")
        and _is_under(i.target, "lofi_daemon")
        and not any(_is_under(i.target, allowed) for allowed in EXPORTER_MAY_IMPORT)
    ]
    assert bad == []
