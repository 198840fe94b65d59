"""Feature refresh: point-in-time history statistics, model-ready features, labeled examples
and the online store."""

from datetime import timedelta

import dagster as dg

from mlops_assets.defs.catalog import features_lineage
from mlops_assets.defs.common import (
    Frame,
    Project,
    Stage,
    after_blocking_checks,
    after_latest_blocking_checks,
    eager_within,
    partition_days,
    project,
)
from mlops_assets.defs.feature_refresh.checks import evaluate_feature_checks, feature_check_specs
from mlops_assets.defs.resources import WarehouseResource

GROUP = "feature_refresh"
OWNERS = ["team:data-science", "team:data-engineering"]


def build_assets(p: Project) -> list[dg.AssetsDefinition]:
    spec = p.spec
    lookback = spec.history_lookback_days
    history_window = dg.TimeWindowPartitionMapping(
        start_offset=-lookback, end_offset=-(spec.label_lag_days + 1)
    )

    @Stage(p, GROUP, OWNERS).asset(
        "outcome_stats",
        partitions="daily",
        code=("mlops_assets.ml.features",),
        partition_column="day",
        automation_condition=eager_within(spec.label_lag_days + 7),
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

    @Stage(p, GROUP, OWNERS).asset(
        "features",
        partitions="daily",
        code=("mlops_assets.ml.features",),
        automation_condition=eager_within(2),
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=timedelta(hours=48), warn_window=timedelta(hours=30)
        ),
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

    @Stage(p, GROUP, OWNERS).asset(
        "labeled_examples",
        partitions="daily",
        code=("mlops_assets.ml.features",),
        automation_condition=after_blocking_checks(eager_within(spec.label_lag_days + 7)),
        ins={"features": dg.AssetIn(), "raw_outcomes": dg.AssetIn()},
        description=p.words(
            "The features of a day joined with the {outcome} observed for it: what models learn "
            "from and are scored on. Filled once the day's {outcome} land ({lag} days later)."
        ),
    )
    def labeled_examples(features: Frame, raw_outcomes: Frame) -> Frame:
        from mlops_assets.ml import features as F

        return F.label_examples(spec, features, raw_outcomes)

    @Stage(p, GROUP, OWNERS).asset(
        "online_features",
        code=("mlops_assets.ml.features", "mlops_assets.storage.online_store"),
        kinds={"duckdb", "polars", "parquet"},
        automation_condition=after_latest_blocking_checks(dg.AutomationCondition.eager()),
        deps=["features"],
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
