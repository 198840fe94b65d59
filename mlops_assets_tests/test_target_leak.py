"""The target-leak guard end to end in staging (real Dagster runs, DuckDB warehouse, MLflow
store): the simulator injects a column that is the outcome plus a little noise, listed as a
feature; the champion evaluation flags it by name, the promotion is refused (no champion in
force, no alias moved), the `target_leak` check fails with ERROR severity and carries its
evidence, and one alert names the gate."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import date

import polars as pl
import pytest

from mlops_assets.defs.alerts import alert_on_failed_checks
from mlops_assets.defs.resources import AlertSinkResource
from mlops_assets.runner import ensure_instance, run_days, run_training
from mlops_assets_tests.helpers import Pipeline, day_range, simulator_spec

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
    import dagster as dg

    from mlops_assets.ml import registry

    pipeline, trained = leaking
    pipeline.bind(monkeypatch)
    board = pipeline.warehouse.read("champion")
    proposed = board.filter(pl.col("proposed"))
    assert proposed.height == 1
    assert proposed["refused_by"][0] == "target_leak"
    assert f"feature {LEAK}" in proposed["evaluation"][0]

    history = pipeline.warehouse.read("champion_history")
    decision = history.filter(pl.col("kind") == "training").row(0, named=True)
    assert decision["action"] == "refused" and decision["to_version"] is None
    assert "refused by gate target_leak" in decision["reason"]
    settings = pipeline.settings
    model = settings.registered_model_name
    assert registry.get_alias_version(model, "champion", settings.mlflow_tracking_uri) is None

    assert any(c.startswith("target_leak [-]") for c in trained.checks_failed), trained
    records = pipeline.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("champion_history")), limit=1
    ).records
    evaluations = [
        e.dagster_event.event_specific_data
        for e in pipeline.instance.all_logs(
            records[0].run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        )
    ]
    leak = next(e for e in evaluations if e.check_name == "target_leak")
    assert not leak.passed and leak.severity == dg.AssetCheckSeverity.ERROR
    assert leak.metadata["verdict"].value == "refuse"
    assert leak.metadata["observed"].value < leak.metadata["threshold"].value
    assert leak.metadata["decisions_refused_by_gate"].value == 1

    # The alert sensor (as the daemon ticks it) does not alert a second time for the gate check:
    # the decision history sent the one alert that names the gate.
    sink = AlertSinkResource(env=settings.env, path=str(settings.alerts_path))
    context = dg.build_sensor_context(
        instance=pipeline.instance, resources={"alerts": sink}, definitions=pipeline.definitions()
    )
    alert_on_failed_checks(context)
    alerts = [json.loads(x) for x in settings.alerts_path.read_text().splitlines()]
    assert [a for a in alerts if "target_leak" in a["cause"]] == [
        a for a in alerts if a["kind"] == "gate"
    ], alerts
    gate_alerts = [a for a in alerts if a["kind"] == "gate"]
    assert len(gate_alerts) == 1, alerts
    assert gate_alerts[0]["cause"] == "promotion refused by target_leak"
    assert LEAK in gate_alerts[0]["message"]
