"""A corrupted model artifact never reaches an alias: after the training job ran with only the
candidate assets selected, the LightGBM versions' `model.txt` files in the artifact store are
overwritten with garbage; the champion step then fails `champion_serves` (loading the chosen
version in a fresh process), no alias moves (there was no champion yet, so none is set), and the
decision history records `keep_not_serving` with the loader's error."""

from __future__ import annotations

from mlops_assets_tests.deployment.scenario import (
    CANDIDATE_KEYS,
    CHAMPION,
    DECISIONS,
    HISTORY,
    MODELS,
    Corruption,
)
from mlops_assets_tests.helpers import failure_messages


def test_the_candidate_run_trained_only_the_candidates(corruption: Corruption):
    step = corruption.candidates
    assert step.result.success, failure_messages(step.result)
    assert set(step.materialized()) == set(CANDIDATE_KEYS)
    assert step.result.get_asset_check_evaluations() == []
    assert step.history.is_empty()
    assert step.aliases_after == {"champion": None, "larva": None}


def test_the_overwritten_files_are_the_lightgbm_boosters(corruption: Corruption):
    assert len(corruption.files) == len(MODELS)
    for path in corruption.files.values():
        assert path.name == "model.txt"
        assert path.parent.name == "tabular_model"
        assert path.parent.parent.name == "artifacts"
        # Put back after the champion step: a LightGBM text model again.
        assert path.read_text().startswith("tree\n")


def test_a_corrupted_artifact_fails_champion_serves_and_moves_no_alias(corruption: Corruption):
    step = corruption.champion
    assert set(step.materialized()) == {CHAMPION, *DECISIONS}
    # champion_serves fails (an ERROR check: it alerts) and the decision history, which runs
    # after it, keeps the incumbent (none yet).
    assert step.result.success, failure_messages(step.result)

    checks = step.checks()
    serves = checks["champion_serves"]
    assert serves.passed is False
    assert serves.metadata["version"].value in corruption.files
    detail = serves.metadata["detail"].value
    assert "cannot read LightGBM model" in detail
    assert "model.txt" in detail
    # The promotion rule itself was satisfied: a model, not a baseline, was chosen.
    assert checks["baseline_never_champion"].passed is True

    assert step.aliases_before == {"champion": None, "larva": None}
    assert step.aliases_after == {"champion": None, "larva": None}

    row = step.decision()
    assert row["action"] == "keep_not_serving"
    assert row["proposed_candidate"] in MODELS
    assert row["from_version"] is None
    assert row["to_version"] is None
    assert "not serving" in row["reason"]
    assert "cannot read LightGBM model" in row["reason"]

    assert step.metadata(CHAMPION)["proposal"].value == "none"
    meta = step.metadata(HISTORY)
    assert meta["aliases_moved"].value is False
    assert meta["champion_in_force"].value == "none"
