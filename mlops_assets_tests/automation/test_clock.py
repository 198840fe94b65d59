"""Declarative automation by a simulated clock: nine mornings of prod, each evaluated with the
cursor of the evaluation before (as the automation sensor does) and followed by runs of exactly
what was requested. Covers the daily sources, data profile and features, outcomes that land two
days late, predictions once the champion in force is in, the weekly training, the online store
and the monitors; that no partition is requested twice; and that a day whose features fail a
blocking check (a null storm, an ERROR in prod) holds back everything downstream of that day,
while in dev, where the same rule only warns, it holds back nothing."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import dagster as dg
import pytest

from mlops_assets import runner
from mlops_assets.defs.feature_refresh.checks import NULL_SHARE
from mlops_assets.ml.candidates import CANDIDATES
from mlops_assets_tests.automation.clock import AutomationClock, at, show
from mlops_assets_tests.helpers import Pipeline, day_range, default_spec_dict

AIRINGS_PER_DAY = 100
T0 = datetime(2025, 2, 15, 6, 0)  # Saturday; the history ends the morning before
STORM = "2025-02-19"  # a Wednesday whose events come with audience_k mostly empty
STORM_MORNING = date(2025, 2, 20)  # the morning that brings the storm day's events
WEEK = "2025-02-10"  # the training week whose champion is in force from Monday 2025-02-17

LANDED = ("raw_outcomes", "outcome_stats", "labeled_examples", "business_metrics")
NEW_DAY = ("raw_events", "data_profile", "features", "serving_log", "predictions", "drift_report")
BEFORE_CHAMPION = ("raw_events", "data_profile", "features", "serving_log")
SCORED = ("predictions", "drift_report")
TRAINING = (*(c.asset_name for c in CANDIDATES), "champion")
ONLINE = at(None, "online_features")
DOWNSTREAM_OF_FEATURES = ("labeled_examples", "predictions", "drift_report", "business_metrics")

# What each morning requests, evaluation by evaluation (06:00, then follow-ups a minute apart
# until one requests nothing). Outcomes of day D land on D+2; the morning of D+1 brings day D's
# events. Predictions of day D need the champion of the training week that ended by D.
EXPECTED: dict[str, list[set]] = {
    "2025-02-15": [at("2025-02-13", *LANDED) | at("2025-02-14", *NEW_DAY), ONLINE],
    "2025-02-16": [at("2025-02-14", *LANDED) | at("2025-02-15", *NEW_DAY), ONLINE],
    # Week 2025-02-10 has ended, but the examples of its last day (the 16th) land tomorrow.
    "2025-02-17": [at("2025-02-15", *LANDED) | at("2025-02-16", *NEW_DAY), ONLINE],
    # The 17th waits for its training week, trained once the 16th's examples are in; the
    # decision history follows (prod only proposes: the approved champion stays in force), then
    # the week's drift reference and the 17th's drift report.
    "2025-02-18": [
        at("2025-02-16", *LANDED) | at("2025-02-17", *BEFORE_CHAMPION),
        at(WEEK, *TRAINING) | ONLINE,
        at(None, "champion_history") | at("2025-02-17", "predictions"),
        at(WEEK, "drift_reference"),
        at("2025-02-17", "drift_report"),
    ],
    "2025-02-19": [at("2025-02-17", *LANDED) | at("2025-02-18", *NEW_DAY), ONLINE],
    # The storm day's features fail their null share check: its run stores them but stops
    # before predictions and drift, and the online store is not refreshed from them.
    "2025-02-20": [at("2025-02-18", *LANDED) | at(STORM, *NEW_DAY)],
    # The storm day's outcomes land: no labeled examples, no business metrics for it.
    "2025-02-21": [
        at(STORM, "raw_outcomes", "outcome_stats") | at("2025-02-20", *NEW_DAY),
        ONLINE,
    ],
    "2025-02-22": [at("2025-02-20", *LANDED) | at("2025-02-21", *NEW_DAY), ONLINE],
    "2025-02-23": [at("2025-02-21", *LANDED) | at("2025-02-22", *NEW_DAY), ONLINE],
}


def small_training() -> dict:
    return {**default_spec_dict()["training"], "train_days": 14, "holdout_days": 5}


def null_storm(day: str) -> dict:
    return {"kind": "null_storm", "date": day, "column": "audience_k", "share": 0.6}


def build_history(pipeline: Pipeline, last_day: date) -> None:
    """The state the automation leaves by the morning after ``last_day``: daily assets up to
    it (outcomes up to two days before), the latest training week and its approval,
    predictions, drift reports,
    serving logs and business metrics of the days that champion is in force."""
    defs, instance, settings = pipeline.definitions(), pipeline.instance, pipeline.settings
    start = pipeline.spec.start_date
    summary = pipeline.run_days(day_range(start, (last_day - start).days + 1))
    weeks = runner.training_partitions(start, settings.today())
    assert weeks[-1] == "2025-02-03", weeks
    runner.run_training(defs, instance, weeks[-1:], summary=summary)
    # Prod only proposes: an approver makes the proposal champion on the morning of its
    # cut-off, as `mlops-assets promote --training-date` does.
    history = pipeline.warehouse.read("champion_history")
    proposed, cutoff = history["proposed_version"][-1], history["effective_from"][-1]
    release = {"action": "promote", "version": proposed, "approved_by": "ana", "reason": "test"}
    as_of = pipeline.env["MLOPS_AS_OF"]
    pipeline.set_var("MLOPS_AS_OF", f"{cutoff}T06:00")
    runner.run_decisions(pipeline.definitions(), instance, summary=summary, release=release)
    pipeline.set_var("MLOPS_AS_OF", as_of)
    first_served = runner.first_champion_day(settings)
    served = day_range(first_served, (last_day - first_served).days + 1)
    runner.run_scoring(defs, instance, served, summary=summary)
    runner.run_metrics(defs, instance, settings, served, summary=summary)
    # run_metrics skips days whose actuals have not landed; their serving log is due anyway.
    summary.add(pipeline.materialize(last_day, ["serving_log"]), "serving_log")
    assert summary.failed_runs == [], summary.failed_runs


def test_nine_mornings_of_prod_request_exactly_what_is_due(make_pipeline) -> None:
    pipeline = make_pipeline(
        as_of=(T0 - timedelta(days=1)).isoformat(),
        airings_per_day=AIRINGS_PER_DAY,
        training=small_training(),
        incidents=[null_storm(STORM)],
    )
    pipeline.set_env("prod")
    build_history(pipeline, (T0 - timedelta(days=2)).date())
    clock = AutomationClock(pipeline)

    # The first evaluation only sets the cursor: a settled pipeline has nothing to do.
    assert clock.tick(T0 - timedelta(days=1)) == []

    storm_runs = []
    for t in range(9):
        morning = T0 + timedelta(days=t)
        evaluations = clock.tick(morning)
        requested = [e.requested for e in evaluations]
        expected = EXPECTED[morning.date().isoformat()]
        assert requested == expected, (morning, show(requested), show(expected))
        failed = [f for e in evaluations for f in e.failed_runs()]
        if morning.date() == STORM_MORNING:
            storm_runs = [r for e in evaluations for r in e.runs if not r.success]
            assert len(failed) == 1 and failed[0].startswith(STORM), failed
        else:
            assert failed == [], (morning, failed)
        if morning.date() > STORM_MORNING:
            storm_day = {a for e in evaluations for a, p in e.requested if p == STORM}
            assert not storm_day & set(DOWNSTREAM_OF_FEATURES), (morning, storm_day)

    assert clock.requested_again == []

    # The storm day failed its null share check with ERROR severity; its features are stored
    # (the evidence), but nothing downstream of them was built, unlike the days around it.
    (storm_run,) = storm_runs
    null_share = {e.check_name: e for e in storm_run.get_asset_check_evaluations()}[NULL_SHARE]
    assert not null_share.passed
    assert null_share.severity == dg.AssetCheckSeverity.ERROR
    instance = pipeline.instance
    assert STORM in instance.get_materialized_partitions(dg.AssetKey("features"))
    for asset in ("labeled_examples", "predictions"):
        built = instance.get_materialized_partitions(dg.AssetKey(asset))
        assert STORM not in built, asset
        assert {"2025-02-18", "2025-02-20"} <= built, asset


@pytest.mark.parametrize(
    ("env", "holds_back"),
    [("dev", False), ("prod", True)],
)
def test_null_storm_holds_back_its_day_only_where_the_rule_is_an_error(
    make_pipeline, env: str, holds_back: bool
) -> None:
    storm = "2025-01-06"
    pipeline = make_pipeline(
        as_of="2025-01-06T06:00", airings_per_day=AIRINGS_PER_DAY, incidents=[null_storm(storm)]
    )
    pipeline.set_env(env)
    summary = pipeline.run_days(day_range(date(2025, 1, 1), 5))
    assert summary.failed_runs == []
    clock = AutomationClock(pipeline)
    assert clock.tick(datetime(2025, 1, 6, 6)) == []

    # No champion yet, so no predictions: the storm day's features reach the online store and
    # its labeled examples, unless the null share rule is an error (prod).
    storm_day = [
        at("2025-01-05", "raw_outcomes", "outcome_stats", "labeled_examples")
        | at(storm, "raw_events", "data_profile", "features", "serving_log"),
        *([] if holds_back else [ONLINE]),
    ]
    landing_day = [
        at(storm, "raw_outcomes", "outcome_stats", *([] if holds_back else ["labeled_examples"]))
        | at("2025-01-07", "raw_events", "data_profile", "features", "serving_log"),
        ONLINE,
    ]
    mornings = {datetime(2025, 1, 7, 6): storm_day, datetime(2025, 1, 8, 6): landing_day}
    for morning, expected in mornings.items():
        requested = [e.requested for e in clock.tick(morning)]
        assert requested == expected, (morning, show(requested), show(expected))
    assert clock.requested_again == []
    built = pipeline.instance.get_materialized_partitions(dg.AssetKey("labeled_examples"))
    assert (storm in built) is not holds_back
