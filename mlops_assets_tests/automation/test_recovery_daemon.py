"""Dead-run recovery under the real daemon: a `dagster asset materialize` run, SIGKILLed by PID
while it holds a features write open, stays STARTED; `dagster-daemon run` on a Dagster home
holding the repository's dagster.yaml (its `recover_dead_runs` sensor running by default) marks
it failed, naming the process that is gone, with nothing launched by hand."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import dagster as dg

from mlops_assets.defs.recovery import RECOVERY_SENSOR
from mlops_assets.environments import REPO_ROOT
from mlops_assets_tests.deploy.harness import running, start_process, wait_until
from mlops_assets_tests.faults.test_killed_run import (
    DAY,
    HOLD_DEADLINE_S,
    _start_holder,
    _wait_for_line,
)
from mlops_assets_tests.helpers import FIXED_AS_OF, clean_env, copy_dagster_yaml

BIN = Path(sys.executable).parent
RECOVERY_DEADLINE_S = 240


def test_daemon_fails_a_killed_cli_run(make_pipeline, tmp_path: Path) -> None:
    pipeline = make_pipeline(as_of=FIXED_AS_OF, airings_per_day=100)
    home = tmp_path / "dagster_home"
    copy_dagster_yaml(home)
    env = clean_env(**pipeline.env, DAGSTER_HOME=str(home))
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        holder = _start_holder(env, DAY)
        _wait_for_line(holder, "holding a features write open", HOLD_DEADLINE_S)
        started = dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
        [held_by] = [run.run_id for run in instance.get_runs(filters=started)]
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        assert instance.get_run_by_id(held_by).status == dg.DagsterRunStatus.STARTED

        daemon = start_process(
            "daemon",
            [str(BIN / "dagster-daemon"), "run", "-w", str(REPO_ROOT / "workspace.yaml")],
            env,
            tmp_path / "logs",
        )
        with running([daemon]):

            def failed() -> bool:
                assert daemon.process.poll() is None, daemon.log[-3000:]
                return instance.get_run_by_id(held_by).status == dg.DagsterRunStatus.FAILURE

            wait_until(failed, RECOVERY_DEADLINE_S, f"the daemon to fail run {held_by}")
            assert RECOVERY_SENSOR in daemon.log
        message = instance.all_logs(held_by, of_type=dg.DagsterEventType.RUN_FAILURE)[-1].message
        assert f"the process {holder.pid}" in message and "is gone" in message, message
        assert not instance.get_runs(filters=started)
    finally:
        instance.dispose()
