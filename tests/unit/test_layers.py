"""The import graph: each layer imports only the layers below it, and no module imports itself in a circle.

Layers, bottom first: backends (models and runtimes, no Ray) -> graph (config, auto, the orchestrator;
no Ray) -> deployments (Ray Serve, HTTP) -> benchmarks -> serve (CLI and the import path users name).
Every import counts, also the ones inside functions: a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["backends", "graph", "deployments", "benchmarks", "serve"]


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every project module ``path`` imports (``from a import b`` counts as a.b when a.b is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & _MODULES
            out.update(subs)
            if len(subs) < len(node.names):  # some names are the module's own (a class, a function)
                out.add(node.module)
    return out & _MODULES


_FILES = [p for layer in LAYERS for p in sorted((ROOT / layer).rglob("*.py"))]
_MODULES = {_module(p) for p in _FILES}


def _graph() -> dict[str, set[str]]:
    return {_module(p): _imports(p) - {_module(p)} for p in _FILES}


def test_no_layer_imports_one_above_it() -> None:
    upward = [
        f"{mod} imports {dep}"
        for mod, deps in _graph().items()
        for dep in deps
        if LAYERS.index(dep.split(".")[0]) > LAYERS.index(mod.split(".")[0])
    ]
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize("layer", ["backends", "graph"])
def test_the_plain_python_layers_never_import_ray(layer: str) -> None:
    ray = [
        str(p.relative_to(ROOT))
        for p in (ROOT / layer).rglob("*.py")
        if any(
            (isinstance(n, ast.Import) and any(a.name.split(".")[0] == "ray" for a in n.names))
            or (isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "ray")
            for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        )
    ]
    assert not ray, ray


def test_no_import_circle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return [*path[path.index(d) :], d]
            if d not in state and (cycle := visit(d)):
                return cycle
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            pytest.fail("import circle: " + " -> ".join(cycle))
