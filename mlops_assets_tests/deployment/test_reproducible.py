"""Re-materializing a training partition is reproducible: the candidates retrained from the same
rows score exactly the same on every metric and resolve to the same MLflow runs and registered
versions (no duplicate versions), the leaderboard in the champion table is unchanged, the
date's decision is re-derived the same (replaced, not appended) and the champion stays where it
was."""

from __future__ import annotations

import polars as pl

from mlops_assets_tests.deployment.scenario import CANDIDATE_KEYS, METRICS, Corruption, Rerun, Step
from mlops_assets_tests.helpers import failure_messages

LEADERBOARD = ["candidate", "role", "model_version", "run_id", *METRICS, "train_rows"]


def candidate_metadata(step: Step) -> dict[str, dict[str, object]]:
    return {
        key.to_user_string(): {
            name: step.metadata(key)[name].value for name in (*METRICS, "model_version")
        }
        for key in CANDIDATE_KEYS
    }


def test_candidates_retrained_in_a_second_run_match_the_first(
    corruption: Corruption, first_champion: Step
):
    first, second = corruption.candidates, first_champion
    assert second.result.success, failure_messages(second.result)
    assert first.run_id != second.run_id
    assert candidate_metadata(second) == candidate_metadata(first)
    for key in CANDIDATE_KEYS:
        assert first.metadata(key)["reused_logged_run"].value is False
        assert second.metadata(key)["reused_logged_run"].value is True


def test_rematerializing_a_partition_keeps_the_leaderboard_and_versions(rerun: Rerun):
    assert rerun.step.result.success, failure_messages(rerun.step.result)
    assert rerun.board_before.height == len(CANDIDATE_KEYS)
    before = rerun.board_before.select(LEADERBOARD)
    after = rerun.board_after.select(LEADERBOARD)
    assert after.equals(before), pl.concat([before, after])
    assert rerun.versions_after == rerun.versions_before
    for key in CANDIDATE_KEYS:
        assert rerun.step.metadata(key)["reused_logged_run"].value is True


def test_rematerializing_a_partition_replaces_its_decision_with_the_same_one(
    rerun: Rerun, promoted: Step
):
    # The re-run is judged against the champion in force at its cut-off (the first one), not
    # against the champion it made itself: the same decision, replaced rather than appended.
    champion = promoted.aliases_after["champion"]
    assert rerun.step.aliases_before == rerun.step.aliases_after
    assert rerun.step.aliases_after == {"champion": champion, "larva": champion}
    row = rerun.step.decision()
    first = promoted.decision()
    assert row["action"] == first["action"] == "promote"
    assert (row["from_version"], row["to_version"]) == (first["from_version"], champion)
    assert row["reason"] == first["reason"]
    champion_rows = rerun.board_after.filter(pl.col("proposed"))
    assert champion_rows["model_version"].to_list() == [champion]
