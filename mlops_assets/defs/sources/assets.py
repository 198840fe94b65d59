"""Sources: each day's events and, once they land, their observed outcomes."""

import dagster as dg

from mlops_assets.defs.common import (
    Frame,
    Project,
    Stage,
    partition_days,
    project,
    when_landed,
)

GROUP = "sources"
OWNERS = ["team:data-engineering"]
# What reads a day from the source and checks it against the spec.
SOURCE_CODE = (
    "mlops_assets.storage.sources",
    "mlops_assets.simulator",
    "mlops_assets.dataset",
    "mlops_assets.dataset_load",
)
# The failure of a range run names its bad days here (day -> reason), so a runner can run the
# other days again without them.
FAILED_DAYS = "failed_days"


def each_day(spec, days, read) -> Frame:
    """``read`` every day of the range; every day that breaks the contract is named with its
    reason, and then the whole run fails before anything is stored (a good day never replaces
    a bad day's rows, nor a bad day a good day's)."""
    import polars as pl

    from mlops_assets.ml.features import DataContractError
    from mlops_assets.storage.sources import OutcomesNotLanded, SourceReadError

    frames, failed = [], {}
    for day in days:
        try:
            frames.append(read(day))
        except (DataContractError, SourceReadError, OutcomesNotLanded) as exc:
            failed[day.isoformat()] = str(exc)
    if not failed:
        return pl.concat(frames)
    if len(days) == 1:
        description = next(iter(failed.values()))
    else:
        description = (
            f"{len(failed)} of {len(days)} days break the {spec.name} contract; nothing is "
            "stored (run the other days without them): "
            + "; ".join(f"{day}: {reason}" for day, reason in failed.items())
        )
    raise dg.Failure(
        description=description,
        metadata={FAILED_DAYS: dg.MetadataValue.json(failed)},
        allow_retries=False,
    )


def build_assets(p: Project) -> list[dg.AssetsDefinition]:
    spec = p.spec

    @Stage(p, GROUP, OWNERS).asset(
        "raw_events",
        partitions="daily",
        code=SOURCE_CODE,
        automation_condition=dg.AutomationCondition.eager(),
        description=p.words(
            "Every {event} of the day with its attributes as known when it was booked, one row "
            "per {event}. Read from the {dataset} source; a day that breaks the dataset spec "
            "(missing or renamed column, wrong type, no rows) fails with the reason and keeps "
            "the rows already stored."
        ),
    )
    def raw_events(context: dg.AssetExecutionContext) -> Frame:
        from mlops_assets.storage.sources import read_day

        now = p.settings.now()

        def day_events(day):
            from mlops_assets.ml.features import require_day_ended, validate_day

            require_day_ended(spec, day, now)
            events, outcomes = read_day(spec, day)
            return validate_day(spec, day, events, outcomes)[0]

        return each_day(spec, partition_days(context), day_events)

    @Stage(p, GROUP, OWNERS).asset(
        "raw_outcomes",
        partitions="daily",
        code=SOURCE_CODE,
        automation_condition=when_landed(spec.label_lag_days),
        description=p.words(
            "The {outcome} observed for each {event} of the day. They land {lag} days after the "
            "day, so this partition can only be filled from then on."
        ),
    )
    def raw_outcomes(context: dg.AssetExecutionContext) -> Frame:
        from mlops_assets.storage.sources import read_events, read_outcomes

        now = p.settings.now()

        def day_outcomes(day):
            from mlops_assets.ml.features import validate_day

            outcomes = read_outcomes(spec, day, now)
            return validate_day(spec, day, read_events(spec, day), outcomes)[1]

        return each_day(spec, partition_days(context), day_outcomes)

    return [raw_events, raw_outcomes]


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=build_assets(project()))
