"""A run killed with SIGKILL inside the warehouse write of its `features` step, through Dagster:
the daily job of a day runs (as the demo runs it, through ``mlops_assets.runner``) in a
subprocess against a real DAGSTER_HOME with the repository's dagster.yaml; the subprocess kills
itself between the DELETE and the INSERT of the features partition. The previous features of
the day are intact, the dead run is failed by the next runner, and the re-run completes with the
new rows.

A run started outside the runner, by `dagster asset materialize`, and SIGKILLed by PID while it
holds an open write of the features partition: the next `mlops-assets demo` finds its process
gone (the pid Dagster recorded when the run started), fails it, finishes and names the run it
cleaned up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from mlops_assets.environments import REPO_ROOT
from mlops_assets.run_instance import RUNNER_PID_TAG
from mlops_assets_tests.helpers import (
    Pipeline,
    clean_env,
    copy_dagster_yaml,
    simulator_spec,
)

DAY = date(2025, 3, 10)
AIRINGS = 100

WORKER = """
import json, os, signal, sys
from datetime import date

import dagster as dg

from mlops_assets.definitions import build_definitions
from mlops_assets.defs.common import project
from mlops_assets.runner import run_days
from mlops_assets.storage.warehouse import Warehouse

day, kill = date.fromisoformat(sys.argv[1]), sys.argv[2] == "kill"
defs = build_definitions()
instance = dg.DagsterInstance.get()
if kill:
    insert = Warehouse._insert

    def die(self, con, table):
        if table == "features":
            left = con.execute(
                "SELECT count(*) FROM mlops.features WHERE air_date = ?", [day]
            ).fetchone()[0]
            sys.stdout.write(f"features_rows_after_delete={left}\\n")
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return insert(self, con, table)

    Warehouse._insert = die
summary = run_days(defs, instance, project().settings, [day])
sys.stdout.write("result " + json.dumps({"failed": summary.failed_runs}) + "\\n")
instance.dispose()
"""


def run_worker(mode: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WORKER, DAY.isoformat(), mode],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def runs_of(instance: dg.DagsterInstance) -> dict[str, dg.DagsterRun]:
    return {run.run_id: run for run in instance.get_runs()}


def test_killed_features_write_keeps_the_day_and_a_rerun_completes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pipeline = Pipeline(monkeypatch, tmp_path)
    old_spec = pipeline.use_spec(simulator_spec(airings_per_day=AIRINGS, seed=7))
    home = tmp_path / "dagster_home"
    copy_dagster_yaml(home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = dg.DagsterInstance.get()
    pipeline.use_instance(instance)
    try:
        # The day as first stored, by a runner in this process.
        first = pipeline.run_days([DAY])
        assert first.failed_runs == [] and first.checks_failed == []
        old = pipeline.rows("features", DAY)
        assert old.height == AIRINGS

        # The source re-delivers the day (another seed, other values); the run dies mid-write.
        new_spec = pipeline.use_spec(simulator_spec(airings_per_day=AIRINGS, seed=8))
        assert new_spec != old_spec
        env = clean_env(DAGSTER_HOME=str(home), **pipeline.env)
        before = set(runs_of(instance))
        killed = run_worker("kill", env)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        assert killed.stdout.splitlines() == ["features_rows_after_delete=0"]

        # The old features are intact; the raw events the dead run committed are the new ones.
        assert pipeline.rows("features", DAY).equals(old)
        raw = pipeline.rows("raw_events", DAY)
        assert raw.height == AIRINGS
        assert not raw["spend"].sort().equals(old["spend"].sort())
        dead = [r for r in runs_of(instance).values() if r.run_id not in before]
        dead = [r for r in dead if r.status == dg.DagsterRunStatus.STARTED]
        assert len(dead) == 1
        dead_run = dead[0]
        assert dead_run.tags[RUNNER_PID_TAG] != ""

        # A re-run in a fresh process fails the dead run, gets its pool slot and completes.
        rerun = run_worker("run", env, timeout=180)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        line = [x for x in rerun.stdout.splitlines() if x.startswith("result ")][-1]
        assert json.loads(line.removeprefix("result ")) == {"failed": []}
        failed = instance.get_run_by_id(dead_run.run_id)
        assert failed.status == dg.DagsterRunStatus.FAILURE
        records = instance.all_logs(dead_run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        assert f"the process {dead_run.tags[RUNNER_PID_TAG]}" in records[-1].message
        assert "is gone" in records[-1].message

        new = pipeline.rows("features", DAY)
        assert new.height == AIRINGS
        assert new["airing_id"].n_unique() == AIRINGS
        assert new["spend"].sort().equals(raw["spend"].sort().cast(pl.Float64))
        assert not new["spend"].sort().equals(old["spend"].sort())
        counts = pipeline.warehouse.query(
            "SELECT count(*) AS n, count(DISTINCT airing_id) AS k FROM mlops.features"
        ).row(0)
        assert counts == (AIRINGS, AIRINGS)
    finally:
        instance.dispose()


# `dagster asset materialize` in a process that stops inside the features write (its transaction
# open, the day's old rows deleted in it) until it is killed: it prints a line, then blocks
# reading its stdin.
CLI_HOLDER = """
import sys

from mlops_assets.storage.warehouse import Warehouse

insert = Warehouse._insert


def hold(self, con, table):
    if table == "features":
        sys.stdout.write("holding a features write open\\n")
        sys.stdout.flush()
        sys.stdin.read()
    return insert(self, con, table)


Warehouse._insert = hold
from dagster._cli import main

sys.argv = ["dagster", *sys.argv[1:]]
main()
"""
HOLD_DEADLINE_S = 180
DEMO_DEADLINE_S = 300


def _start_holder(env: dict[str, str], day: date) -> subprocess.Popen:
    args = ["asset", "materialize", "-m", "mlops_assets.definitions"]
    args += ["--select", "raw_events,features", "--partition", day.isoformat()]
    return subprocess.Popen(
        [sys.executable, "-c", CLI_HOLDER, *args],
        env=env,
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _wait_for_line(proc: subprocess.Popen, expected: str, deadline_s: float) -> list[str]:
    """Lines of ``proc``'s stdout up to the one containing ``expected`` (read on a thread, so
    the wait is bounded)."""
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if expected in line:
                found.set()
        found.set()

    threading.Thread(target=read, daemon=True).start()
    found.wait(deadline_s)
    assert any(expected in line for line in lines), (
        f"no line with {expected!r} within {deadline_s} s (exit {proc.poll()}):\n"
        + "\n".join(lines[-40:])
    )
    return lines


def _started_runs(instance: dg.DagsterInstance) -> set[str]:
    filters = dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
    return {run.run_id for run in instance.get_runs(filters=filters)}


def test_demo_cleans_up_a_killed_cli_run_that_held_the_warehouse(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pipeline = Pipeline(monkeypatch, tmp_path)
    pipeline.use_spec(simulator_spec(airings_per_day=AIRINGS, seed=7))
    home = pipeline.data_dir / "dev" / "dagster_home"  # the demo's own instance
    copy_dagster_yaml(home)
    env = clean_env(DAGSTER_HOME=str(home), **pipeline.env)
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        holder = _start_holder(env, DAY)
        _wait_for_line(holder, "holding a features write open", HOLD_DEADLINE_S)
        [held_by] = _started_runs(instance)
        run = instance.get_run_by_id(held_by)
        assert RUNNER_PID_TAG not in run.tags  # not a run of the project's runner
        os.kill(holder.pid, signal.SIGKILL)
        assert holder.wait(timeout=30) == -signal.SIGKILL
        assert _started_runs(instance) == {held_by}  # the dead run still looks started

        started = time.monotonic()
        demo = subprocess.run(
            [str(Path(sys.executable).with_name("mlops-assets")), "demo", "--days", "3"],
            env=clean_env(**pipeline.env),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=DEMO_DEADLINE_S,
        )
        output = demo.stdout + demo.stderr
        assert demo.returncode == 0, output[-3000:]
        assert f"cleaned up dead run {held_by}" in output, output
        assert f"process {holder.pid} gone" in output, output
        assert time.monotonic() - started < DEMO_DEADLINE_S

        failed = instance.get_run_by_id(held_by)
        assert failed.status == dg.DagsterRunStatus.FAILURE
        message = instance.all_logs(held_by, of_type=dg.DagsterEventType.RUN_FAILURE)[-1].message
        assert f"the process {holder.pid}" in message and "is gone" in message, message
        assert _started_runs(instance) == set()
        assert pipeline.rows("features").height == 3 * AIRINGS  # the demo's three days
    finally:
        instance.dispose()
