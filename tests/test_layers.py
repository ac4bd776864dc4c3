"""The README's promise about the package's shape. The library (`prefixrl`) is layered, bottom up:
io/ (files), rollout/ (the policy as compute), data/ (problems, traces, prefixes), rl/ (the algorithm),
embedded/ (the built-in base model), then integrations/ and cli/ on top. The lab (`prefixrl_lab`) sits
above the whole library and the library never imports it.

A dependency is an import anywhere in a module's text (function-level imports included) or a callback:
a function of module A handed as an argument to a function of module B makes B call A, so it counts as
B → A unless A is on a higher layer than B (handing a function *down* is what layering allows). No edge
may point to a higher layer, and the graph has no circle."""

import ast
from pathlib import Path

import prefixrl
import prefixrl_lab

ROOT = Path(next(iter(prefixrl.__path__)))  # a namespace package: no __init__.py
LAB = Path(next(iter(prefixrl_lab.__path__)))
LAYERS = {"io": 0, "rollout": 1, "data": 2, "rl": 3, "embedded": 4, "integrations": 5, "cli": 5}
TOP = 6  # prefixrl_lab


def modules() -> dict[str, Path]:
    out = {}
    for package, root in (("prefixrl", ROOT), ("prefixrl_lab", LAB)):
        for f in root.rglob("*.py"):
            parts = (package,) + f.relative_to(root).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _project(name: str) -> bool:
    return name.split(".")[0] in ("prefixrl", "prefixrl_lab")


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its text (a name imported from a package
    counts as the submodule when it is one)."""
    edges = {m: set() for m in mods}
    for m, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and _project(node.module):
                subs = {f"{node.module}.{a.name}" for a in node.names} & mods.keys()
                edges[m] |= subs or {node.module}
            elif isinstance(node, ast.Import):
                edges[m] |= {a.name for a in node.names if _project(a.name)}
        edges[m] -= {m}
    return edges


def _bindings(tree: ast.Module, mods: dict[str, Path]) -> dict[str, str]:
    """Local name -> the project module a call through it lands in (`from M import f`: f -> M, or the
    submodule M.f; `import M as x` / `from P import M`: x -> M)."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and _project(node.module):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out[a.asname or a.name] = sub if sub in mods else node.module
        elif isinstance(node, ast.Import):
            for a in node.names:
                if _project(a.name):
                    out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
    return out


def callbacks(mods: dict[str, Path]) -> set[tuple[str, str]]:
    """(B, A): a function defined in A is handed as an argument to a call of a function from B."""
    found = set()
    for a, f in mods.items():
        tree = ast.parse(f.read_text())
        own = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        bound = _bindings(tree, mods)
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            root = call.func
            while isinstance(root, ast.Attribute):
                root = root.value
            if not isinstance(root, ast.Name) or root.id not in bound:
                continue
            b = bound[root.id]
            args = list(call.args) + [k.value for k in call.keywords]
            if b != a and any(isinstance(x, ast.Name) and x.id in own for x in args):
                found.add((b, a))
    return found


def layer(module: str) -> int:
    parts = module.split(".")
    if parts[0] == "prefixrl_lab":
        return TOP
    return 5 if len(parts) == 1 else LAYERS.get(parts[1], 5)


def dependencies() -> dict[str, set[str]]:
    mods = modules()
    edges = imports(mods)
    for b, a in callbacks(mods):
        if layer(a) <= layer(b):  # a callback up, or between peers: B depends on A
            edges.setdefault(b, set()).add(a)
    return edges


def test_no_module_depends_on_a_layer_above_it():
    up = [(m, t) for m, ts in dependencies().items() for t in ts if layer(t) > layer(m)]
    assert up == []


def test_the_library_never_imports_the_lab():
    edges = imports(modules())
    assert [(m, t) for m, ts in edges.items() if m.startswith("prefixrl.") for t in ts
            if t.startswith("prefixrl_lab")] == []


def test_the_dependency_graph_has_no_circle():
    edges, state, circles = dependencies(), {}, []

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
    assert len(edges) > 50 and edges["prefixrl.rl.train"] >= {"prefixrl.rl.pool", "prefixrl.rl.settings"}


def test_a_callback_between_peers_is_seen(tmp_path):
    """The checker itself: the pattern it exists to catch (a module that imports a peer inside a function
    and hands it one of its own functions) is reported as a circle."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("def run_paper(cfg):\n    pass\n\ndef bench(cfg):\n    from prefixrl_lab.b import run_map\n"
                 "    return run_map(cfg, run_paper)\n")
    b.write_text("def run_map(cfg, run):\n    return run(cfg)\n")
    mods = {"prefixrl_lab.a": a, "prefixrl_lab.b": b}
    assert imports(mods)["prefixrl_lab.a"] == {"prefixrl_lab.b"}
    assert callbacks(mods) == {("prefixrl_lab.b", "prefixrl_lab.a")}
