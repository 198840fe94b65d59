"""Dry run: the decision history launched with `dry_run: true` re-derives every decision and
reports them (an observation with the champion it would put in force) but stores nothing and
moves neither alias; the real run that follows puts in force exactly the model the dry run
named."""

from __future__ import annotations

import dagster as dg

from mlops_assets_tests.deployment.scenario import CHAMPION, HISTORY, P2, DryRun, Step
from mlops_assets_tests.helpers import failure_messages


def _observed(step: Step) -> dict:
    observations = [
        e.event_specific_data.asset_observation
        for e in step.result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_OBSERVATION
    ]
    assert len(observations) == 1, observations
    assert observations[0].asset_key == HISTORY
    return {k: v.value for k, v in observations[0].metadata.items()}


def test_a_dry_run_reports_the_decision_and_moves_no_alias(dry_run: DryRun, first_champion: Step):
    assert dry_run.candidates.result.success, failure_messages(dry_run.candidates.result)
    step = dry_run.champion
    assert step.result.success, failure_messages(step.result)
    incumbent = first_champion.aliases_after["champion"]
    assert incumbent is not None
    assert step.aliases_before == {"champion": incumbent, "larva": incumbent}
    assert step.aliases_after == {"champion": incumbent, "larva": incumbent}
    assert HISTORY not in step.materialized()
    assert step.history.is_empty()

    seen = _observed(step)
    assert seen["dry_run"] is True
    assert seen["aliases_before"] == incumbent
    proposal = step.metadata(CHAMPION)["proposal"].value
    assert seen["champion_in_force"] == proposal != incumbent
    assert step.checks()["champion_serves"].passed is True


def test_the_real_run_promotes_what_the_dry_run_showed(dry_run: DryRun, promoted: Step):
    assert promoted.result.success, failure_messages(promoted.result)
    shown = _observed(dry_run.champion)["champion_in_force"]
    row = promoted.decision()
    assert row["action"] == "promote"
    assert row["training_date"].isoformat() == P2
    assert shown == row["to_version"]
    assert promoted.aliases_after == {"champion": row["to_version"], "larva": row["to_version"]}
    assert promoted.aliases_before == dry_run.champion.aliases_after
