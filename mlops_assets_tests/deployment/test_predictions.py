"""Batch predictions use the champion trained before the day: one scoring run over the days
around the second training cut-off predicts the days from the first cut-off on with the first
champion and the days from the second cut-off on with the model promoted then (as the champion
history records), every prediction check passes, and a day before any champion fails with a
message naming the day."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from mlops_assets_tests.deployment.scenario import (
    CUTOFF,
    MODEL_NAME,
    P1,
    P2,
    SCORED_DAYS,
    Scored,
    Step,
    World,
)
from mlops_assets_tests.helpers import SMALL_AIRINGS_PER_DAY, failure_messages

PREDICTION_CHECKS = {
    "predictions_one_per_feature_row",
    "predictions_finite",
    "predictions_in_plausible_range",
}


def served_by_history(history: pl.DataFrame, day: date) -> str:
    """The version the champion history puts in force on ``day``: the latest decision that
    names a champion and took effect on or before it (dry runs name the incumbent)."""
    rows = history.filter(
        (pl.col("effective_from") <= day) & pl.col("to_version").is_not_null()
    ).sort("seq")
    return rows["to_version"][-1]


def test_each_day_is_predicted_by_the_champion_in_force(
    scored: Scored, first_champion: Step, promoted: Step
):
    assert scored.step.result.success, failure_messages(scored.step.result)
    first = first_champion.aliases_after["champion"]
    second = promoted.aliases_after["champion"]
    assert first is not None and second is not None and first != second
    promotion = promoted.decision()
    assert promotion["action"] == "promote"
    assert (promotion["from_version"], promotion["to_version"]) == (first, second)
    assert promotion["effective_from"] == CUTOFF[P2]

    per_day = (
        scored.predictions.filter(pl.col("air_date").is_in(SCORED_DAYS))
        .group_by("air_date")
        .agg(pl.col("model_version").unique().alias("versions"), pl.len().alias("rows"))
        .sort("air_date")
    )
    assert per_day["air_date"].to_list() == SCORED_DAYS
    for day, versions, rows in per_day.iter_rows():
        expected = second if day >= CUTOFF[P2] else first
        assert versions == [expected], day
        assert served_by_history(scored.history, day) == expected, day
        assert rows == SMALL_AIRINGS_PER_DAY
    assert per_day["air_date"][0] == CUTOFF[P1]


def test_each_champion_was_trained_before_the_days_it_predicts(scored: Scored, world: World):
    client = world.client()
    first_day = scored.predictions.group_by("model_version").agg(pl.col("air_date").min())
    for version, day in first_day.iter_rows():
        tags = client.get_model_version(MODEL_NAME, version).tags
        train_end = date.fromisoformat(tags["train_window"].split("..")[1])
        holdout_end = date.fromisoformat(tags["holdout_window"].split("..")[1])
        assert train_end < holdout_end < day, (version, tags)


def test_the_prediction_checks_passed(scored: Scored):
    checks = scored.step.checks()
    assert set(checks) == PREDICTION_CHECKS
    assert all(e.passed for e in checks.values()), checks
    assert scored.predictions["prediction"].is_finite().all()
    assert (scored.predictions["prediction"] >= 0).all()


def test_a_day_before_any_champion_cannot_be_scored(scored: Scored, world: World):
    day = CUTOFF[P1] - timedelta(days=1)
    step = world.score([day])
    assert not step.result.success
    assert f"no champion was in force on {day}" in failure_messages(step.result)
    assert world.read("predictions").filter(pl.col("air_date") == day).is_empty()
