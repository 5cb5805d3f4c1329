"""The package's import graph, read from the source with `ast`: no cycles, no reaching into private modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "transferkit"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _imports(path: Path, module: str) -> set[str]:
    """Every transferkit module `module` imports, at any depth (lazy imports count), except TYPE_CHECKING ones."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if _type_checking_block(node):
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from pkg import module`
        stack.extend(ast.iter_child_nodes(node))
    return {name for name in found if name.split(".")[0] == "transferkit"}


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph = {}
    for module, path in files.items():
        # `from transferkit.x import name` names a module only when x.name is one; otherwise it is x itself.
        graph[module] = {name for name in _imports(path, module) if name in files and name != module}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, or None. A package's __init__ importing its own modules is not a cycle by itself."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if nxt.startswith(node + "."):  # a package importing its own submodule
                continue
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _edges_through_packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Importing a package runs its __init__: an edge to a module is also an edge to every package above it."""
    out = {}
    for module, targets in graph.items():
        expanded = set()
        for target in targets:
            parts = target.split(".")
            expanded |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)}
        out[module] = {t for t in expanded if t in graph and t != module and not module.startswith(t + ".")}
    return out


def test_the_source_has_modules_to_check():
    graph = import_graph()
    assert "transferkit.train.runner" in graph and "transferkit.config" in graph
    assert "transferkit.config" in graph["transferkit.train.runner"]


def test_no_import_cycle():
    cycle = _cycle(_edges_through_packages(import_graph()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_imports_another_packages_private_module():
    bad = []
    for module, targets in import_graph().items():
        package = (
            module.rpartition(".")[0]
            if not (SRC / "/".join(module.split(".")[1:]) / "__init__.py").exists()
            else module
        )
        for target in targets:
            owner, _, leaf = target.rpartition(".")
            if leaf.startswith("_") and not leaf.startswith("__") and owner != package and owner != "transferkit":
                bad.append(f"{module} imports {target}")
    assert not bad, "\n".join(bad)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("strategy_name", ["linear-probe", "lp-ft", "full", "partial", "scratch"])
def test_strategy_names_live_only_in_the_strategy_modules(strategy_name):
    """Code outside `transferkit.strategies` asks the registry; names in docstrings (docs) are fine."""
    outside = []
    for path in SRC.rglob("*.py"):
        if "strategies" in path.relative_to(SRC).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value == strategy_name:
                outside.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not outside, f"{strategy_name} is spelled out in {outside}"
