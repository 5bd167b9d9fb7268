"""The architecture contract: layers point down, no import cycles, small functions, honest types.

The layer order lives in ``pyproject.toml`` (``[tool.importlinter]``) and is drawn in the README;
import-linter checks every import, including those inside functions and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "defectlens"
MAX_FUNCTION_LINES = 80


def test_layers_point_down():
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "layers point down KEPT" in proc.stdout


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_no_import_cycle_between_modules():
    import grimp

    graph = grimp.build_graph("defectlens")
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_cycles():
    class Graph:  # a -> b -> c -> a, d alone
        def __init__(self):
            self.edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
            self.modules = set(self.edges)

        def find_modules_directly_imported_by(self, m):
            return self.edges[m]

    assert _cycles(Graph()) == [["a", "b", "c"]]


def _functions():
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.relative_to(SRC), node


def test_no_function_is_longer_than_80_lines():
    long = [f"{p}:{n.name} ({n.end_lineno - n.lineno + 1} lines)" for p, n in _functions()
            if n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]  # fmt: skip
    assert long == []


@pytest.mark.parametrize("name", ["predictor", "spec", "manifest", "model", "result", "bundle", "config"])
def test_stage_objects_are_typed_not_any(name):
    """A parameter holding a stage's object is typed with its class; ``Any`` there hides a back-arrow."""
    loose = [
        f"{p}:{fn.name}"
        for p, fn in _functions()
        for arg in [*fn.args.args, *fn.args.kwonlyargs]
        if arg.arg == name and isinstance(arg.annotation, ast.Name) and arg.annotation.id == "Any"
    ]
    assert loose == []


def test_the_library_never_prints():
    """Console output belongs to the command line; the library reports through return values and Progress."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.parts[0] == "cli" or rel.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{rel}:{node.lineno}")
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rich"):
                offenders.append(f"{rel}:{node.lineno} imports {node.module}")
    assert offenders == []
