"""The README's promise about the package's shape: infrastructure in io/, the algorithm at the root,
experiments above it, entry points in cli/ on top; no module imports one from a layer above it, and the
import graph (function-level imports included) has no circle."""

import ast
from pathlib import Path

import prefixrl

ROOT = Path(next(iter(prefixrl.__path__)))  # a namespace package: no __init__.py
LAYERS = {"io": 0, "experiments": 2, "cli": 3}  # every other module: 1, the algorithm


def modules() -> dict[str, Path]:
    out = {}
    for f in ROOT.rglob("*.py"):
        parts = ("prefixrl",) + f.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the prefixrl modules it imports anywhere in its text (a name imported from a package
    counts as the submodule when it is one)."""
    edges = {m: set() for m in mods}
    for m, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "prefixrl":
                subs = {f"{node.module}.{a.name}" for a in node.names} & mods.keys()
                edges[m] |= subs or {node.module}
            elif isinstance(node, ast.Import):
                edges[m] |= {a.name for a in node.names if a.name.split(".")[0] == "prefixrl"}
        edges[m] -= {m}
    return edges


def layer(module: str) -> int:
    parts = module.split(".")
    return 3 if len(parts) == 1 else LAYERS.get(parts[1], 1)


def test_no_module_imports_from_a_layer_above_it():
    edges = imports(modules())
    up = [(m, t) for m, ts in edges.items() for t in ts if layer(t) > layer(m)]
    assert up == []


def test_the_import_graph_has_no_circle():
    edges, state, circles = imports(modules()), {}, []

    def visit(m, path):
        state[m] = "open"
        for t in sorted(edges.get(m, ())):
            if state.get(t) == "open":
                circles.append(path[path.index(t):] + [t])
            elif t not in state:
                visit(t, path + [t])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert circles == []
    assert len(edges) > 40 and edges["prefixrl.train"] >= {"prefixrl.pool", "prefixrl.settings"}  # the walk sees imports
