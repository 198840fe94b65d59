"""Feature refresh: point-in-time history statistics, model-ready features, labeled examples
and the online store."""

from datetime import timedelta

import dagster as dg

from mlops_assets.defs.catalog import features_lineage, schema_metadata
from mlops_assets.defs.common import (
    SINGLE_RUN,
    WAREHOUSE_POOL,
    Frame,
    Project,
    after_blocking_checks,
    after_latest_blocking_checks,
    code_version,
    eager_within,
    partition_days,
    project,
    table_metadata,
)
from mlops_assets.defs.feature_refresh.checks import evaluate_feature_checks, feature_check_specs
from mlops_assets.defs.resources import WarehouseResource

OWNERS = ["team:data-science", "team:data-engineering"]


def build_assets(p: Project) -> list[dg.AssetsDefinition]:
    spec = p.spec
    lookback = spec.history_lookback_days
    history_window = dg.TimeWindowPartitionMapping(
        start_offset=-lookback, end_offset=-(spec.label_lag_days + 1)
    )

    @dg.asset(
        name="outcome_stats",
        group_name="feature_refresh",
        automation_condition=eager_within(spec.label_lag_days + 7),
        partitions_def=p.daily,
        backfill_policy=SINGLE_RUN,
        pool=WAREHOUSE_POOL,
        owners=OWNERS,
        kinds={"duckdb", "polars"},
        code_version=code_version("mlops_assets.ml.features"),
        metadata=table_metadata("day", **schema_metadata(spec, "outcome_stats")),
        ins={"raw_events": dg.AssetIn(), "raw_outcomes": dg.AssetIn()},
        description=p.words(
            "For each day whose {outcome} have landed: how many {events} and how many {outcome} "
            "per network, daypart or other history key. The history that features look back on."
        ),
    )
    def outcome_stats(raw_events: Frame, raw_outcomes: Frame) -> Frame:
        from mlops_assets.ml import features as F

        try:
            return F.outcome_stats(spec, raw_events, raw_outcomes)
        except F.DataContractError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc

    @dg.asset(
        name="features",
        group_name="feature_refresh",
        automation_condition=eager_within(2),
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=timedelta(hours=48), warn_window=timedelta(hours=30)
        ),
        partitions_def=p.daily,
        backfill_policy=SINGLE_RUN,
        pool=WAREHOUSE_POOL,
        owners=OWNERS,
        kinds={"duckdb", "polars"},
        code_version=code_version("mlops_assets.ml.features"),
        metadata=table_metadata(spec.date_column, **schema_metadata(spec, "features")),
        ins={
            "raw_events": dg.AssetIn(),
            "outcome_stats": dg.AssetIn(partition_mapping=history_window),
        },
        check_specs=feature_check_specs(p),
        description=p.words(
            "Model-ready rows, one per {event} of the day: its attributes plus the average "
            "{outcome} per key over the previous {history_days} days whose {outcome} had landed "
            "before the day began (no peeking at the future). Used for training and for batch "
            "predictions."
        ),
    )
    def features(context: dg.AssetExecutionContext, raw_events: Frame, outcome_stats: Frame):
        from mlops_assets.ml import features as F

        frame = F.build_features_for_days(spec, partition_days(context), raw_events, outcome_stats)
        through = frame[F.HISTORY_THROUGH].max()
        yield dg.Output(
            frame,
            metadata={
                "history_through": str(through or "no history yet"),
                "dagster/column_lineage": features_lineage(spec),
            },
        )
        yield from evaluate_feature_checks(p, frame)

    @dg.asset(
        name="labeled_examples",
        group_name="feature_refresh",
        automation_condition=after_blocking_checks(eager_within(spec.label_lag_days + 7)),
        partitions_def=p.daily,
        backfill_policy=SINGLE_RUN,
        pool=WAREHOUSE_POOL,
        owners=OWNERS,
        kinds={"duckdb", "polars"},
        code_version=code_version("mlops_assets.ml.features"),
        metadata=table_metadata(spec.date_column, **schema_metadata(spec, "labeled_examples")),
        ins={"features": dg.AssetIn(), "raw_outcomes": dg.AssetIn()},
        description=p.words(
            "The features of a day joined with the {outcome} observed for it: what models learn "
            "from and are scored on. Filled once the day's {outcome} land ({lag} days later)."
        ),
    )
    def labeled_examples(features: Frame, raw_outcomes: Frame) -> Frame:
        from mlops_assets.ml import features as F

        return F.label_examples(spec, features, raw_outcomes)

    @dg.asset(
        name="online_features",
        group_name="feature_refresh",
        automation_condition=after_latest_blocking_checks(dg.AutomationCondition.eager()),
        pool=WAREHOUSE_POOL,
        owners=OWNERS,
        kinds={"duckdb", "polars", "parquet"},
        code_version=code_version("mlops_assets.ml.features", "mlops_assets.storage.online_store"),
        deps=["features"],
        metadata=schema_metadata(spec, "online_features"),
        description=p.words(
            "The latest feature vector for each serving key, published to the online store the "
            "prediction endpoint reads. Refreshed after each day's features."
        ),
    )
    def online_features(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> Frame:
        from mlops_assets.ml import features as F
        from mlops_assets.storage import online_store

        wh = warehouse.get()
        latest = wh.query(f'SELECT max("{spec.date_column}") AS d FROM "{wh.schema}"."features"')[
            "d"
        ][0]
        if latest is None:
            raise dg.Failure(description="features has no rows yet: nothing to publish")
        recent = wh.read(
            "features", spec.date_column, latest - timedelta(days=6), latest + timedelta(days=1)
        )
        frame = F.latest_per_serving_key(spec, recent)
        path = online_store.publish(frame, p.settings.online_store_path)
        context.add_output_metadata(
            {
                "serving_keys": len(frame),
                "features_through": str(latest),
                "online_store": dg.MetadataValue.path(str(path)),
            }
        )
        return frame

    return [outcome_stats, features, labeled_examples, online_features]


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=build_assets(project()))
