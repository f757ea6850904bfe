"""The project's modules import one another without cycles, and packages only downward:
a3cs_common <- hw_sim <- accelerator_model <- nas / distill <- a3cs (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("a3cs_common", "hw_sim", "accelerator_model", "nas", "distill", "a3cs")
#: What each package may import (besides itself).
ALLOWED = {"a3cs_common": set(), "hw_sim": {"a3cs_common"},
           "accelerator_model": {"a3cs_common", "hw_sim"},
           "nas": {"a3cs_common", "hw_sim", "accelerator_model"},
           "distill": {"a3cs_common", "hw_sim"},
           "a3cs": {"a3cs_common", "hw_sim", "accelerator_model", "nas", "distill"}}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules ``path`` imports, anywhere in the file (function-level included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def test_no_import_cycles_and_packages_import_downward() -> None:
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    for name, targets in graph.items():
        package = name.split(".")[0]
        for target in targets:
            other = target.split(".")[0]
            assert other == package or other in ALLOWED[package], f"{name} imports {target}"
    # A package's __init__ importing its own modules is not a cycle of theirs.
    edges = {name: {t for t in targets if not (name.startswith(f"{t}.") and
                                               modules[t].name == "__init__.py")}
             for name, targets in graph.items()}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in edges[node]:
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*stack, node, nxt])
            if nxt not in state:
                visit(nxt, [*stack, node])
        state[node] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name, [])
