"""The ``drift_report`` stage function (``ml/monitoring.py``) on a few hundred simulated rows,
without Dagster: a day's report, its rules and its summary row; the persistence window takes the
stored flags of earlier days; a day without predictions, or whose champion has no reference, is
refused naming it."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from mlops_assets.environments import load_settings
from mlops_assets.ml import monitoring
from mlops_assets_tests.worlds import FIRST_DAY, simulated_examples, small_spec

SPEC = small_spec()
LIMITS = load_settings("dev").thresholds
DAY = FIRST_DAY + timedelta(days=7)
EMPTY = (pl.DataFrame(), pl.DataFrame())


@pytest.fixture(scope="module")
def world() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    examples = simulated_examples(SPEC, FIRST_DAY, 8, airings_per_day=40)
    reference = examples.filter(pl.col(SPEC.date_column) < DAY).with_columns(
        pl.col(SPEC.target).cast(pl.Float64).alias("prediction"),
        pl.lit("1").alias("model_version"),
        pl.lit(date(2025, 2, 1)).alias("training_date"),
    )
    features = examples.filter(pl.col(SPEC.date_column) == DAY).drop(SPEC.target)
    predictions = examples.filter(pl.col(SPEC.date_column) == DAY).select(
        SPEC.event_key,
        pl.col(SPEC.target).cast(pl.Float64).alias("prediction"),
        pl.lit("1").alias("model_version"),
    )
    return features, predictions, reference


def test_a_day_gets_its_report_rules_and_the_stored_flags_of_the_window(world) -> None:
    features, predictions, reference = world
    earlier = {DAY - timedelta(days=1): True, DAY - timedelta(days=2): False}
    result = monitoring.drift_report_stage(
        SPEC, [DAY], features, predictions, reference, earlier, lambda d: EMPTY, LIMITS
    )
    (day,) = result.days
    assert day.day == DAY and day.current.height == features.height
    assert set(day.rules) == {"drift_share", "prediction_drift", "null_share"}
    # The window is the last drift_persist_m days: the two stored flags, then the day's own
    # (the days before them have no predictions: read_day finds nothing).
    assert LIMITS.drift_persist_m == 5
    assert day.recent[:2] == [False, True] and len(day.recent) == 3
    summary = result.frame.filter(pl.col("column") == monitoring.SUMMARY_COLUMN)
    assert summary.height == 1 and summary["drifted"][0] == (not day.rules["drift_share"].passed)
    _passed, evidence = result.verdict("null_share")
    assert evidence["days_checked"] == 1 and evidence["day"] == str(DAY)
    assert monitoring.stored_flags(result.frame) == {DAY: summary["drifted"][0]}


def test_a_day_without_predictions_or_reference_is_refused(world) -> None:
    features, predictions, reference = world
    with pytest.raises(monitoring.MonitoringError, match=f"no predictions for {DAY}"):
        monitoring.drift_report_stage(
            SPEC, [DAY], features, predictions.head(0), reference, {}, lambda d: EMPTY, LIMITS
        )
    other = predictions.with_columns(pl.lit("2").alias("model_version"))
    with pytest.raises(monitoring.MonitoringError, match="no drift reference for champion v2"):
        monitoring.drift_report_stage(
            SPEC, [DAY], features, other, reference, {}, lambda d: EMPTY, LIMITS
        )
