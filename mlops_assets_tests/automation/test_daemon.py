"""End to end with the real daemon: `dagster-daemon run` on the project's definitions, with a
Dagster home holding the repository's dagster.yaml and a state in which the outcomes of a day
have landed but are not stored yet. The automation sensor (running by default) must request
them on its first tick and the daemon must run them by itself, with nothing launched by hand;
then the daemon, started in its own process group with default signal handlers, stops on
SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from mlops_assets.definitions import AUTOMATION_SENSOR
from mlops_assets.environments import REPO_ROOT
from mlops_assets_tests.helpers import clean_env, copy_dagster_yaml

FROM_AUTOMATION_TAG = "dagster/from_automation_condition"
AUTO_MATERIALIZE_TAG = "dagster/auto_materialize"
SENSOR_NAME_TAG = "dagster/sensor_name"
RUN_DEADLINE_S = 180
STOP_DEADLINE_S = 60


def _default_signal_handlers() -> None:
    # A shell that runs jobs in the background hands its children SIGINT and SIGTERM ignored;
    # the daemon would then never stop on them.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start_daemon(env: dict[str, str], log: Path) -> subprocess.Popen:
    """`dagster-daemon run` of the project's module, in a new session (its own group)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [
                str(Path(sys.executable).with_name("dagster-daemon")),
                "run",
                "-m",
                "mlops_assets.definitions",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_signal_handlers,
        )


def stop_group(proc: subprocess.Popen) -> bool:
    """SIGINT to the process group; SIGKILL if it has not exited by the deadline. Returns
    whether SIGINT alone stopped it."""
    if proc.poll() is not None:
        return True
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=STOP_DEADLINE_S)
        return True
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_DEADLINE_S)
        return False


def tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def automation_materializations(
    instance: dg.DagsterInstance,
) -> tuple[list[dg.DagsterRun], set[tuple[str, str | None]]]:
    """The finished runs of the instance and the asset partitions their successes stored."""
    runs = [
        r
        for r in instance.get_runs()
        if r.status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
    ]
    stored = set()
    for run in runs:
        if run.status != dg.DagsterRunStatus.SUCCESS:
            continue
        records = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
        stored |= {(r.asset_key.to_user_string(), r.partition_key) for r in records}
    return runs, stored


def test_daemon_runs_what_the_automation_sensor_requests(make_pipeline, tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0)
    landed_today = (now.date() - timedelta(days=2)).isoformat()
    # Two finished days, nothing stored: the first tick requests the outcomes of the day that
    # land today (eager conditions wait for something to change after their first tick).
    pipeline = make_pipeline(
        as_of=now.isoformat(timespec="minutes"), start_date=landed_today, airings_per_day=100
    )
    home = tmp_path / "dagster_home"
    copy_dagster_yaml(home)
    env = clean_env(**pipeline.env, DAGSTER_HOME=str(home))
    log = tmp_path / "daemon.log"
    # Create the instance's storage before the daemon does: two processes creating the same
    # SQLite schema at once collide.
    instance = dg.DagsterInstance.from_config(str(home))
    assert instance.get_runs() == []

    proc = start_daemon(env, log)
    stopped_by_sigint = False
    try:
        deadline = time.monotonic() + RUN_DEADLINE_S
        runs, stored = automation_materializations(instance)
        while not stored and time.monotonic() < deadline:
            assert proc.poll() is None, f"the daemon exited early:\n{tail(log)}"
            failed = [r.run_id for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
            assert failed == [], f"runs {failed} failed:\n{tail(log)}"
            time.sleep(1)  # bounded polling for the condition, not a synchronization sleep
            runs, stored = automation_materializations(instance)
        assert stored, f"no run stored anything within {RUN_DEADLINE_S} s:\n{tail(log)}"
    finally:
        stopped_by_sigint = stop_group(proc)

    assert proc.returncode is not None
    assert stopped_by_sigint, f"the daemon ignored SIGINT:\n{tail(log)}"
    assert ("raw_outcomes", landed_today) in stored, stored
    # Every run of this instance came from the automation sensor: the test launched none.
    assert runs
    for run in instance.get_runs():
        assert run.tags.get(FROM_AUTOMATION_TAG) == "true", run.tags
        assert run.tags.get(AUTO_MATERIALIZE_TAG) == "true", run.tags
        assert run.tags.get(SENSOR_NAME_TAG) == AUTOMATION_SENSOR, run.tags
