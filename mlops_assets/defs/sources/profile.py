"""`data_profile`: what each day's events looked like against the days before it, with the
suitability rules that matter to the business as checks. The logic is ``ml/profile.py``."""

from datetime import timedelta

import dagster as dg

from mlops_assets.defs.common import (
    Project,
    Stage,
    partition_days,
    project,
    severity,
)
from mlops_assets.defs.resources import WarehouseResource

GROUP = "sources"
OWNERS = ["team:data-engineering"]
NAME = "data_profile"
# The check names are ml.profile's rule names (not imported: it imports polars).
SEGMENTS_PRESENT = "segments_present"
NO_NEW_CATEGORIES = "no_new_categories"


def _check_specs(p: Project) -> list[dg.AssetCheckSpec]:
    segment, events = p.spec.segment_column, p.spec.event_noun + "s"
    described = {
        SEGMENTS_PRESENT: (
            f"Every {segment} that had {events} on at least half of the reference days has "
            f"{events} on the day: a vanished {segment} loses its predictions and its business "
            "metrics without any error."
        ),
        NO_NEW_CATEGORIES: (
            "No categorical value appears that the reference days never had, in a column whose "
            "values were stable over them: the models read a new value as unknown."
        ),
    }
    return [dg.AssetCheckSpec(n, asset=NAME, description=d) for n, d in described.items()]


def _publish_day(context: dg.AssetExecutionContext, day_profile, p: Project) -> None:
    """Save one day's Evidently data summary and attach the day's numbers to its partition."""
    from mlops_assets.ml import profile

    html = profile.save_report(
        p.spec, day_profile, p.settings.reports_dir / f"profile_{day_profile.day}.html"
    )
    context.add_asset_metadata(
        {
            **day_profile.metrics(),
            "day": str(day_profile.day),
            "report": dg.MetadataValue.url(p.settings.report_url(html)),
            "report_file": dg.MetadataValue.path(str(html)),
            "summary": dg.MetadataValue.md(day_profile.summary_markdown()),
        },
        partition_key=day_profile.day.isoformat(),
    )


def build_data_profile(p: Project) -> dg.AssetsDefinition:
    spec, settings = p.spec, p.settings
    window = spec.training.train_days

    @Stage(p, GROUP, OWNERS).asset(
        NAME,
        partitions="daily",
        code=("mlops_assets.ml.profile",),
        kinds={"evidently", "duckdb", "polars"},
        partition_column="day",
        automation_condition=dg.AutomationCondition.eager(),
        deps=[
            dg.AssetDep(
                "raw_events",
                partition_mapping=dg.TimeWindowPartitionMapping(
                    start_offset=-window, allow_nonexistent_upstream_partitions=True
                ),
            )
        ],
        check_specs=_check_specs(p),
        description=p.words(
            "Is the day's data fit for the business question? What the day's {events} looked "
            "like: per column the share of empty values, the range and quartiles or the most "
            "frequent values, values never seen in the "
            f"{window} days before, and which {spec.segment_column} had no {{events}}. "
            "Evidently's data summary of the day is saved under the reports folder and linked."
        ),
    )
    def data_profile(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        from mlops_assets.ml import profile

        days = partition_days(context)
        start, end = days[0] - timedelta(days=window), days[-1] + timedelta(days=1)
        events = warehouse.get().read("raw_events", spec.date_column, start, end)
        try:
            result = profile.profile_stage(spec, days, events, reference_days=window)
        except profile.ProfileError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        for day_profile in result.days:
            _publish_day(context, day_profile, p)
        yield dg.Output(result.frame)
        for name in (SEGMENTS_PRESENT, NO_NEW_CATEGORIES):
            passed, metadata = result.verdict(name)
            yield dg.AssetCheckResult(
                check_name=name,
                passed=passed,
                severity=severity(settings.thresholds.strict),
                metadata=metadata,
            )

    return data_profile


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=[build_data_profile(project())])
