"""Monitoring and metric refresh through Dagster: the simulator's injected drift makes the drift
check fail on its day and not on the quiet days before it, drift that persists raises exactly one
alert, the drift report is saved and linked, and business metrics of a day wait for its actuals
and match a computation made here from the stored tables."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import date, timedelta

import dagster as dg
import polars as pl
import pytest

from mlops_assets.run_instance import ensure_instance
from mlops_assets.runner import run_days, run_training
from mlops_assets_tests.helpers import Pipeline, day_range, failure_messages, simulator_spec

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

AS_OF = "2025-02-20T06:00"
TRAINING_PARTITION = "2025-01-20"  # week 2025-01-20..26, cut-off 2025-01-27
DRIFT_DAY = date(2025, 2, 10)
QUIET_DAYS = day_range(date(2025, 2, 5), 5)
DRIFT_DAYS = day_range(DRIFT_DAY, 5)
NOT_LANDED = date(2025, 2, 19)


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """Fifty days of a 1,000-airings-a-day business, a champion trained in January, and from
    2025-02-10 on every network's audience three times larger."""
    patch = pytest.MonkeyPatch()
    pipeline = Pipeline(patch, tmp_path_factory.mktemp("monitoring"), as_of=AS_OF)
    spec = simulator_spec(
        airings_per_day=1000,
        drifts=[{"kind": "audience_shift", "date": DRIFT_DAY.isoformat(), "factor": 3.0}],
        monitored_features=["spend", "audience_k", "network"],
    )
    spec["training"].update(train_days=14, holdout_days=5)
    try:
        pipeline.use_spec(spec)
        patch.setenv("DAGSTER_HOME", str(pipeline.settings.dagster_home))
        pipeline.use_instance(ensure_instance(pipeline.settings))
        defs = pipeline.definitions()
        summary = run_days(
            defs, pipeline.instance, pipeline.settings, day_range(date(2025, 1, 1), 50)
        )
        assert not summary.failed_runs, summary.failed_runs
        trained = run_training(defs, pipeline.instance, [TRAINING_PARTITION])
        assert not trained.failed_runs, trained.failed_runs
        yield pipeline
    finally:
        pipeline.close()
        patch.undo()


@pytest.fixture
def bound(monitored: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    """The module's pipeline with its environment variables applied to this test."""
    return monitored.bind(monkeypatch)


def _run(pipeline: Pipeline, job: str, assets: list[str], day: date) -> dg.ExecuteInProcessResult:
    result = (
        pipeline.definitions()
        .resolve_job_def(job)
        .execute_in_process(
            instance=pipeline.instance,
            partition_key=day.isoformat(),
            asset_selection=[dg.AssetKey(a) for a in assets],
            raise_on_error=False,
        )
    )
    return result


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


@pytest.fixture(scope="module")
def drift_runs(monitored: Pipeline) -> dict[date, dg.ExecuteInProcessResult]:
    """Predictions, then one drift report per day, in day order (as automation would run them)."""
    results = {}
    for day in [*QUIET_DAYS, *DRIFT_DAYS]:
        scored = _run(monitored, "daily_scoring", ["predictions"], day)
        assert scored.success, failure_messages(scored)
        results[day] = _run(monitored, "daily_scoring", ["drift_report"], day)
        assert results[day].success, failure_messages(results[day])
    return results


def test_drift_check_fails_on_the_drift_day_not_before(drift_runs) -> None:
    for day in QUIET_DAYS:
        check = _checks(drift_runs[day])["feature_drift_share"]
        assert check.passed, (day, check.metadata)
    on_day = _checks(drift_runs[DRIFT_DAY])["feature_drift_share"]
    assert not on_day.passed
    assert on_day.metadata["observed"].value > on_day.metadata["threshold"].value


def test_drift_report_is_saved_and_linked_not_inlined(drift_runs, bound: Pipeline) -> None:
    event = next(
        e
        for e in drift_runs[DRIFT_DAY].get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("drift_report")
    )
    meta = event.materialization.metadata
    path = meta["report_file"].value
    assert path.endswith(f"drift_{DRIFT_DAY}.html")
    # The link is the same file as the reports server serves it.
    assert meta["report"].value == f"{bound.settings.reports_url}/drift_{DRIFT_DAY}.html"
    html = open(path, encoding="utf-8").read()
    assert len(html) > 10_000 and "audience_k" in html
    assert meta["drift_share"].value >= 0.5
    assert "audience_k" in meta["summary"].value
    assert all(len(str(v.value)) < 100_000 for v in meta.values())
    workspace = bound.settings.reports_dir / "workspace"
    assert any(workspace.rglob("*.json")), "the run was added to the Evidently workspace"


def test_each_row_names_its_rule_and_the_target_follows_the_landed_outcomes(
    drift_runs, bound: Pipeline
) -> None:
    lag = timedelta(days=bound.spec.label_lag_days)
    for day in [DRIFT_DAY, DRIFT_DAY + lag]:
        rows = bound.rows("drift_report", day, column="day")
        rules = {r["column"]: r["rule"] for r in rows.iter_rows(named=True)}
        assert rules["spend"] == rules["audience_k"] == "monitored"
        assert rules["visits"] == f"target of {day - lag}"
        target = rows.filter(pl.col("column") == "visits").row(0, named=True)
        assert target["kind"] == "target" and target["status"] in {"ok", "drift"}
    # The tripled audiences reach the outcomes: the target drifts once the drift day's outcomes
    # have landed, in the report of the drift day plus the label lag, not in the days before.
    tripled = bound.rows("drift_report", DRIFT_DAY + lag, column="day").filter(
        pl.col("column") == "visits"
    )
    assert tripled["drifted"][0], tripled
    quiet = bound.rows("drift_report", DRIFT_DAY + lag - timedelta(days=1), column="day")
    quiet = quiet.filter(pl.col("column") == "visits")
    assert quiet["rule"][0] == f"target of {DRIFT_DAY - timedelta(days=1)}"
    # The target counts in neither share: the day's drift share is that of the features.
    meta = _materialization(drift_runs[DRIFT_DAY]).metadata
    assert meta["target_day"].value == str(DRIFT_DAY - lag)


def _materialization(result: dg.ExecuteInProcessResult) -> dg.AssetMaterialization:
    return next(
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("drift_report")
    )


def test_persistent_drift_alerts_once_per_persistent_day(drift_runs, bound: Pipeline) -> None:
    lines = [json.loads(x) for x in bound.settings.alerts_path.read_text().splitlines() if x]
    drift_alerts = [a for a in lines if a["kind"] == "drift_persistent"]
    # dev: drifted on 3 of the last 5 days -> the third drift day is the first to alert; each
    # day whose drift persists alerts once (the same day again is inside the cooldown).
    partitions = [a["partition"] for a in drift_alerts]
    assert partitions and partitions[0] == str(DRIFT_DAY + timedelta(days=2))
    assert len(partitions) == len(set(partitions))
    for partition in partitions:
        day = date.fromisoformat(partition)
        assert not _checks(drift_runs[day])["drift_persistent"].passed
    assert drift_alerts[0]["env"] == "dev"
    persistent = _checks(drift_runs[DRIFT_DAY + timedelta(days=2)])["drift_persistent"]
    assert not persistent.passed
    assert _checks(drift_runs[DRIFT_DAY])["drift_persistent"].passed


def test_business_metrics_wait_for_actuals(bound: Pipeline) -> None:
    monitored = bound
    scored = _run(monitored, "daily_scoring", ["predictions"], NOT_LANDED)
    assert scored.success, failure_messages(scored)
    result = _run(monitored, "metric_refresh", ["serving_log", "business_metrics"], NOT_LANDED)
    assert not result.success
    message = failure_messages(result)
    assert "have not landed yet" in message and str(NOT_LANDED) in message
    assert monitored.rows("business_metrics", NOT_LANDED).is_empty()


def test_business_metrics_match_the_stored_tables(bound: Pipeline) -> None:
    monitored = bound
    day = date(2025, 2, 3)
    for job, assets in (
        ("daily_scoring", ["predictions"]),
        ("metric_refresh", ["serving_log", "business_metrics"]),
    ):
        result = _run(monitored, job, assets, day)
        assert result.success, failure_messages(result)
    event = next(
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("business_metrics")
    )
    lineage = event.materialization.metadata["dagster/column_lineage"].value
    sources = {dep.asset_key.to_user_string() for dep in lineage.deps_by_column["wape"]}
    assert sources == {"predictions", "raw_outcomes"}
    assert {d.asset_key.to_user_string() for d in lineage.deps_by_column["cost"]} == {"raw_events"}
    stored = monitored.rows("business_metrics", day)
    total = stored.filter(pl.col("network") == "ALL").row(0, named=True)

    joined = (
        monitored.rows("predictions", day)
        .join(monitored.rows("raw_outcomes", day), on="airing_id")
        .join(monitored.rows("raw_events", day).select("airing_id", "spend"), on="airing_id")
    )
    actual = joined["visits"].sum()
    predicted = joined["prediction"].sum()
    assert total["actual"] == pytest.approx(actual)
    assert total["predicted"] == pytest.approx(predicted)
    assert total["cost"] == pytest.approx(joined["spend"].sum())
    assert total["cost_per_outcome_actual"] == pytest.approx(joined["spend"].sum() / actual)
    wape = (joined["prediction"] - joined["visits"]).abs().sum() / actual
    assert total["wape"] == pytest.approx(wape)
    assert total["bias"] == pytest.approx((predicted - actual) / actual)
    segments = stored.filter(pl.col("network") != "ALL")
    assert segments["actual"].sum() == pytest.approx(actual)
    assert set(segments["network"]) == set(joined["network"])
