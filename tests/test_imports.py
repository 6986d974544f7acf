"""The package's import graph has no circle, counting imports made inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

ACX = Path(__file__).resolve().parent.parent / "acx"


def module_name(path: Path) -> str:
    return "acx" if path.name == "__init__.py" else f"acx.{path.stem}"


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The acx modules a file imports anywhere in it: import statements at any depth, and
    ``importlib.import_module("acx....")`` calls."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # from acx import x: maybe a module
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" and node.args:
            if isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return {name for name in found if name in modules} - {module_name(path)}


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in ACX.glob("*.py")}
    return {name: imports_of(path, set(files)) for name, path in files.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A circle of imports as a list of modules (first = last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_circle_in_acx():
    edges = graph()
    assert edges["acx.replay"] >= {"acx.build", "acx.checkpoint"} and "acx.train" not in edges["acx.replay"]
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges))


def test_builders_sit_below_training_and_evaluation():
    edges = graph()
    for low in ("acx.build", "acx.networks", "acx.envs", "acx.checkpoint", "acx.evaluate"):
        assert not edges[low] & {"acx.train", "acx.replay", "acx.cli"}, low
