"""Dry run: the champion step launched with `dry_run: true` decides, loads the would-be champion
in a fresh process and records the decision (`dry_run_promote` in the champion history and the
materialization metadata), but moves neither alias; the real run that follows promotes exactly
the model the dry run named."""

from __future__ import annotations

from mlops_assets_tests.deployment.scenario import CHAMPION, CUTOFF, P2, DryRun, Step
from mlops_assets_tests.helpers import failure_messages


def test_a_dry_run_records_the_decision_and_moves_no_alias(dry_run: DryRun, first_champion: Step):
    assert dry_run.candidates.result.success, failure_messages(dry_run.candidates.result)
    step = dry_run.champion
    incumbent = first_champion.aliases_after["champion"]
    assert incumbent is not None
    assert step.aliases_before == {"champion": incumbent, "larva": incumbent}
    assert step.aliases_after == {"champion": incumbent, "larva": incumbent}

    row = step.decision()
    assert row["dry_run"] is True
    assert row["action"] == "dry_run_promote"
    assert row["from_version"] == incumbent
    assert row["to_version"] == incumbent
    assert row["effective_from"] == CUTOFF[P2]

    meta = step.metadata(CHAMPION)
    assert meta["dry_run"].value is True
    assert meta["aliases_moved"].value is False
    assert meta["action"].value == "dry_run_promote"
    assert step.checks()["champion_serves"].passed is True


def test_the_real_run_promotes_what_the_dry_run_showed(dry_run: DryRun, promoted: Step):
    assert promoted.result.success, failure_messages(promoted.result)
    shown = dry_run.champion.metadata(CHAMPION)["champion"].value
    row = promoted.decision()
    assert row["action"] == "promote"
    assert row["dry_run"] is False
    assert shown == f"{row['candidate']} v{row['to_version']}"
    assert promoted.aliases_after == {"champion": row["to_version"], "larva": row["to_version"]}
    assert promoted.aliases_before == dry_run.champion.aliases_after
