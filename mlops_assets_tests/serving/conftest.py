"""The endpoint tests' shared world: two registered LightGBM versions and an online store under a
temporary folder, built once per test module, with MLflow's process-wide settings restored
afterwards."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from mlops_assets_tests.serving.harness import World, build_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    import mlflow

    saved = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    yield build_world(tmp_path_factory.mktemp("serving") / "data")
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        del os.environ[key]
    os.environ.update(saved)
