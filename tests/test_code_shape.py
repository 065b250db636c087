"""The library's shape stays what issue 16 made it (a gate, not a report): no module of rock/ over
400 lines, no function over 60 lines, no import cycle between rock modules (imports inside
functions count: a lazy import still ties two modules together). Tests and benchmarks are exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROCK = Path(__file__).resolve().parent.parent / "rock"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules(root: Path = ROCK) -> dict[str, Path]:
    out = {}
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root.parent).with_suffix("")
        out[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = f
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The rock modules ``name`` imports (``from rock.x import y`` is rock.x.y when y is a module)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
    return {m for m in found if m in modules and m != name}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_module_over_400_lines():
    big = {name: n for name, f in _modules().items() if (n := len(f.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not big, f"split these modules (lines): {big}"


def test_no_function_over_60_lines():
    long = []
    for name, f in _modules().items():
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {n} lines")
    assert not long, long


def test_no_import_cycle():
    modules = _modules()
    graph = {name: _imports(name, f, modules) for name, f in modules.items()}
    assert import_cycles(graph) == []


def test_the_cycle_check_finds_a_planted_cycle(tmp_path):
    """The check can fail: two modules importing each other (one lazily) are a cycle."""
    pkg = tmp_path / "rock" / "stage"
    pkg.mkdir(parents=True)
    (tmp_path / "rock" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from rock.stage import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n")
    (pkg / "c.py").write_text("import rock.stage.a\n")
    modules = _modules(tmp_path / "rock")
    graph = {name: _imports(name, f, modules) for name, f in modules.items()}
    assert import_cycles(graph) == [["rock.stage.a", "rock.stage.b"]]


@pytest.mark.parametrize("lines,ok", [(60, True), (61, False)])
def test_the_function_length_limit_is_inclusive(lines, ok):
    body = "\n".join(["def f():"] + ["    x = 1"] * (lines - 1))
    node = ast.parse(body).body[0]
    assert (node.end_lineno - node.lineno + 1 <= MAX_FUNCTION_LINES) is ok
