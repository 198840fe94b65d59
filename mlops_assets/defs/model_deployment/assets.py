"""Model deployment: the leaderboard of a training date, the promotion decision and the champion
record; promotion moves the registry aliases `champion` and the environment's stage alias."""

from datetime import timedelta

import dagster as dg

from mlops_assets.defs.catalog import schema_metadata
from mlops_assets.defs.common import (
    CODE_VERSION,
    WAREHOUSE_POOL,
    Frame,
    Project,
    project,
    table_metadata,
)
from mlops_assets.defs.model_deployment.checks import champion_check_results, champion_check_specs
from mlops_assets.defs.model_training.assets import TRAINING_DATE, training_cutoff
from mlops_assets.defs.resources import MlflowResource, WarehouseResource
from mlops_assets.ml.candidates import CANDIDATES

OWNERS = ["team:ml-engineering"]


class ChampionConfig(dg.Config):
    """Launch-time settings of the champion step."""

    dry_run: bool = False


def build_assets(p: Project) -> list[dg.AssetsDefinition]:
    spec, settings = p.spec, p.settings

    @dg.asset(
        name="champion",
        group_name="model_deployment",
        automation_condition=dg.AutomationCondition.eager(),
        partitions_def=p.training,
        pool=WAREHOUSE_POOL,
        owners=OWNERS,
        kinds={"mlflow", "duckdb"},
        code_version=CODE_VERSION,
        metadata=table_metadata(TRAINING_DATE, **schema_metadata(spec, "champion")),
        ins={c.asset_name: dg.AssetIn() for c in CANDIDATES},
        deps=["labeled_examples"],
        check_specs=champion_check_specs(p),
        description=p.words(
            "Which model predicts {outcome} from now on. The leaderboard of every candidate of "
            "the training date plus the current champion re-scored on the same holdout, the "
            "promotion decision and why. A baseline never becomes champion. Promotion moves "
            f"the registry aliases `champion` and `{settings.stage_alias}`; the model card is "
            "in the metadata and on the model version."
        ),
    )
    def champion(
        context: dg.AssetExecutionContext,
        config: ChampionConfig,
        mlflow: MlflowResource,
        warehouse: WarehouseResource,
        **cards: Frame,
    ):
        import polars as pl

        from mlops_assets.ml import promotion, training

        mlflow.experiment_id()
        cutoff = training_cutoff(context)
        windows = training.training_windows(spec, cutoff)
        wh = warehouse.get()
        holdout = wh.read(
            "labeled_examples",
            spec.date_column,
            windows.holdout_start,
            windows.holdout_end + timedelta(days=1),
        )
        board = pl.concat([cards[c.asset_name] for c in CANDIDATES], how="diagonal_relaxed")
        outcome = promotion.promote(
            spec=spec,
            registry=promotion.Registry(
                mlflow.tracking_uri, mlflow.registered_model, settings.stage_alias
            ),
            cards=board,
            holdout=holdout,
            training_date=context.partition_key,
            effective_from=cutoff,
            promotion_margin=settings.thresholds.promotion_margin,
            dry_run=config.dry_run,
            dagster_run_id=context.run_id,
        )
        wh.append(promotion.HISTORY_TABLE, promotion.history_frame(outcome.history_row))
        champion_version = outcome.champion_version
        value = board.with_columns(
            pl.lit(outcome.history_row["action"]).alias("decision"),
            (pl.col("model_version") == champion_version).alias("is_champion"),
            pl.lit(champion_version, dtype=pl.String).alias("champion_version"),
        )
        yield dg.Output(
            value,
            metadata={
                **outcome.decision.metadata(),
                "action": outcome.history_row["action"],
                "champion_version": champion_version or "none",
                "aliases_moved": outcome.aliases_moved,
                "dry_run": outcome.dry_run,
                "model_card": dg.MetadataValue.md(outcome.model_card),
            },
        )
        yield from champion_check_results(p, outcome)

    return [champion]


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=build_assets(project()))
