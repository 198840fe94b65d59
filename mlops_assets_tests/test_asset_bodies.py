"""Asset bodies stay thin: every function under ``mlops_assets/defs`` decorated as an asset or
multi-asset (including the ones built inside factory functions) has a body of at most
:data:`MAX_BODY_LINES` lines, counted from the first statement after its docstring to the end.
The logic belongs in a stage function of ``mlops_assets/ml``. The reader is checked on a small
module, and against the loaded definitions, so that no asset escapes it by its spelling."""

from __future__ import annotations

import ast
import inspect
import textwrap
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from mlops_assets.environments import REPO_ROOT

DEFS = REPO_ROOT / "mlops_assets" / "defs"
MAX_BODY_LINES = 30
# The names a decorator of an asset function ends with: ``dg.asset``, ``dg.multi_asset`` and
# the project's own wrappers of ``dg.asset`` (``_source_asset``: any name ending ``_asset``).
ASSET_DECORATORS = {"asset", "multi_asset"}


def _is_asset_decorator(name: str) -> bool:
    return name in ASSET_DECORATORS or name.endswith("_asset")


@dataclass(frozen=True)
class AssetBody:
    path: Path
    name: str
    first_line: int  # the line of its first decorator, as Python's code object records it
    body_lines: int

    def __str__(self) -> str:
        where = self.path.relative_to(REPO_ROOT) if self.path.is_absolute() else self.path
        return f"{where}:{self.first_line} {self.name}: {self.body_lines} lines"


def _decorator_name(node: ast.expr) -> str:
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Attribute):
        return target.attr
    return target.id if isinstance(target, ast.Name) else ""


def body_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """The lines of ``function``'s body from its first statement after the docstring."""
    body = function.body
    first = body[0]
    docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    if docstring and isinstance(first.value.value, str) and len(body) > 1:
        first = body[1]
    last_line = body[-1].end_lineno or body[-1].lineno
    return last_line - first.lineno + 1


def asset_bodies(source: str, path: Path) -> list[AssetBody]:
    """Every asset-decorated function of ``source``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(source, str(path))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if any(_is_asset_decorator(_decorator_name(d)) for d in node.decorator_list):
            first = node.decorator_list[0].lineno
            found.append(AssetBody(path, node.name, first, body_lines(node)))
    return found


def defs_asset_bodies() -> list[AssetBody]:
    return [
        body for path in sorted(DEFS.rglob("*.py")) for body in asset_bodies(path.read_text(), path)
    ]


def test_no_asset_body_is_longer_than_the_limit() -> None:
    bodies = defs_asset_bodies()
    offenders = [str(b) for b in bodies if b.body_lines > MAX_BODY_LINES]
    assert len(bodies) >= 10, bodies
    assert not offenders, (
        f"asset bodies over {MAX_BODY_LINES} lines (move the logic into a stage function in "
        "mlops_assets/ml): " + "; ".join(offenders)
    )


def test_every_loaded_asset_is_one_the_reader_measures() -> None:
    from mlops_assets.definitions import defs

    measured = {(b.path, b.first_line) for b in defs_asset_bodies()}
    for assets_def in defs.assets or ():
        assert isinstance(assets_def, dg.AssetsDefinition), assets_def
        function = assets_def.op.compute_fn.decorated_fn
        where = (Path(inspect.getsourcefile(function) or ""), function.__code__.co_firstlineno)
        assert where in measured, (assets_def.key, where)


SAMPLE = textwrap.dedent(
    '''
    import dagster as dg

    def build(p):
        @dg.asset(name="inner")
        def inner(context):
            """A docstring is not counted."""
            a = 1
            b = 2
            return a + b

        @stage.asset("wrapped")
        def wrapped():
            return 1

        return [inner, wrapped]

    @dg.multi_asset(specs=[])
    def several():
        x = [
            1,
            2,
        ]
        return x

    def plain():
        a = 1
        return a
    '''
)


def test_the_reader_finds_factory_built_and_multi_assets_and_counts_from_after_the_docstring():
    found = {b.name: b.body_lines for b in asset_bodies(SAMPLE, Path("sample.py"))}
    assert found == {"inner": 3, "wrapped": 1, "several": 5}
