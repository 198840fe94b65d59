"""`pipeline_health`: one status per stage (Healthy, Warning, Degraded) with the reason, rolled
up per asset from what the Dagster instance records (latest materialization, freshness state,
the latest evaluation of every check) and the alerts still within the alert cooldown. The rule
lives in ``ml/health.py``.

It reads wall-clock state, not a day's facts, so it has no automation condition: the demo
materializes it at its end, and an hourly schedule refreshes it (running by default in staging
and prod; in dev, start it in the UI or materialize the asset)."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from mlops_assets.defs.common import Frame, Project, Stage, project
from mlops_assets.defs.resources import AlertSinkResource

GROUP = "metric_refresh"
OWNERS = ["team:ml-platform"]
NAME = "pipeline_health"
SCHEDULE = "pipeline_health_hourly"


def _failed_checks(instance: dg.DagsterInstance, keys) -> list:
    """The checks among ``keys`` whose latest evaluation failed, with the reason it gives."""
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus,
    )

    from mlops_assets.ml.health import FailedCheck

    failed = []
    for key in sorted(keys, key=lambda k: k.to_user_string()):
        latest = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
        if not latest or latest[0].status != AssetCheckExecutionRecordStatus.FAILED:
            continue
        event = latest[0].event.dagster_event if latest[0].event else None
        evaluation = event.event_specific_data if event else None
        if not isinstance(evaluation, dg.AssetCheckEvaluation):
            continue
        meta = {k: getattr(v, "value", v) for k, v in (evaluation.metadata or {}).items()}
        reason = meta.get("reason") or (
            f"check {key.name} failed (observed {meta.get('observed')}, "
            f"threshold {meta.get('threshold')})"
        )
        failed.append(
            FailedCheck(
                check=key.name,
                blocking=evaluation.severity == dg.AssetCheckSeverity.ERROR,
                reason=str(reason),
                days=str(meta.get("days_failed") or evaluation.partition or ""),
            )
        )
    return failed


def _states(context: dg.AssetExecutionContext, alerts: AlertSinkResource) -> list:
    """What the instance and the alert log say about every other asset of the code location."""
    from mlops_assets.definitions import defs
    from mlops_assets.ml.health import AssetState

    # The code location's graph (the same assets and checks in every environment), whatever
    # this run selected.
    instance, graph = context.instance, defs.resolve_asset_graph()
    nodes = [n for n in graph.asset_nodes if n.key.path[-1] != NAME]
    freshness = instance.get_freshness_state_records([n.key for n in nodes])
    since = datetime.now(UTC) - timedelta(minutes=alerts.cooldown_minutes)
    recent = [a for a in alerts.sink().read() if datetime.fromisoformat(a["ts"]) >= since]
    states = []
    for node in nodes:
        name = node.key.to_user_string()
        latest = instance.get_latest_materialization_event(node.key)
        record = freshness.get(node.key)
        states.append(
            AssetState(
                asset=name,
                stage=node.group_name or "default",
                last_materialized=datetime.fromtimestamp(latest.timestamp, UTC) if latest else None,
                freshness=record.freshness_state.value if record else None,
                failed_checks=_failed_checks(instance, node.check_keys),
                alerts=[
                    (a["kind"], a["message"]) for a in recent if name in a["asset"].split(", ")
                ],
            )
        )
    return states


def build_pipeline_health(p: Project) -> dg.AssetsDefinition:
    @Stage(p, GROUP, OWNERS).asset(
        NAME,
        code=("mlops_assets.ml.health",),
        kinds={"dagster", "duckdb"},
        description=(
            "Is the pipeline healthy? One status per stage (Healthy, Warning, Degraded) with "
            "the reason in business words, rolled up from each asset's latest build, freshness, "
            "the latest result of each of its checks and the alerts it raised within the alert "
            "cooldown. A snapshot of now: refreshed at the end of the demo and hourly by a "
            "schedule."
        ),
    )
    def pipeline_health(context: dg.AssetExecutionContext, alerts: AlertSinkResource) -> Frame:
        from mlops_assets.ml import health

        stages = health.stage_health(_states(context, alerts))
        context.add_output_metadata(
            {"health": dg.MetadataValue.md(health.markdown(stages)), **health.stage_metrics(stages)}
        )
        return health.frame(stages)

    return pipeline_health


@dg.definitions
def defs() -> dg.Definitions:
    p = project()
    deployed = p.settings.env != "dev"
    schedule = dg.ScheduleDefinition(
        name=SCHEDULE,
        cron_schedule="0 * * * *",
        target=dg.AssetSelection.assets(NAME),
        default_status=dg.DefaultScheduleStatus.RUNNING
        if deployed
        else dg.DefaultScheduleStatus.STOPPED,
        description="Refreshes pipeline_health every hour (running by default outside dev).",
    )
    return dg.Definitions(assets=[build_pipeline_health(p)], schedules=[schedule])
