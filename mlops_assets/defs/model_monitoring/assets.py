"""Model monitoring: the reference each champion is watched against."""

from datetime import date, datetime, timedelta

import dagster as dg
import polars as pl

from mlops_assets.defs.common import (
    CODE_VERSION,
    WAREHOUSE_POOL,
    Project,
    after_blocking_checks,
    project,
    table_metadata,
)
from mlops_assets.defs.model_training.assets import TRAINING_DATE
from mlops_assets.defs.resources import MlflowResource, WarehouseResource

OWNERS = ["team:ml-engineering"]
REFERENCE_ROWS = 5_000
SEED = 11


def build_assets(p: Project) -> list[dg.AssetsDefinition]:
    spec = p.spec

    @dg.asset(
        name="drift_reference",
        group_name="model_monitoring",
        automation_condition=after_blocking_checks(dg.AutomationCondition.eager()),
        partitions_def=p.training,
        pool=WAREHOUSE_POOL,
        owners=OWNERS,
        kinds={"duckdb", "polars"},
        code_version=CODE_VERSION,
        metadata=table_metadata(TRAINING_DATE),
        deps=["champion", "labeled_examples"],
        description=p.words(
            "What normal looks like for the champion chosen on this training date: a bounded "
            f"sample (up to {REFERENCE_ROWS:,} rows) of its training window's features with its "
            "predictions. Daily drift reports compare each day's {events} and predictions "
            "against it. Not built when the champion's blocking checks fail."
        ),
    )
    def drift_reference(
        context: dg.AssetExecutionContext, mlflow: MlflowResource, warehouse: WarehouseResource
    ) -> pl.DataFrame:
        from mlops_assets.ml import promotion, registry
        from mlops_assets.ml.training import sample_rows

        mlflow.experiment_id()
        wh = warehouse.get()
        training_date = datetime.fromisoformat(context.partition_key).date()
        history = wh.read(promotion.HISTORY_TABLE)
        decided = history.filter(pl.col("training_date") == training_date).sort("decided_at")
        version = decided["to_version"][-1] if decided.height else None
        if version is None:
            raise dg.Failure(description=f"no champion after training date {training_date}")
        tags = registry.version_tags(mlflow.registered_model, version, mlflow.tracking_uri)
        start, end = (date.fromisoformat(d) for d in tags["train_window"].split(".."))
        window = wh.read("labeled_examples", spec.date_column, start, end + timedelta(days=1))
        sample = sample_rows(window, REFERENCE_ROWS, SEED)
        model = registry.load_model_version(mlflow.registered_model, version, mlflow.tracking_uri)
        frame = sample.select(spec.date_column, *spec.model_feature_columns).with_columns(
            pl.Series("prediction", model.predict(sample), dtype=pl.Float64),
            pl.lit(version, dtype=pl.String).alias("model_version"),
            pl.lit(training_date, dtype=pl.Date).alias(TRAINING_DATE),
        )
        context.add_output_metadata(
            {"champion_version": version, "window": tags["train_window"], "rows": frame.height}
        )
        return frame

    return [drift_reference]


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=build_assets(project()))
