"""The first champion on the embedded (simulated) data: the whole training job of the first
partition makes a LightGBM candidate champion: the training date proposes it (its row of the
champion table beats the best baseline's holdout WAPE by the spec's margin), the decision history
records it as the first champion, and the registry's `champion` and
dev stage alias `larva` point at its version, which carries the model card. The champion's
drift reference is built in the same run."""

from __future__ import annotations

from datetime import date

import polars as pl

from mlops_assets_tests.deployment.scenario import (
    BASELINES,
    CANDIDATES,
    CHAMPION,
    CUTOFF,
    DRIFT_REFERENCE,
    HISTORY,
    MODEL_NAME,
    MODELS,
    P1,
    Step,
    World,
    board,
)
from mlops_assets_tests.helpers import failure_messages

BASELINE_MARGIN = 0.05  # training.baseline_margin of the default spec


def test_a_lightgbm_candidate_becomes_the_first_champion(first_champion: Step, world: World):
    assert first_champion.result.success, failure_messages(first_champion.result)
    rows = board(world.read("champion"), P1)
    assert sorted(rows["candidate"].to_list()) == sorted(CANDIDATES)
    champion = rows.filter(pl.col("proposed"))
    assert champion.height == 1, rows
    card = champion.row(0, named=True)
    assert card["candidate"] in MODELS
    assert card["role"] == "model"
    assert first_champion.decision()["action"] == "first"
    version = card["model_version"]

    assert first_champion.aliases_before == {"champion": None, "larva": None}
    assert first_champion.aliases_after == {"champion": version, "larva": version}
    registered = world.client().get_model_version(MODEL_NAME, version)
    assert registered.tags["candidate"] == card["candidate"]
    assert registered.description.startswith(f"# Model card: tv_ad_response, training date {P1}")


def test_the_champion_beats_the_best_baseline_on_the_holdout(world: World, first_champion: Step):
    rows = board(world.read("champion"), P1)
    baselines = rows.filter(pl.col("role") == "baseline")
    assert sorted(baselines["candidate"].to_list()) == sorted(BASELINES)
    best_baseline = baselines["wape"].min()
    champion_wape = rows.filter(pl.col("proposed"))["wape"].item()
    assert champion_wape < best_baseline * (1 - BASELINE_MARGIN), rows

    decision = first_champion.decision()
    assert decision["action"] == "first"
    assert decision["from_version"] is None
    assert decision["to_version"] == first_champion.aliases_after["champion"]
    assert decision["effective_from"] == CUTOFF[P1]
    assert decision["chosen_score"] == champion_wape
    assert decision["best_baseline_score"] == best_baseline
    assert decision["baseline_topped"] is False

    checks = first_champion.checks()
    assert {name: e.passed for name, e in checks.items()} == {
        "baseline_never_champion": True,
        "champion_beats_baselines": True,
        "champion_serves": True,
        "one_decision_per_training_date": True,
        "champion_in_force_never_baseline": True,
        "no_regression_vs_incumbent": True,
        "segment_guardrail": True,
        "business_benchmark": True,
        "serving_budget": True,
        "target_leak": True,
    }
    # The first champion passed every gate it met; the incumbent-relative ones had none to
    # compare with.
    verdicts = {
        n: checks[n].metadata["verdict"].value for n in ("segment_guardrail", "target_leak")
    }
    assert verdicts == {"segment_guardrail": "n/a", "target_leak": "pass"}
    assert first_champion.metadata(CHAMPION)["proposal"].value == decision["to_version"]
    meta = first_champion.metadata(HISTORY)
    assert meta["aliases_moved"].value is True
    assert meta["champion_in_force"].value == decision["to_version"]


def test_the_drift_reference_is_the_new_champions(world: World, first_champion: Step):
    assert DRIFT_REFERENCE in first_champion.materialized()
    version = first_champion.aliases_after["champion"]
    reference = world.read("drift_reference").filter(
        pl.col("training_date") == date.fromisoformat(P1)
    )
    assert reference.height > 0
    assert reference["model_version"].unique().to_list() == [version]
    assert reference["prediction"].is_finite().all()
