"""The target-leak guard end to end in staging (real Dagster runs, DuckDB warehouse, MLflow
store): the simulator injects a column that is the outcome plus a little noise, listed as a
feature; the champion evaluation flags it by name, the promotion is refused (no champion in
force, no alias moved), the `target_leak` check fails with ERROR severity and carries its
evidence, and one alert names the gate."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date

import polars as pl
import pytest

from mlops_assets.run_instance import ensure_instance
from mlops_assets.runner import run_days, run_training
from mlops_assets_tests.helpers import (
    Pipeline,
    assert_refused_by,
    day_range,
    simulator_spec,
)

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

AS_OF = "2025-01-28T06:00"
TRAINING_DATE = "2025-01-20"
LEAK = "visits_tally"


@pytest.fixture(scope="module")
def leaking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pipeline, object]]:
    patch = pytest.MonkeyPatch()
    pipeline = Pipeline(patch, tmp_path_factory.mktemp("leak"), as_of=AS_OF)
    try:
        pipeline.set_env("staging")
        raw = simulator_spec(airings_per_day=150)
        raw["training"].update(train_days=14, holdout_days=5)
        raw["source"]["options"]["leak_column"] = LEAK
        raw["numeric_features"] = [*raw["numeric_features"], LEAK]
        pipeline.use_spec(raw)
        patch.setenv("DAGSTER_HOME", str(pipeline.settings.dagster_home))
        pipeline.use_instance(ensure_instance(pipeline.settings))
        defs = pipeline.definitions()
        days = run_days(defs, pipeline.instance, pipeline.settings, day_range(date(2025, 1, 1), 26))
        assert not days.failed_runs, days.failed_runs
        trained = run_training(defs, pipeline.instance, [TRAINING_DATE])
        assert not trained.failed_runs, trained.failed_runs
        yield pipeline, trained
    finally:
        pipeline.close()
        patch.undo()


def test_an_injected_leak_is_flagged_and_blocks_promotion_in_staging(
    leaking: tuple[Pipeline, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, _ = leaking
    pipeline.bind(monkeypatch)
    board = pipeline.warehouse.read("champion")
    proposed = board.filter(pl.col("proposed"))
    assert proposed.height == 1
    assert proposed["refused_by"][0] == "target_leak"
    assert f"feature {LEAK}" in proposed["evaluation"][0]

    _, leak, alert = assert_refused_by(pipeline, TRAINING_DATE, "target_leak", incumbent=None)
    assert leak.metadata["observed"].value < leak.metadata["threshold"].value
    assert leak.metadata["decisions_refused_by_gate"].value == 1
    assert LEAK in alert["message"]
