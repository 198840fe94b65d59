"""A launch that asks a training-date asset for a daily partition, as the UI's "Materialize all"
on one day does when the selection holds daily and training assets together: every candidate and
the champion refuse before training, logging or registering anything (no new MLflow version, no
stored model card), and the failure names the training date whose week holds the day."""

from __future__ import annotations

import dagster as dg

from mlops_assets_tests.deployment.scenario import CANDIDATE_KEYS, P1, World
from mlops_assets_tests.helpers import failure_messages

DAY_IN_P1 = "2025-01-22"  # a Wednesday of P1's week (training dates start on Mondays)


def test_a_daily_partition_of_a_training_asset_is_refused_before_any_side_effect(
    world: World,
) -> None:
    world.bind()
    defs = world.pipeline.definitions()
    job = defs.resolve_implicit_global_asset_job_def()
    versions = world.version_count()
    cards = world.read("candidate_global_mean") if versions else None

    result = job.execute_in_process(
        instance=world.instance,
        asset_selection=[*CANDIDATE_KEYS, dg.AssetKey("champion")],
        tags={"dagster/partition": DAY_IN_P1},
        raise_on_error=False,
    )

    assert not result.success
    failed = {e.step_key for e in result.all_events if e.is_step_failure}
    assert failed == {k.to_python_identifier() for k in CANDIDATE_KEYS}, failed
    messages = failure_messages(result)
    assert f"asked for {DAY_IN_P1}" in messages, messages
    assert f"for training date {P1}" in messages, messages
    assert "Nothing was trained or logged" in messages
    assert world.version_count() == versions
    assert result.get_asset_materialization_events() == []
    if cards is not None:
        assert world.read("candidate_global_mean").equals(cards)
