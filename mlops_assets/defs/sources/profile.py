"""The data profile of each day: what the day's events looked like against the days before it,
with the suitability rules that matter to the business as WARN checks (see ``ml/profile.py``)."""

from datetime import timedelta

import dagster as dg

from mlops_assets.defs.catalog import COLUMN_SCHEMA
from mlops_assets.defs.common import (
    SINGLE_RUN,
    WAREHOUSE_POOL,
    Frame,
    Project,
    code_version,
    partition_days,
    project,
    table_metadata,
)
from mlops_assets.ml.profile import PROFILE_COLUMNS

OWNERS = ["team:data-engineering"]
SEGMENTS_PRESENT = "segments_present"
NO_UNSEEN_CATEGORIES = "no_unseen_categories"
# A segment is "regular" when it had events on at least this share of the reference days.
REGULAR_SEGMENT_SHARE = 0.5


def build_data_profile(p: Project) -> dg.AssetsDefinition:
    spec = p.spec
    reference_days = spec.training.train_days
    numeric, categorical = list(spec.numeric_features), list(spec.categorical_features)
    schema = dg.TableSchema(
        columns=[dg.TableColumn(n, t, description=d) for n, (t, d) in PROFILE_COLUMNS.items()]
    )

    @dg.asset(
        name="data_profile",
        group_name="sources",
        automation_condition=dg.AutomationCondition.eager(),
        partitions_def=p.daily,
        backfill_policy=SINGLE_RUN,
        pool=WAREHOUSE_POOL,
        owners=OWNERS,
        kinds={"evidently", "duckdb", "polars"},
        code_version=code_version("mlops_assets.ml.profile"),
        metadata=table_metadata("day", **{COLUMN_SCHEMA: schema}),
        ins={
            "raw_events": dg.AssetIn(
                partition_mapping=dg.TimeWindowPartitionMapping(
                    start_offset=-reference_days, allow_nonexistent_upstream_partitions=True
                )
            )
        },
        check_specs=[
            dg.AssetCheckSpec(
                SEGMENTS_PRESENT,
                asset="data_profile",
                description=(
                    f"Every {spec.segment_column} seen on at least {REGULAR_SEGMENT_SHARE:.0%} of "
                    "the reference days has events on the day (WARN): a vanished segment loses "
                    "its predictions and its business metrics."
                ),
            ),
            dg.AssetCheckSpec(
                NO_UNSEEN_CATEGORIES,
                asset="data_profile",
                description=(
                    "No categorical value the reference days never had, in a column whose "
                    "values were stable over them (WARN): the models read a new value as "
                    "unknown."
                ),
            ),
        ],
        description=p.words(
            "What each day's {events} looked like: per column the share of empty values, the "
            "range and mean (numeric) or the distinct and most frequent values (categorical), "
            "values never seen on the "
            f"{reference_days} days before, and which {spec.segment_column} had no {{events}}. "
            "The Evidently data summary of the day is saved under the reports folder and linked."
        ),
    )
    def data_profile(context: dg.AssetExecutionContext, raw_events: Frame):
        import polars as pl

        from mlops_assets.ml import profile

        settings = p.settings
        date = pl.col(spec.date_column)
        frames, verdicts = [], {SEGMENTS_PRESENT: [], NO_UNSEEN_CATEGORIES: []}
        for day in partition_days(context):
            current = raw_events.filter(date == day)
            since = day - timedelta(days=reference_days)
            reference = raw_events.filter(date.is_between(since, day, closed="left"))
            try:
                result = profile.profile_day(
                    current,
                    reference,
                    date_column=spec.date_column,
                    numeric=numeric,
                    categorical=categorical,
                    segment_column=spec.segment_column,
                )
            except profile.ProfileError as exc:
                raise dg.Failure(description=f"{day}: {exc}", allow_retries=False) from exc
            html = profile.save_report(
                current,
                reference,
                numeric,
                categorical,
                settings.reports_dir / f"profile_{day}.html",
            )
            verdicts[SEGMENTS_PRESENT].append(
                (day, profile.segments_present_rule(result, REGULAR_SEGMENT_SHARE))
            )
            verdicts[NO_UNSEEN_CATEGORIES].append((day, profile.no_unseen_categories_rule(result)))
            frames.append(result.frame.with_columns(pl.lit(day, dtype=pl.Date).alias("day")))
            context.add_asset_metadata(
                {
                    **result.metrics(),
                    "day": str(day),
                    "report": dg.MetadataValue.url(settings.report_url(html)),
                    "report_file": dg.MetadataValue.path(str(html)),
                    "summary": dg.MetadataValue.md(result.summary_markdown()),
                },
                partition_key=day.isoformat(),
            )
        yield dg.Output(pl.concat(frames).select(*profile.PROFILE_COLUMNS))
        for name, results in verdicts.items():
            failed = [(d, r) for d, r in results if not r.passed]
            day, rule = (failed or results)[-1]
            yield dg.AssetCheckResult(
                check_name=name,
                passed=not failed,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    **rule.metadata(),
                    "day": str(day),
                    "days_checked": len(results),
                    "days_failed": ", ".join(str(d) for d, _ in failed) or "none",
                },
            )

    return data_profile


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=[build_data_profile(project())])
