"""Session fixtures of the fault tests: the pipeline with a champion (``world.py``), a pristine
copy of its data folder taken right after it was built, and the endpoint's registry and online
store (the serving tests' ``build_world``), each built once."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_assets_tests.faults.world import (
    AS_OF,
    BASE_DAYS,
    P1,
    SCORED_DAYS,
    World,
    small_spec,
)
from mlops_assets_tests.helpers import Pipeline, failure_messages

# As in ml/conftest.py: LightGBM's OpenMP threads otherwise spin on a busy machine. Timing only.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
# Hypothesis keeps its caches out of the checkout (the fuzz tests use no example database).
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "mlops_assets_hypothesis")
)


def _reset_mlflow(saved: dict[str, str]) -> None:
    """Undo what configuring MLflow did to this process (global URIs, MLFLOW_* variables)."""
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        del os.environ[key]
    os.environ.update(saved)


@pytest.fixture(scope="session")
def built_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, Path, Path]]:
    """The champion world, built once: (world, its base spec file, a pristine data copy)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    patch = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("faults_world")
    pipeline = Pipeline(patch, root, as_of=AS_OF)
    try:
        spec_path = pipeline.use_spec(small_spec())
        world = World(pipeline)
        summary = pipeline.run_days(BASE_DAYS)
        assert summary.failed_runs == [] and summary.checks_failed == [], summary
        trained = world.train(P1)
        assert trained.success, failure_messages(trained)
        scored = world.score(SCORED_DAYS)
        assert scored.success, failure_messages(scored)
        assert world.aliases()["champion"] is not None
        pristine = shutil.copytree(pipeline.data_dir, root / "pristine_data")
        yield world, spec_path, pristine
    finally:
        pipeline.close()
        patch.undo()
        _reset_mlflow(saved)


@pytest.fixture
def world(built_world: tuple[World, Path, Path], monkeypatch: pytest.MonkeyPatch) -> World:
    """The champion world, bound to this test's variables and back on its base spec."""
    world, spec_path, _ = built_world
    world.bind(monkeypatch)
    world.pipeline.set_var("MLOPS_DATASET", str(spec_path))
    return world


@pytest.fixture
def pristine_data(built_world: tuple[World, Path, Path]) -> Path:
    """The world's data folder as it was right after the champion's predictions."""
    return built_world[2]


@pytest.fixture(scope="session")
def serving_world(tmp_path_factory: pytest.TempPathFactory):
    """Two registered LightGBM versions (the first is champion) and an online store."""
    from mlops_assets_tests.serving.harness import build_world

    saved = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    try:
        yield build_world(tmp_path_factory.mktemp("faults_serving") / "data")
    finally:
        _reset_mlflow(saved)
