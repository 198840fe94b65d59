"""Metric refresh: business metrics of each day once its actuals have landed, with monitors."""

from datetime import timedelta

import dagster as dg

from mlops_assets.defs.catalog import business_lineage, schema_metadata
from mlops_assets.defs.common import (
    SINGLE_RUN,
    WAREHOUSE_POOL,
    Frame,
    Project,
    code_version,
    eager_within,
    partition_days,
    project,
    severity,
    table_metadata,
)
from mlops_assets.defs.resources import WarehouseResource

OWNERS = ["team:analytics", "team:product"]
ERROR_IN_BAND = "model_error_within_band"
COST_IN_BAND = "cost_per_outcome_within_band"
BAND_HISTORY_DAYS = 28
TOTAL = "ALL"


def build_assets(p: Project) -> list[dg.AssetsDefinition]:
    spec, settings = p.spec, p.settings
    cost = spec.cost_column
    checks = [
        dg.AssetCheckSpec(
            ERROR_IN_BAND,
            asset="business_metrics",
            description="The champion's error (WAPE) lies within the usual band of the previous "
            f"{BAND_HISTORY_DAYS} days (median +- 3 robust standard deviations).",
        ),
        dg.AssetCheckSpec(
            COST_IN_BAND,
            asset="business_metrics",
            description=p.words(
                "Cost per {outcome} lies within the usual band of the previous "
                f"{BAND_HISTORY_DAYS} days."
            ),
        ),
    ]

    @dg.asset(
        name="business_metrics",
        group_name="metric_refresh",
        partitions_def=p.daily,
        backfill_policy=SINGLE_RUN,
        pool=WAREHOUSE_POOL,
        owners=OWNERS,
        kinds={"duckdb", "polars"},
        code_version=code_version("mlops_assets.ml.business"),
        automation_condition=eager_within(spec.label_lag_days + 7),
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=timedelta(hours=24 * (spec.label_lag_days + 2)),
            warn_window=timedelta(hours=24 * (spec.label_lag_days + 1)),
        ),
        metadata=table_metadata(spec.date_column, **schema_metadata(spec, "business_metrics")),
        ins={
            "predictions": dg.AssetIn(),
            "raw_outcomes": dg.AssetIn(),
            "raw_events": dg.AssetIn(),
            "serving_log": dg.AssetIn(),
        },
        check_specs=checks,
        description=p.words(
            "How the business did and how well the model called it, once the day's {outcome} "
            "have landed ({lag} days later): "
            + (f"{cost} (cost), " if cost else "")
            + "actual and predicted {outcome}, "
            + ("cost per outcome, " if cost else "")
            + "the model's error (WAPE) and bias, per segment and in total; plus the online "
            "endpoint's requests, error rate and latency for the day."
        ),
    )
    def business_metrics(
        context: dg.AssetExecutionContext,
        predictions: Frame,
        raw_outcomes: Frame,
        raw_events: Frame,
        serving_log: Frame,
        warehouse: WarehouseResource,
    ):
        import polars as pl

        from mlops_assets.ml import business

        days = partition_days(context)
        landed = (
            set(raw_outcomes[spec.date_column].unique().to_list()) if raw_outcomes.height else set()
        )
        missing = [d for d in days if d not in landed]
        if missing:
            raise dg.Failure(
                description=p.words("the {outcome} of ")
                + ", ".join(map(str, missing))
                + f" have not landed yet (they land {spec.label_lag_days} days after the day): "
                "business metrics wait for actuals",
                allow_retries=False,
            )
        segment = spec.segment_column
        columns = ("wape", "cost_per_outcome_actual") if cost else ("wape",)
        # The band of each day is recomputed from the same three tables over the days before
        # it (read here rather than as a wider input window, so automation does not wait for
        # days that have no predictions, such as those before the first champion).
        wh, first = warehouse.get(), days[0] - timedelta(days=BAND_HISTORY_DAYS)

        def with_past(table: str, frame):
            past = wh.read(table, spec.date_column, first, days[0])
            return pl.concat([past, frame], how="diagonal_relaxed") if past.width else frame

        per_day = business.metrics_by_day(
            with_past("predictions", predictions),
            with_past("raw_outcomes", raw_outcomes),
            with_past("raw_events", raw_events),
            spec,
            days,
            BAND_HISTORY_DAYS,
            columns,
        )
        tables = []
        for m in per_day:
            total = m.result.total.with_columns(
                pl.lit(m.day, dtype=pl.Date).alias(spec.date_column), pl.lit(TOTAL).alias(segment)
            )
            tables += [m.result.table, total]
            log = serving_log.filter(pl.col("day") == m.day) if serving_log.height else serving_log
            context.add_asset_metadata(
                {
                    "day": str(m.day),
                    **{k: float(v) for k, v in m.result.totals().items()},
                    **{f"serving_{k}": float(v) for k, v in business.serving_summary(log).items()},
                    "segments": dg.MetadataValue.md(m.result.segments_markdown()),
                },
                partition_key=m.day.isoformat(),
            )
        yield dg.Output(
            pl.concat(tables, how="diagonal_relaxed"),
            metadata={"dagster/column_lineage": business_lineage(spec)},
        )
        sev = severity(settings.thresholds.strict)
        for name, column in ((ERROR_IN_BAND, "wape"), (COST_IN_BAND, "cost_per_outcome_actual")):
            if column not in columns:
                yield dg.AssetCheckResult(
                    check_name=name,
                    passed=True,
                    metadata={"observed": "n/a", "threshold": "n/a", "note": "no cost column"},
                )
                continue
            failed = [m for m in per_day if not m.bands[column].passed]
            shown = (failed or per_day)[-1]
            yield dg.AssetCheckResult(
                check_name=name,
                passed=not failed,
                severity=sev,
                metadata={
                    **shown.bands[column].metadata(),
                    "day": str(shown.day),
                    "days_checked": len(per_day),
                    "days_outside_band": ", ".join(str(m.day) for m in failed) or "none",
                },
            )

    return [business_metrics]


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=build_assets(project()))
