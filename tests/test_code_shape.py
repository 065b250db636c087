"""The library's shape stays what issue 16 made it (a gate, not a report): no module of rock/ over
400 lines, no function over 60 lines, no import cycle between rock modules (imports inside
functions count: a lazy import still ties two modules together); every stage has the same shape
(``rock/<stage>/cli.py`` with ``add_arguments`` and ``run``, no stage importing another's CLI); a
config file is read by :mod:`rock.config` alone, once per stage process. Tests and benchmarks are
exempt.
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


# ------------------------------------------------------------------------------------------------
# one stage shape, one way into the config
# ------------------------------------------------------------------------------------------------

def stage_shape_problems(root: Path, stages: dict[str, tuple[str, str]]) -> list[str]:
    """Each stage package ``rock/<stage>/`` defines ``add_arguments`` and ``run`` in its ``cli.py``
    and its ``__init__`` takes them from there (``rock.cli`` calls ``rock.<stage>.run``). Commands
    that are one module (``rock.download``, ``rock.launch``) are their own shape."""
    problems = []
    for stage, (module, _) in stages.items():
        pkg = root / module.split(".", 1)[1].replace(".", "/")
        if not pkg.is_dir():
            continue
        cli = pkg / "cli.py"
        if not cli.is_file():
            problems.append(f"{module}: no cli.py")
            continue
        defs = {n.name for n in ast.parse(cli.read_text()).body if isinstance(n, ast.FunctionDef)}
        problems += [f"{module}.cli: no {name}()" for name in ("add_arguments", "run") if name not in defs]
        init = ast.parse((pkg / "__init__.py").read_text())
        taken = {a.name for n in init.body if isinstance(n, ast.ImportFrom) and n.module == f"{module}.cli"
                 for a in n.names}
        problems += [f"{module}: __init__ does not take {name} from {module}.cli"
                     for name in ("add_arguments", "run") if name not in taken]
    return problems


def foreign_cli_imports(modules: dict[str, Path]) -> list[str]:
    """Imports of ``rock.<stage>.cli`` from outside that stage (``rock.cli`` imports none)."""
    out = []
    for name, f in modules.items():
        for target in _imports(name, f, modules):
            parts = target.split(".")
            if len(parts) == 3 and parts[2] == "cli" and not name.startswith(f"rock.{parts[1]}"):
                out.append(f"{name} imports {target}")
    return out


CONFIG_READERS = {"load_config", "load_yaml"}


def config_file_readers(modules: dict[str, Path]) -> list[str]:
    """Modules other than rock.config that import :func:`rock.config.load_config`/``load_yaml``:
    a stage asks :func:`rock.config.stage_config`, which reads the file once per process."""
    out = []
    for name, f in modules.items():
        if name == "rock.config":
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "rock.config":
                out += [f"{name}: {a.name}" for a in node.names if a.name in CONFIG_READERS]
    return out


def test_every_stage_has_the_same_shape():
    from rock.cli import STAGES

    assert stage_shape_problems(ROCK, STAGES) == []


def test_no_stage_imports_another_stages_cli():
    assert foreign_cli_imports(_modules()) == []


def test_only_rock_config_reads_a_config_file():
    assert config_file_readers(_modules()) == []


def test_the_shape_checks_find_planted_defects(tmp_path):
    """The three checks can fail: a stage without cli.py, a stage importing another's CLI, and a
    stage that reads the config file itself."""
    root = tmp_path / "rock"
    for stage in ("alpha", "beta"):
        (root / stage).mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "config.py").write_text("def load_config(p):\n    pass\n")
    (root / "alpha" / "__init__.py").write_text("def run(args):\n    pass\n")
    (root / "alpha" / "core.py").write_text("from rock.config import load_config\n")
    (root / "beta" / "__init__.py").write_text("from rock.beta.cli import add_arguments, run\n")
    (root / "beta" / "cli.py").write_text("from rock.alpha.cli import x\ndef add_arguments(p):\n    pass\n"
                                          "def run(a):\n    pass\n")
    (root / "alpha" / "cli.py").touch()
    stages = {"alpha": ("rock.alpha", ""), "beta": ("rock.beta", "")}
    assert stage_shape_problems(root, stages) == [
        "rock.alpha.cli: no add_arguments()", "rock.alpha.cli: no run()",
        "rock.alpha: __init__ does not take add_arguments from rock.alpha.cli",
        "rock.alpha: __init__ does not take run from rock.alpha.cli"]
    modules = _modules(root)
    assert foreign_cli_imports(modules) == ["rock.beta.cli imports rock.alpha.cli"]
    assert config_file_readers(modules) == ["rock.alpha.core: load_config"]


def test_a_stage_process_reads_its_config_file_once(tmp_path, monkeypatch):
    """:func:`rock.config.stage_config` validates the file on the first call and hands the same
    dict to every later one (the knockout shard asked twice and read the file twice before)."""
    import argparse
    import shutil

    from rock import config

    calls = []
    real = config.load_yaml
    monkeypatch.setattr(config, "load_yaml", lambda path: calls.append(path) or real(path))
    cfg_file = tmp_path / "config.yaml"
    shutil.copy(ROCK.parent / "tests" / "config_toy" / "config.yaml", cfg_file)
    args = argparse.Namespace(config=str(cfg_file))
    first = config.stage_config(args)
    assert config.stage_config(args) is first and calls == [str(cfg_file)]
    assert first["stage1"]["kd_ratio"] == 0.5
    assert config.stage_config(argparse.Namespace(config=None)) is None
