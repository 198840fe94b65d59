"""What the Dagster instance recorded about a champion decision, for promotion across
environments (:mod:`mlops_assets.ml.release` takes the result and stays free of Dagster)."""

from __future__ import annotations

from mlops_assets.environments import GATE_NAMES, Settings
from mlops_assets.ml.promotion import HISTORY_TABLE, TRAINING, PromotionError


def champion_checks(settings: Settings) -> tuple[str, dict[str, bool]]:
    """An environment's latest training decision (its training date) and the results of the
    checks that vouch for it: the decision history's, from its latest materialization, and the
    champion evaluation's, from the run that evaluated that date."""
    import dagster as dg
    import polars as pl

    from mlops_assets.storage.warehouse import Warehouse

    history = Warehouse.for_settings(settings).read(HISTORY_TABLE)
    decisions = history.filter(pl.col("kind") == TRAINING) if history.width else history
    if decisions.is_empty():
        raise PromotionError(f"{settings.env} has no champion decision: cannot verify its checks")
    training_date = str(decisions.sort("seq")["training_date"][-1])
    home = settings.dagster_home
    if not (home / "dagster.yaml").exists():
        raise PromotionError(f"{settings.env} Dagster instance not found at {home}")
    checks: dict[str, bool] = {}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for key, partition in (("champion_history", None), ("champion", training_date)):
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(
                    asset_key=dg.AssetKey(key),
                    asset_partitions=[partition] if partition else None,
                ),
                limit=1,
            ).records
            if not records:
                continue
            for record in instance.all_logs(
                records[0].run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
            ):
                event = record.dagster_event
                evaluation = event.event_specific_data if event is not None else None
                if not isinstance(evaluation, dg.AssetCheckEvaluation):
                    continue
                # A promotion gate that only warns in the source environment does not block.
                warned = (
                    evaluation.check_name in GATE_NAMES
                    and evaluation.severity == dg.AssetCheckSeverity.WARN
                )
                if evaluation.asset_key == dg.AssetKey(key):
                    checks[evaluation.check_name] = bool(evaluation.passed) or warned
    if not checks:
        raise PromotionError(f"the runs of {settings.env}'s champion decision reported no checks")
    return training_date, checks
