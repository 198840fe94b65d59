"""Fixtures shared by the test modules: an environment isolated from the caller's shell and a
pipeline driver bound to a temporary data folder, a fixed clock and a small simulator spec."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlops_assets_tests.helpers import MLOPS_VARS, Pipeline

TESTS = Path(__file__).parent
# Folders whose session fixtures build one shared world: their tests run in one worker.
SHARED_WORLDS = {"deploy", "deployment", "faults", "ml", "ui"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """With ``-n`` (pytest-xdist, ``--dist loadgroup``), the workers share the tests by group: a
    module's tests stay together (module fixtures are built once), and so does each folder of
    :data:`SHARED_WORLDS` (session fixtures are built once)."""
    for item in items:
        parts = item.path.relative_to(TESTS).parts
        group = parts[0] if len(parts) > 1 and parts[0] in SHARED_WORLDS else "/".join(parts)
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No MLOPS_* or DAGSTER_HOME from the caller's shell, and whatever a test (or the runner's
    ``ensure_instance``) sets is undone afterwards."""
    for var in (*MLOPS_VARS, "DAGSTER_HOME"):
        # setenv then delenv records the original state, so monkeypatch restores it even if
        # product code writes os.environ directly.
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)


@pytest.fixture
def make_pipeline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Callable]:
    """Factory: ``make_pipeline(**spec)`` sets MLOPS_DATA_DIR to ``<tmp>/data``, fixes the clock
    (MLOPS_AS_OF), writes a small simulator spec (``**spec`` as for ``helpers.simulator_spec``:
    airings_per_day, incidents, drifts, ...) and returns a :class:`Pipeline`."""
    made: list[Pipeline] = []

    def make(name: str = "run", as_of: str | None = None, **spec) -> Pipeline:
        kwargs = {"as_of": as_of} if as_of else {}
        p = Pipeline(monkeypatch, tmp_path / name, **kwargs)
        p.use_spec(**spec)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


@pytest.fixture
def pipeline(make_pipeline: Callable) -> Pipeline:
    """A pipeline on the default spec made small (150 airings a day from 2025-01-01)."""
    return make_pipeline()
