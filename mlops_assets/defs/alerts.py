"""Alerts, built once for every job: run failures, failed ERROR checks (the blocking ones such
as `baseline_never_champion`) and freshness failures all go through the alert sink resource.

The check and freshness sensor reads through the event log's indexes (check executions per check
key, the latest freshness state per asset), which work on every instance storage: the default
run-sharded SQLite one of `dagster dev` as well as PostgreSQL."""

import json
from collections.abc import Mapping

import dagster as dg
from dagster._core.definitions.freshness import FreshnessState
from dagster._core.execution.plan.objects import StepFailureData
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)

from mlops_assets.defs.model_deployment.checks import ALERTED_BY_ASSET
from mlops_assets.defs.resources import AlertSinkResource

RUN_FAILURE_SENSOR = "alert_on_run_failure"
EVENT_SENSOR = "alert_on_failed_checks_and_freshness"
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def _partition(tags: Mapping[str, str]) -> str:
    if PARTITION_TAG in tags:
        return tags[PARTITION_TAG]
    if RANGE_START_TAG in tags:
        return f"{tags[RANGE_START_TAG]}..{tags.get(RANGE_END_TAG, '')}"
    return ""


def _step_error(event: dg.DagsterEvent):
    """The error of a step failure event (None for any other event)."""
    data = event.event_specific_data
    return data.error if isinstance(data, StepFailureData) else None


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
        errors = [(e.step_key, _step_error(e)) for e in failures]
        message = (
            "; ".join(f"{step}: {_reason(error)[:300]}" for step, error in errors if error)
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


# Executions of one check fetched per query while catching up with the cursor.
PAGE = 200
IN_PROGRESS = {
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
}


def _executions_after(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey, after: int
) -> list[AssetCheckExecutionRecord]:
    """Every execution of check ``key`` whose id is above ``after``, oldest first.

    Check executions are read per check key from the index of the event log, which every
    event log storage keeps (the run-sharded SQLite one included), never by scanning all
    events."""
    found: list[AssetCheckExecutionRecord] = []
    cursor: int | None = None
    while True:
        page = instance.event_log_storage.get_asset_check_execution_history(
            key, limit=PAGE, cursor=cursor
        )
        found += [r for r in page if r.id > after]
        if len(page) < PAGE or page[-1].id <= after:
            return sorted(found, key=lambda r: r.id)
        cursor = page[-1].id


def _check_alerts(
    instance: dg.DagsterInstance,
    keys: list[dg.AssetCheckKey],
    state: dict[str, dict],
    alerts: AlertSinkResource,
) -> int:
    """Alert once on every failed ERROR-severity execution of ``keys`` not handled yet.

    ``state`` holds per check key ``after`` (every execution up to this id is handled) and
    ``seen`` (handled ids above it): an execution planned by a run still in progress keeps
    ``after`` below it until the run evaluates the check or ends, so a check that finishes after
    a later one is neither missed nor alerted twice."""
    sent = 0
    run_status: dict[str, dg.DagsterRunStatus | None] = {}
    for key in keys:
        name = key.to_user_string()
        entry = state.get(name, {"after": 0, "seen": []})
        after, seen = int(entry["after"]), set(entry["seen"])
        pending: list[int] = []
        newest = after
        for record in _executions_after(instance, key, after):
            newest = max(newest, record.id)
            if record.id in seen:
                continue
            if record.status == AssetCheckExecutionRecordStatus.PLANNED:
                if record.run_id not in run_status:
                    run = instance.get_run_by_id(record.run_id)
                    run_status[record.run_id] = run.status if run else None
                if run_status[record.run_id] in IN_PROGRESS:
                    pending.append(record.id)
                    continue
            seen.add(record.id)
            if record.status == AssetCheckExecutionRecordStatus.FAILED:
                sent += _send_check_failure(record, alerts)
        after = min(pending) - 1 if pending else newest
        state[name] = {"after": after, "seen": sorted(i for i in seen if i > after)}
    return sent


def _send_check_failure(record: AssetCheckExecutionRecord, alerts: AlertSinkResource) -> int:
    dagster_event = record.event.dagster_event if record.event else None
    evaluation = dagster_event.event_specific_data if dagster_event else None
    if not isinstance(evaluation, dg.AssetCheckEvaluation):
        return 0
    if evaluation.passed or evaluation.severity != dg.AssetCheckSeverity.ERROR:
        return 0
    meta = {k: getattr(v, "value", v) for k, v in (evaluation.metadata or {}).items()}
    if meta.get(ALERTED_BY_ASSET):
        return 0  # its asset sent the alert (a refused promotion names its gate)
    return int(
        alerts.send(
            kind="check_failed",
            asset=evaluation.asset_key.to_user_string(),
            partition=evaluation.partition or record.partition or "",
            cause=f"check {evaluation.check_name} failed",
            message=(
                f"{evaluation.check_name}: observed {meta.get('observed')}, "
                f"threshold {meta.get('threshold')}"
            ),
            run_id=record.run_id,
            details={k: str(v)[:300] for k, v in meta.items()},
            asset_key=evaluation.asset_key,
        )
    )


def _freshness_alerts(
    instance: dg.DagsterInstance,
    keys: list[dg.AssetKey],
    state: dict[str, float],
    alerts: AlertSinkResource,
) -> int:
    """Alert once each time an asset's freshness state turns FAIL: the latest freshness state
    per asset (what the freshness daemon recorded last), compared with the change already
    handled (its timestamp in ``state``)."""
    sent = 0
    for key, record in instance.get_freshness_state_records(keys).items():
        name = key.to_user_string()
        changed_at = record.updated_at.timestamp()
        if changed_at <= state.get(name, 0.0):
            continue
        state[name] = changed_at
        if record.freshness_state != FreshnessState.FAIL:
            continue
        sent += int(
            alerts.send(
                kind="freshness",
                asset=name,
                cause="stale",
                message=(
                    f"freshness policy failed since "
                    f"{record.updated_at.strftime('%Y-%m-%d %H:%M')} UTC: not materialized "
                    "within its window"
                ),
                asset_key=key,
            )
        )
    return sent


@dg.sensor(
    name=EVENT_SENSOR,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Alerts on failed ERROR-severity asset checks and on assets that turn stale.",
)
def alert_on_failed_checks(
    context: dg.SensorEvaluationContext, alerts: AlertSinkResource
) -> dg.SkipReason:
    cursor = json.loads(context.cursor) if context.cursor else {}
    repository = context.repository_def
    assert repository is not None, "the sensor runs in a code location"
    graph = repository.asset_graph
    checks = cursor.get("checks")
    checks = checks if isinstance(checks, dict) else {}
    freshness = cursor.get("freshness")
    freshness = freshness if isinstance(freshness, dict) else {}
    check_keys = sorted(graph.asset_check_keys, key=lambda k: k.to_user_string())
    fresh_keys = sorted(
        (n.key for n in graph.asset_nodes if n.freshness_policy_or_from_metadata),
        key=lambda k: k.to_user_string(),
    )
    sent = _check_alerts(context.instance, check_keys, checks, alerts)
    sent += _freshness_alerts(context.instance, fresh_keys, freshness, alerts)
    context.update_cursor(json.dumps({"checks": checks, "freshness": freshness}))
    return dg.SkipReason(f"{sent} alert(s) sent")


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(sensors=[alert_on_run_failure, alert_on_failed_checks])
