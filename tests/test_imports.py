"""The package's layers: what each may import, counting imports made inside functions too, and no circle.

    acx.names, acx.errors       the names the schema allows and the builders map, and the errors: below all
    acx.config                  the schema, its messages and checks
    acx.algo                    the maths: imports nothing from the run, the envs, the sweeps or the analysis
    acx.envs                    env factories and joining: no torch, nothing from the run
    acx.analysis                runs read back and acx report: no torch, nothing from the run
    acx.run                     the loop and its records, built on algo and envs
    acx.sweep                   grouping, refill and tuning, on top of the run
    acx.cli                     the command, on top of everything
    acx.api                     the Python API, over the command's code path
Any module may import the package itself (``acx.__version__``, the config resolvers). The package's
``__getattr__`` (PEP 562) imports ``acx.api`` on the first ``acx.train``, after the package is loaded:
an import made when an attribute is read, not while a module is imported, so it is no edge here.
"""

from __future__ import annotations

import ast
from pathlib import Path

ACX = Path(__file__).resolve().parent.parent / "acx"

# layer -> the layers it may import from (besides itself)
MAY_IMPORT = {
    "names": set(),
    "errors": set(),
    "config": {"errors", "names"},
    "algo": {"errors", "names"},
    "envs": {"errors", "config", "names"},
    "analysis": {"errors", "config", "names"},
    "run": {"errors", "config", "algo", "envs", "analysis", "names"},
    "sweep": {"errors", "config", "algo", "envs", "analysis", "run", "names"},
    "cli": {"errors", "config", "algo", "envs", "analysis", "run", "sweep", "names"},
    "api": {"errors", "config", "algo", "envs", "analysis", "run", "sweep", "cli", "names"},
    "acx": {"envs"},  # acx/__init__.py: the config resolvers (ale_id imports acx.envs.atari when resolved)
}
NO_TORCH = ("envs", "analysis")


def module_name(path: Path) -> str:
    parts = path.relative_to(ACX.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "acx"


def imports_of(path: Path) -> set[str]:
    """Every module a file imports anywhere in it: import statements at any depth, and
    ``importlib.import_module("...")`` calls (``from a import b`` counts as a and a.b)."""
    found = set()
    tree = ast.parse(path.read_text())
    if path.name == "__init__.py":  # a package's lazy attributes (PEP 562) import when read, not at import
        tree.body = [n for n in tree.body if not (isinstance(n, ast.FunctionDef) and n.name == "__getattr__")]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" and node.args:
            if isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in ACX.rglob("*.py")}
    return {name: (imports_of(path) & set(files)) - {name} for name, path in files.items()}


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
    assert edges["acx.run.replay"] >= {"acx.run.build", "acx.run.checkpoint"}
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges))


def test_each_layer_imports_only_the_layers_below_it():
    edges = graph()
    assert set(map(layer, edges)) == set(MAY_IMPORT), "a module outside the known layers"
    wrong = sorted(
        f"{module} -> {imported}"
        for module, imported_all in edges.items()
        for imported in imported_all
        if layer(imported) not in {layer(module), "acx", *MAY_IMPORT[layer(module)]}  # acx: __version__
    )
    assert not wrong, wrong


def test_envs_and_analysis_import_no_torch():
    for path in ACX.rglob("*.py"):
        if layer(module_name(path)) in NO_TORCH:
            assert not {m for m in imports_of(path) if m == "torch" or m.startswith("torch.")}, path


def test_a_wrong_import_is_caught():
    edges = {"acx.algo.update": {"acx.run.rollout"}, "acx.run.rollout": set()}
    wrong = [m for m, i in edges.items() for x in i if layer(x) != layer(m) and layer(x) not in MAY_IMPORT[layer(m)]]
    assert wrong == ["acx.algo.update"]
