"""`pipeline_health`: one status per stage (Healthy, Warning, Degraded) with the reason, rolled
up from what the instance records (latest materialization, freshness, the latest evaluation of
every check) and the alerts of the last hours. The rule lives in ``ml/health.py``."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from mlops_assets.defs.catalog import COLUMN_SCHEMA
from mlops_assets.defs.common import WAREHOUSE_POOL, Frame, Project, code_version, project
from mlops_assets.ml.health import HEALTH_COLUMNS

OWNERS = ["team:ml-platform"]
NAME = "pipeline_health"
# Alerts of this window count as open (the alert sink's cooldown).
ALERT_WINDOW = timedelta(hours=6)


def _failed_checks(instance: dg.DagsterInstance, keys) -> list:
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
            f"check {key.name} failed: observed {meta.get('observed')}, "
            f"threshold {meta.get('threshold')}"
        )
        failed.append(
            FailedCheck(
                check=key.name,
                blocking=evaluation.severity == dg.AssetCheckSeverity.ERROR,
                reason=str(reason),
                partition=str(meta.get("days_failed") or evaluation.partition or ""),
            )
        )
    return failed


def build_pipeline_health(p: Project) -> dg.AssetsDefinition:
    schema = dg.TableSchema(
        columns=[dg.TableColumn(n, t, description=d) for n, (t, d) in HEALTH_COLUMNS.items()]
    )

    @dg.asset(
        name=NAME,
        group_name="metric_refresh",
        automation_condition=dg.AutomationCondition.cron_tick_passed("0 * * * *")
        & ~dg.AutomationCondition.in_progress(),
        pool=WAREHOUSE_POOL,
        owners=OWNERS,
        kinds={"dagster", "duckdb"},
        code_version=code_version("mlops_assets.ml.health"),
        metadata={COLUMN_SCHEMA: schema},
        description=(
            "Is the pipeline healthy? One status per stage (Healthy, Warning, Degraded) with the "
            "reason in business words, from each asset's latest materialization, freshness, "
            "the latest result of every check and the alerts of the last "
            f"{ALERT_WINDOW.seconds // 3600} hours. Refreshed hourly."
        ),
    )
    def pipeline_health(context: dg.AssetExecutionContext) -> Frame:
        import polars as pl

        from mlops_assets.definitions import defs
        from mlops_assets.ml import health
        from mlops_assets.storage.alerts import AlertSink

        # Every asset of the code location (the same in every environment), whatever this run
        # selected.
        instance, graph = context.instance, defs.resolve_asset_graph()
        nodes = [n for n in graph.asset_nodes if n.key.to_user_string() != NAME]
        freshness = instance.get_freshness_state_records([n.key for n in nodes])
        since = datetime.now(UTC) - ALERT_WINDOW
        recent = [
            a
            for a in AlertSink(p.settings.alerts_path).read()
            if datetime.fromisoformat(a["ts"]) >= since
        ]
        states = []
        for node in nodes:
            name = node.key.to_user_string()
            latest = instance.get_latest_materialization_event(node.key)
            record = freshness.get(node.key)
            states.append(
                health.AssetState(
                    asset=name,
                    stage=node.group_name or "default",
                    last_materialized=datetime.fromtimestamp(latest.timestamp, UTC)
                    if latest
                    else None,
                    freshness=record.freshness_state.value if record else None,
                    failed_checks=_failed_checks(instance, node.check_keys),
                    alerts=[(a["kind"], a["message"]) for a in recent if a["asset"] == name],
                )
            )
        stages = health.stage_health(states)
        context.add_output_metadata(
            {
                "health": dg.MetadataValue.md(health.markdown(stages)),
                **{f"status_{s.stage}": s.status for s in stages},
                "degraded_stages": sum(s.status == health.DEGRADED for s in stages),
                "warning_stages": sum(s.status == health.WARNING for s in stages),
            }
        )
        return pl.DataFrame(health.rows(stages), schema_overrides={"assets": pl.Int64})

    return pipeline_health


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=[build_pipeline_health(project())])
