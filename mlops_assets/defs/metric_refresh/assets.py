"""Metric refresh: business metrics of each day once its actuals have landed, with monitors."""

from datetime import timedelta

import dagster as dg

from mlops_assets.defs.catalog import business_lineage
from mlops_assets.defs.common import (
    Frame,
    Project,
    Stage,
    eager_within,
    partition_days,
    project,
    severity,
)
from mlops_assets.defs.resources import WarehouseResource

GROUP = "metric_refresh"
OWNERS = ["team:analytics", "team:product"]
ERROR_IN_BAND = "model_error_within_band"
COST_IN_BAND = "cost_per_outcome_within_band"
BAND_HISTORY_DAYS = 28


def _band_result(name: str, band, sev: dg.AssetCheckSeverity) -> dg.AssetCheckResult:
    """The check result of one band rule (``(passed, metadata)``, or None: no cost column)."""
    if band is None:
        metadata = {"observed": "n/a", "threshold": "n/a", "note": "no cost column"}
        return dg.AssetCheckResult(check_name=name, passed=True, metadata=metadata)
    passed, metadata = band
    return dg.AssetCheckResult(check_name=name, passed=passed, severity=sev, metadata=metadata)


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

    @Stage(p, GROUP, OWNERS).asset(
        "business_metrics",
        partitions="daily",
        code=("mlops_assets.ml.business",),
        automation_condition=eager_within(spec.label_lag_days + 7),
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=timedelta(hours=24 * (spec.label_lag_days + 2)),
            warn_window=timedelta(hours=24 * (spec.label_lag_days + 1)),
        ),
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
        from mlops_assets.ml import business

        days = partition_days(context)
        # The band of each day is recomputed from the same three tables over the days before
        # it (read here rather than as a wider input window, so automation does not wait for
        # days that have no predictions, such as those before the first champion).
        wh, first = warehouse.get(), days[0] - timedelta(days=BAND_HISTORY_DAYS)
        try:
            result = business.business_metrics_stage(
                spec,
                days,
                predictions,
                raw_outcomes,
                raw_events,
                serving_log,
                lambda table: wh.read(table, spec.date_column, first, days[0]),
                BAND_HISTORY_DAYS,
            )
        except business.ActualsNotLandedError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        _publish_days(context, p, result, wh.read("business_metrics"))
        lineage = {"dagster/column_lineage": business_lineage(spec)}
        yield dg.Output(result.frame, metadata=lineage)
        for name, column in ((ERROR_IN_BAND, "wape"), (COST_IN_BAND, "cost_per_outcome_actual")):
            yield _band_result(name, result.bands[column], severity(settings.thresholds.strict))

    return [business_metrics]


def _publish_days(context: dg.AssetExecutionContext, p: Project, result, stored) -> None:
    """Put each day's figures on the environment's business dashboard and attach them, with the
    dashboard's link, to the day's partition. The dashboard's per-segment series cover every
    segment stored so far and in this run."""
    from mlops_assets.ml import dashboard

    spec, settings = p.spec, p.settings
    segment = spec.segment_column
    segments = set(result.frame[segment].cast(str).to_list())
    if segment in stored.columns:
        segments |= set(stored[segment].cast(str).to_list())
    where = (settings.evidently_workspace, settings.evidently_project)
    project_id = dashboard.publish_dashboard(spec, segments, *where)
    link = dg.MetadataValue.url(dashboard.dashboard_url(settings.dashboard_url, project_id))
    for day, numbers in result.per_day.items():
        rows = result.frame.filter(result.frame[spec.date_column] == day)
        dashboard.add_snapshot(dashboard.business_snapshot(spec, day, rows), *where)
        segments_md = dg.MetadataValue.md(numbers["segments"])
        context.add_asset_metadata(
            {**numbers, "segments": segments_md, "dashboard": link}, partition_key=str(day)
        )


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=build_assets(project()))
