"""Dead-run recovery for the daemon: runs whose process is gone (a killed `dagster asset
materialize`, a run worker lost with its machine's power) are marked failed with the reason and
their pool slots freed, so the `registry` pool never waits on a run that will not end."""

import dagster as dg

RECOVERY_SENSOR = "recover_dead_runs"


@dg.sensor(
    name=RECOVERY_SENSOR,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Fails started runs whose process is gone and frees their pool slots.",
)
def recover_dead_runs(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    from mlops_assets.run_instance import fail_dead_runs

    dead = fail_dead_runs(context.instance)
    for run in dead:
        context.log.warning(f"failed dead {run.describe()}; its pool slots are free")
    return dg.SkipReason(f"{len(dead)} dead run(s) failed")


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(sensors=[recover_dead_runs])
