"""The ``drift_report`` stage function (``ml/monitoring.py``) on a few hundred simulated rows,
without Dagster: a day's report, its rules and its summary row; the persistence window takes the
stored flags of earlier days; a day without predictions, or whose champion has no reference, is
refused naming it."""

from __future__ import annotations

from dataclasses import replace
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


# Which rule applies to each column ---------------------------------------------------------

LANDED = DAY - timedelta(days=SPEC.label_lag_days)


def _with_weekday(frame: pl.DataFrame) -> pl.DataFrame:
    """A column constant within each day but not across days, as a weekday is."""
    return frame.with_columns(pl.col(SPEC.date_column).dt.weekday().cast(pl.Int64).alias("weekday"))


def _report(spec, world, outcomes: pl.DataFrame | None = None) -> pl.DataFrame:
    features, predictions, reference = world
    result = monitoring.drift_report_stage(
        spec,
        [DAY],
        _with_weekday(features),
        predictions,
        _with_weekday(reference),
        {},
        lambda d: EMPTY,
        LIMITS,
        outcomes=outcomes,
    )
    return result.frame.filter(pl.col("column") != monitoring.SUMMARY_COLUMN)


def _rules(frame: pl.DataFrame) -> dict[str, tuple[str, str]]:
    return {r["column"]: (r["rule"], r["status"]) for r in frame.iter_rows(named=True)}


@pytest.fixture(scope="module")
def outcomes() -> pl.DataFrame:
    examples = simulated_examples(SPEC, FIRST_DAY, 8, airings_per_day=40)
    return examples.select(SPEC.date_column, SPEC.event_key, SPEC.target)


def test_by_default_history_features_and_the_landed_target_are_watched(world, outcomes) -> None:
    spec = replace(
        SPEC,
        monitored_features=(),
        drift_exclude=None,
        numeric_features=(*SPEC.numeric_features, "weekday"),
    )
    rules = _rules(_report(spec, world, outcomes))
    for column in spec.history_feature_columns:
        assert rules[column][0].startswith("monitored: one value per"), column
        assert rules[column][1] in {"ok", "drift"}, column
    # The weekday holds one value on the day: left out, not tested, not in the drift share.
    assert rules["weekday"] == ("excluded: day-constant", "excluded")
    # The target of the newest day whose outcomes had landed by the end of DAY.
    assert rules[SPEC.target][0] == f"target of {LANDED}"
    assert rules[SPEC.target][1] in {"ok", "drift"}
    assert rules["prediction"] == ("monitored", rules["prediction"][1])


def test_the_target_row_says_when_no_day_has_landed_or_the_outcomes_are_missing(world) -> None:
    early = replace(SPEC, start_date=LANDED + timedelta(days=1))
    rules = _rules(_report(early, world, None))
    assert rules[SPEC.target][0] == "target: no day landed yet"
    # A landed day with no stored outcomes is empty, not a pass.
    rules = _rules(_report(SPEC, world, pl.DataFrame()))
    assert rules[SPEC.target] == (f"target of {LANDED}", "empty")


def test_drift_exclude_replaces_the_default(world, outcomes) -> None:
    numeric = (*SPEC.numeric_features, "weekday")
    keep_all = replace(SPEC, monitored_features=(), numeric_features=numeric, drift_exclude=())
    rules = _rules(_report(keep_all, world, outcomes))
    assert rules["weekday"][0] == "monitored: day-constant, kept by drift_exclude"
    assert rules["weekday"][1] in {"ok", "drift"}
    chosen = replace(keep_all, drift_exclude=("spend", SPEC.target))
    rules = _rules(_report(chosen, world, outcomes))
    assert rules["spend"] == ("excluded: spec", "excluded")
    assert rules[SPEC.target] == ("excluded: spec", "excluded")
    assert rules["weekday"][0].startswith("monitored")


def test_excluded_columns_do_not_count_in_the_drift_share(world, outcomes) -> None:
    spec = replace(
        SPEC,
        monitored_features=(),
        drift_exclude=None,
        numeric_features=(*SPEC.numeric_features, "weekday"),
    )
    frame = _report(spec, world, outcomes)
    tested = frame.filter(pl.col("status").is_in(["ok", "drift"]) & (pl.col("kind") != "target"))
    tested = tested.filter(pl.col("kind") != "prediction")
    # History features have their own verdicts, one value per key and day, outside the share
    # (the share is that of the HTML report's columns).
    per_key = pl.col("rule").str.starts_with("monitored: one value per")
    history = tested.filter(per_key)
    assert set(history["column"]) == set(spec.history_feature_columns)
    tested = tested.filter(~per_key)
    features, predictions, reference = world
    result = monitoring.drift_report_stage(
        spec,
        [DAY],
        _with_weekday(features),
        predictions,
        _with_weekday(reference),
        {},
        lambda d: EMPTY,
        LIMITS,
        outcomes=outcomes,
    )
    share = result.days[0].result.drift_share
    assert share == pytest.approx(tested["drifted"].sum() / tested.height)
    assert "weekday" not in result.days[0].result.tested_columns
    metrics = result.days[0].result.metrics()
    assert metrics["history_tested_columns"] == history.height
    assert metrics["history_drifted_columns"] == history["drifted"].sum()
    assert metrics["tested_columns"] == tested.height


def test_day_constant_columns_need_evidence_and_variation() -> None:
    frame = pl.DataFrame(
        {
            "d": [date(2025, 1, 1)] * 2 + [date(2025, 1, 2)] * 2,
            "weekday": [1, 1, 2, 2],
            "flat": [5, 5, 5, 5],  # constant everywhere: any change of it is drift
            "varies": [1, 2, 3, 4],
            "gappy": [1, None, 2, 2],  # missing values are ignored
        }
    )
    cols = ["weekday", "flat", "varies", "gappy", "absent"]
    assert monitoring.day_constant_columns(frame, "d", cols) == ["weekday", "gappy"]
    # One row per day is no evidence of a column being constant within a day.
    single = frame.unique("d", keep="first", maintain_order=True)
    assert monitoring.day_constant_columns(single, "d", cols) == []
