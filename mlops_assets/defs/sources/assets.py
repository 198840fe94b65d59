"""Sources: each day's events and, once they land, their observed outcomes."""

import dagster as dg

from mlops_assets.defs.catalog import schema_metadata
from mlops_assets.defs.common import (
    SINGLE_RUN,
    WAREHOUSE_POOL,
    Frame,
    Project,
    code_version,
    partition_days,
    project,
    table_metadata,
    when_landed,
)

OWNERS = ["team:data-engineering"]


def build_assets(p: Project) -> list[dg.AssetsDefinition]:
    spec = p.spec

    @dg.asset(
        name="raw_events",
        group_name="sources",
        automation_condition=dg.AutomationCondition.eager(),
        partitions_def=p.daily,
        backfill_policy=SINGLE_RUN,
        pool=WAREHOUSE_POOL,
        owners=OWNERS,
        kinds={"duckdb", "polars"},
        code_version=code_version(
            "mlops_assets.storage.sources", "mlops_assets.simulator", "mlops_assets.dataset"
        ),
        metadata=table_metadata(spec.date_column, **schema_metadata(spec, "raw_events")),
        description=p.words(
            "Every {event} of the day with its attributes as known when it was booked, one row "
            "per {event}. Read from the {dataset} source; a day that breaks the dataset spec "
            "(missing or renamed column, wrong type, no rows) fails with the reason and keeps "
            "the rows already stored."
        ),
    )
    def raw_events(context: dg.AssetExecutionContext) -> Frame:
        import polars as pl

        from mlops_assets.ml.features import DataContractError, require_day_ended, validate_events
        from mlops_assets.storage.sources import SourceReadError, read_events

        now = p.settings.now()
        try:
            days = partition_days(context)
            for day in days:
                require_day_ended(spec, day, now)
            return pl.concat([validate_events(spec, read_events(spec, day), day) for day in days])
        except (DataContractError, SourceReadError) as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc

    @dg.asset(
        name="raw_outcomes",
        group_name="sources",
        automation_condition=when_landed(spec.label_lag_days),
        partitions_def=p.daily,
        backfill_policy=SINGLE_RUN,
        pool=WAREHOUSE_POOL,
        owners=OWNERS,
        kinds={"duckdb", "polars"},
        code_version=code_version(
            "mlops_assets.storage.sources", "mlops_assets.simulator", "mlops_assets.dataset"
        ),
        metadata=table_metadata(spec.date_column, **schema_metadata(spec, "raw_outcomes")),
        description=p.words(
            "The {outcome} observed for each {event} of the day. They land {lag} days after the "
            "day, so this partition can only be filled from then on."
        ),
    )
    def raw_outcomes(context: dg.AssetExecutionContext) -> Frame:
        import polars as pl

        from mlops_assets.ml.features import DataContractError, validate_outcomes
        from mlops_assets.storage.sources import OutcomesNotLanded, SourceReadError, read_outcomes

        now = p.settings.now()
        try:
            return pl.concat(
                [
                    validate_outcomes(spec, read_outcomes(spec, day, now), day)
                    for day in partition_days(context)
                ]
            )
        except (OutcomesNotLanded, DataContractError, SourceReadError) as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc

    return [raw_events, raw_outcomes]


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=build_assets(project()))
