"""No signal, no promotion: after the first partitions made a champion, the days of the next
partition come from a CSV dataset with the same columns whose target is Poisson noise drawn
independently of every feature. A baseline then tops the leaderboard: the champion step's
`baseline_never_champion` check fails (an ERROR check, which alerts), nothing is proposed, the
decision history keeps the incumbent and says why, the incumbent keeps both aliases, and the
training date's drift reference is the incumbent's."""

from __future__ import annotations

from datetime import date

import polars as pl

from mlops_assets_tests.deployment.scenario import (
    BASELINES,
    CHAMPION,
    DRIFT_REFERENCE,
    MODELS,
    NOISE_DAYS,
    NOISE_MEAN_VISITS,
    P3,
    NoSignal,
    Rerun,
    World,
)
from mlops_assets_tests.helpers import failure_messages


def test_the_partition_was_trained_on_the_noise_dataset(no_signal: NoSignal, world: World):
    labeled = world.read("labeled_examples").filter(
        pl.col("air_date").is_between(NOISE_DAYS[0], NOISE_DAYS[-1])
    )
    assert labeled["air_date"].n_unique() == len(NOISE_DAYS)
    assert labeled["visits"].sum() == pl.read_csv(no_signal.csv)["visits"].sum()
    assert abs(labeled["visits"].mean() - NOISE_MEAN_VISITS) < 0.5
    assert set(no_signal.step.materialized()) >= {CHAMPION}
    windows = no_signal.board.select("train_start", "holdout_end").unique().rows()
    assert windows == [(NOISE_DAYS[0].isoformat(), NOISE_DAYS[-1].isoformat())]


def test_a_baseline_tops_the_leaderboard(no_signal: NoSignal):
    ranked = no_signal.board.sort("wape")
    assert ranked["role"][0] == "baseline", ranked
    best_baseline = ranked.filter(pl.col("role") == "baseline")["wape"].min()
    for model in ranked.filter(pl.col("role") == "model").iter_rows(named=True):
        assert model["candidate"] in MODELS
        assert model["wape"] > best_baseline
    assert not ranked["proposed"].any()

    check = no_signal.step.checks()["baseline_never_champion"]
    assert check.passed is False
    assert check.severity.value == "ERROR"
    assert ranked["candidate"][0] in BASELINES
    top = ranked["candidate"][0]
    assert check.metadata["observed"].value == f"{top} (baseline) tops the leaderboard"


def test_the_drift_reference_stays_the_incumbents(no_signal: NoSignal):
    result = no_signal.step.result
    assert result.success, failure_messages(result)
    assert DRIFT_REFERENCE in no_signal.step.materialized()
    references = no_signal.drift_reference
    mine = references.filter(pl.col("training_date") == date.fromisoformat(P3))
    assert mine["model_version"].unique().to_list() == [no_signal.before["champion"]]
    assert references["training_date"].n_unique() > 1  # earlier partitions have theirs


def test_the_incumbent_keeps_both_aliases_and_history_says_why(no_signal: NoSignal, rerun: Rerun):
    incumbent = rerun.step.aliases_after["champion"]
    assert incumbent is not None
    both = {"champion": incumbent, "larva": incumbent}
    assert no_signal.before == both
    assert no_signal.step.aliases_before == both
    assert no_signal.step.aliases_after == both

    row = no_signal.step.decision()
    assert row["action"] == "keep"
    assert row["baseline_topped"] is True
    assert row["from_version"] == row["to_version"] == incumbent
    top = no_signal.board.sort("wape")["candidate"][0]
    assert row["reason"].startswith(f"baseline {top} tops the leaderboard")
    assert f"keeping {row['candidate']} (v{incumbent})" in row["reason"]
    assert f"(v{incumbent})" in row["reason"]
    assert row["incumbent_score"] > row["best_baseline_score"]
