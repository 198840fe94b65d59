"""Alerts, built once for every job: run failures, failed ERROR checks (the blocking ones such
as `baseline_never_champion`) and freshness failures all go through the alert sink resource."""

import json

import dagster as dg
from dagster._core.events import DagsterEventType

from mlops_assets.defs.resources import AlertSinkResource

RUN_FAILURE_SENSOR = "alert_on_run_failure"
EVENT_SENSOR = "alert_on_failed_checks_and_freshness"
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def _partition(tags: dict[str, str]) -> str:
    if PARTITION_TAG in tags:
        return tags[PARTITION_TAG]
    if RANGE_START_TAG in tags:
        return f"{tags[RANGE_START_TAG]}..{tags.get(RANGE_END_TAG, '')}"
    return ""


def _reason(error) -> str:
    """What went wrong: the user code's own exception rather than the Dagster error wrapping it
    ("Error occurred while executing op ...", which names no cause)."""
    while error.cause is not None and error.cls_name.startswith("Dagster"):
        error = error.cause
    return error.message.strip()


@dg.run_failure_sensor(
    name=RUN_FAILURE_SENSOR,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every failed run of every job alerts once per job and cause within the cooldown.",
)
def alert_on_run_failure(context: dg.RunFailureSensorContext, alerts: AlertSinkResource) -> None:
    run = context.dagster_run
    assets = sorted(k.to_user_string() for k in (run.asset_selection or []))
    steps = [e.step_key for e in context.get_step_failure_events() if e.step_key]
    message = context.failure_event.message or "run failed"
    if steps:
        failures = context.get_step_failure_events()
        message = (
            "; ".join(
                f"{e.step_key}: {_reason(e.event_specific_data.error)[:300]}"
                for e in failures
                if e.event_specific_data and e.event_specific_data.error
            )
            or message
        )
    alerts.send(
        kind="run_failure",
        asset=", ".join(steps or assets) or run.job_name,
        partition=_partition(run.tags),
        cause=f"run failure in {run.job_name}",
        message=message,
        run_id=run.run_id,
    )


def _records(instance: dg.DagsterInstance, event_type: DagsterEventType, after: int):
    return instance.get_event_records(
        dg.EventRecordsFilter(event_type=event_type, after_cursor=after or None),
        limit=1000,
        ascending=True,
    )


@dg.sensor(
    name=EVENT_SENSOR,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Alerts on failed ERROR-severity asset checks and on assets that turn stale.",
)
def alert_on_failed_checks(
    context: dg.SensorEvaluationContext, alerts: AlertSinkResource
) -> dg.SkipReason:
    cursor = json.loads(context.cursor) if context.cursor else {"checks": 0, "freshness": 0}
    sent = 0
    for record in _records(
        context.instance, DagsterEventType.ASSET_CHECK_EVALUATION, cursor["checks"]
    ):
        cursor["checks"] = record.storage_id
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if evaluation.passed or evaluation.severity != dg.AssetCheckSeverity.ERROR:
            continue
        meta = {k: getattr(v, "value", v) for k, v in (evaluation.metadata or {}).items()}
        sent += alerts.send(
            kind="check_failed",
            asset=evaluation.asset_key.to_user_string(),
            partition=evaluation.partition or "",
            cause=f"check {evaluation.check_name} failed",
            message=(
                f"{evaluation.check_name}: observed {meta.get('observed')}, "
                f"threshold {meta.get('threshold')}"
            ),
            run_id=record.run_id,
            details={k: str(v)[:300] for k, v in meta.items()},
        )
    for record in _records(
        context.instance, DagsterEventType.FRESHNESS_STATE_CHANGE, cursor["freshness"]
    ):
        cursor["freshness"] = record.storage_id
        change = record.event_log_entry.dagster_event.event_specific_data
        state = str(getattr(change, "new_state", ""))
        if "FAIL" not in state.upper():
            continue
        sent += alerts.send(
            kind="freshness",
            asset=change.key.to_user_string(),
            cause="stale",
            message=f"freshness policy failed (state {state})",
        )
    context.update_cursor(json.dumps(cursor))
    return dg.SkipReason(f"{sent} alert(s) sent")


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(sensors=[alert_on_run_failure, alert_on_failed_checks])
