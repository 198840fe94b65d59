"""The package's import graph, read from the source (no module is imported): the modules of
``mlops_assets`` import each other without a cycle at import time, ``ml/`` imports nothing of
Dagster (not even inside a function), and the benchmark's direct path imports no asset module.
The graph reader itself is checked on a small package with a cycle. No module of the package is
longer than 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

from mlops_assets.environments import REPO_ROOT

PACKAGE = REPO_ROOT / "mlops_assets"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(name: str, level: int, module: str, is_package: bool) -> str:
    if not level:
        return name
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imports(path: Path, module: str, top_level_only: bool) -> set[str]:
    """Modules ``path`` imports: at import time only (module level, outside ``TYPE_CHECKING``)
    or everywhere (function bodies too)."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node.module or "", node.level, module, is_package)
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and top_level_only:
                continue
            if not isinstance(node, ast.Import | ast.ImportFrom):
                visit([n for n in ast.iter_child_nodes(node) if isinstance(n, ast.stmt)])

    visit(tree.body)
    return found


def graph(root: Path, top_level_only: bool = True) -> dict[str, set[str]]:
    """Module -> the package modules it imports."""
    paths = {module_name(root, p): p for p in sorted(root.rglob("*.py"))}
    return {
        name: {m for m in imports(path, name, top_level_only) if m in paths and m != name}
        for name, path in paths.items()
    }


def cycles(edges: dict[str, set[str]], allowed: set[tuple[str, str]]) -> list[list[str]]:
    """Every cycle found by a depth-first walk (each reported once, from where it closes)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if (node, target) in allowed:
                continue
            if state.get(target) == 1:
                found.append([*stack[stack.index(target) :], target])
            elif target not in state:
                walk(target)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            walk(node)
    return found


def test_the_reader_finds_a_cycle_and_ignores_lazy_and_type_only_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text("from . import c\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    (pkg / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import e\n"
        "def f():\n    from pkg import e\n"
    )
    (pkg / "e.py").write_text("from pkg.d import f\n")
    edges = graph(pkg)
    assert edges["pkg.b"] == {"pkg", "pkg.c"} and edges["pkg.d"] == set()
    assert cycles(edges, set()) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    assert cycles(edges, {("pkg.c", "pkg.a")}) == []
    assert "pkg.e" in graph(pkg, top_level_only=False)["pkg.d"]


def test_the_package_has_no_import_cycle() -> None:
    edges = graph(PACKAGE)
    assert len(edges) > 40, "the package's modules were not found"
    assert cycles(edges, set()) == []


def test_ml_imports_no_dagster_even_inside_functions() -> None:
    offenders = {}
    for path in sorted((PACKAGE / "ml").rglob("*.py")):
        name = module_name(PACKAGE, path)
        found = sorted(m for m in imports(path, name, top_level_only=False) if "dagster" in m)
        if found:
            offenders[name] = found
    assert offenders == {}


MAX_MODULE_LINES = 500


def test_no_module_is_over_500_lines() -> None:
    """A module that grows past this holds more than one responsibility: split it along them."""
    lengths = {
        str(path.relative_to(REPO_ROOT)): len(path.read_text().splitlines())
        for path in sorted(PACKAGE.rglob("*.py"))
    }
    assert len(lengths) > 40, "the package's modules were not found"
    offenders = {name: n for name, n in lengths.items() if n > MAX_MODULE_LINES}
    assert offenders == {}, f"modules over {MAX_MODULE_LINES} lines: " + ", ".join(
        f"{name} ({n})" for name, n in sorted(offenders.items(), key=lambda kv: -kv[1])
    )


DIRECT_PATH = ("_direct_cycle", "_direct_daily", "_cycle_inputs")


def test_the_benchmarks_direct_path_imports_no_asset_module() -> None:
    """The benchmark times the stage functions outside Dagster: its direct path calls the same
    ``ml/`` functions as the assets and never imports an asset module to copy from it."""
    path = REPO_ROOT / "benchmarks" / "pipeline.py"
    tree = ast.parse(path.read_text())
    functions = [
        node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in DIRECT_PATH
    ]
    assert sorted(f.name for f in functions) == sorted(DIRECT_PATH)
    imported = set()
    for function in functions:
        for node in ast.walk(function):
            if isinstance(node, ast.ImportFrom):
                imported.add(node.module or "")
                imported.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
    assert "mlops_assets.ml" in imported, imported
    assets = sorted(m for m in imported if m.endswith(".assets") or ".assets." in m)
    assert assets == []
    assert "predictions_stage" in ast.unparse(tree), "the direct path must call the stage function"
