"""Model monitoring: the reference each champion is watched against."""

from datetime import date, datetime, timedelta

import dagster as dg

from mlops_assets.defs.common import (
    Frame,
    Project,
    Stage,
    after_blocking_checks,
    after_history,
    champion_in_force_mapping,
    eager_within,
    partition_days,
    project,
)
from mlops_assets.defs.model_monitoring.checks import drift_check_results, drift_check_specs
from mlops_assets.defs.resources import AlertSinkResource, MlflowResource, WarehouseResource

GROUP = "model_monitoring"
OWNERS = ["team:ml-engineering"]
REFERENCE_ROWS = 5_000
SEED = 11


def build_assets(p: Project) -> list[dg.AssetsDefinition]:
    spec = p.spec

    @Stage(p, GROUP, OWNERS).asset(
        "drift_reference",
        partitions="training",
        code=(
            "mlops_assets.ml.reference",
            "mlops_assets.ml.training",
            "mlops_assets.ml.promotion",
            "mlops_assets.ml.history_queries",
        ),
        automation_condition=after_blocking_checks(after_history()),
        ins={"champion_history": dg.AssetIn()},
        deps=["labeled_examples"],
        description=p.words(
            "What normal looks like for the champion chosen on this training date: a bounded "
            f"sample (up to {REFERENCE_ROWS:,} rows) of its training window's features with its "
            "predictions. Daily drift reports compare each day's {events} and predictions "
            "against it. Not built when the champion's blocking checks fail."
        ),
    )
    def drift_reference(
        context: dg.AssetExecutionContext,
        champion_history: Frame,
        mlflow: MlflowResource,
        warehouse: WarehouseResource,
    ) -> Frame:
        from mlops_assets.ml import reference

        mlflow.experiment_id()
        wh = warehouse.get()
        try:
            result = reference.drift_reference_stage(
                spec,
                champion_history,
                datetime.fromisoformat(context.partition_key).date(),
                train_window=mlflow.train_window,
                read_examples=lambda start, end: wh.read(
                    "labeled_examples", spec.date_column, start, end + timedelta(days=1)
                ),
                load=mlflow.load_version,
                max_rows=REFERENCE_ROWS,
                seed=SEED,
            )
        except reference.NoReferenceError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        context.add_output_metadata(result.metadata())
        return result.frame

    return [drift_reference, build_drift_report(p)]


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=build_assets(project()))


def _read_day(wh, date_column: str, day: date):
    """The features and predictions of one day outside the run's partitions."""
    end = day + timedelta(days=1)
    return wh.read("features", date_column, day, end), wh.read("predictions", date_column, day, end)


def _publish_day(context: dg.AssetExecutionContext, d, settings, alerts: AlertSinkResource) -> None:
    """Save one day's report (HTML and Evidently workspace), alert when its drift persisted,
    and attach its numbers to its partition (``d``: the day's ``monitoring.DayDrift``)."""
    from mlops_assets.ml import dashboard

    reports, limits = settings.reports_dir, settings.thresholds
    html = dashboard.save_report(d.result, reports / f"drift_{d.day}.html")
    dashboard.add_to_workspace(d.result, reports / "workspace", f"mlops_assets_{settings.env}")
    if d.persistent:
        _alert_persistent(alerts, d, limits, context.run_id)
    context.add_asset_metadata(
        {
            **d.result.metrics(),
            "day": str(d.day),
            "persistent_drift": d.persistent,
            "report": dg.MetadataValue.url(settings.report_url(html)),
            "report_file": dg.MetadataValue.path(str(html)),
            "summary": dg.MetadataValue.md(d.result.summary_markdown()),
        },
        partition_key=d.day.isoformat(),
    )


def _alert_persistent(alerts: AlertSinkResource, d, limits, run_id: str) -> None:
    """One alert for a day on which drift persisted."""
    alerts.send(
        kind="drift_persistent",
        asset="drift_report",
        partition=d.day.isoformat(),
        cause="persistent drift",
        message=(
            f"features drifted on {sum(d.recent)} of the last {len(d.recent)} days "
            f"(share {d.result.drift_share:.0%} on {d.day}, threshold "
            f"{limits.drift_share_max:.0%})"
        ),
        run_id=run_id,
    )


def landed_by_end_of_day(spec) -> dg.TimeWindowPartitionMapping:
    """Day D reads the outcomes of D - label_lag_days (none before the first day)."""
    lag = spec.label_lag_days
    return dg.TimeWindowPartitionMapping(
        start_offset=-lag, end_offset=-lag, allow_nonexistent_upstream_partitions=True
    )


def build_drift_report(p: Project) -> dg.AssetsDefinition:
    spec, settings = p.spec, p.settings
    limits = settings.thresholds

    @Stage(p, GROUP, OWNERS).asset(
        "drift_report",
        partitions="daily",
        code=("mlops_assets.ml.drift", "mlops_assets.ml.monitoring"),
        kinds={"evidently", "duckdb"},
        partition_column="day",
        automation_condition=eager_within(7),
        ins={
            "features": dg.AssetIn(),
            "predictions": dg.AssetIn(),
            "raw_outcomes": dg.AssetIn(partition_mapping=landed_by_end_of_day(spec)),
        },
        deps=[dg.AssetDep("drift_reference", partition_mapping=champion_in_force_mapping(p))],
        check_specs=drift_check_specs(p),
        description=p.words(
            "Has the world moved away from what the champion learnt? An Evidently data-drift "
            "report of the day's {events} and predictions against the champion's reference, "
            "and of the {outcome} of the newest day whose {outcome} had landed ({lag} days "
            "before), one row per column with its drift score, null share and the rule that "
            "applied to it (monitored, or left out as constant within a day or by the spec). "
            "The full HTML report is "
            "saved under the environment's reports folder and linked here."
        ),
    )
    def drift_report(
        context: dg.AssetExecutionContext,
        features: Frame,
        predictions: Frame,
        raw_outcomes: Frame,
        warehouse: WarehouseResource,
        alerts: AlertSinkResource,
    ):
        from mlops_assets.ml import monitoring

        wh = warehouse.get()

        days = partition_days(context)
        try:
            result = monitoring.drift_report_stage(
                spec,
                days,
                features,
                predictions,
                wh.read("drift_reference"),
                monitoring.stored_flags(wh.read("drift_report")),
                lambda day: _read_day(wh, spec.date_column, day),
                limits,
                outcomes=raw_outcomes,
            )
        except monitoring.MonitoringError as exc:
            raise dg.Failure(description=str(exc)) from exc
        for d in result.days:
            _publish_day(context, d, settings, alerts)
        yield dg.Output(result.frame)
        yield from drift_check_results(result, limits)

    return drift_report
