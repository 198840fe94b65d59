"""Two OS processes materialize different days of the pipeline into the same DuckDB warehouse and
the same Dagster instance (DAGSTER_HOME with the repository's dagster.yaml) at the same time: both
succeed without a lock error, their runs really overlap, and every partition is stored once."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.environments import REPO_ROOT
from mlops_assets_tests.helpers import (
    SMALL_AIRINGS_PER_DAY,
    Pipeline,
    clean_env,
    copy_dagster_yaml,
    day_range,
)

WORKER = """
import json, sys, time
from datetime import date

import dagster as dg

from mlops_assets.definitions import build_definitions
from mlops_assets.defs.common import project
from mlops_assets.runner import run_days

days = [date.fromisoformat(d) for d in sys.argv[1].split(",")]
defs = build_definitions()
instance = dg.DagsterInstance.get()
settings = project().settings

sys.stdout.write("ready\\n")
sys.stdout.flush()
if sys.stdin.readline().strip() != "go":
    sys.exit("no go signal")

started = time.time()
summary = run_days(defs, instance, settings, days)
result = {
    "started": started,
    "ended": time.time(),
    "runs": summary.runs,
    "failed": summary.failed_runs,
    "checks": summary.checks_failed,
}
sys.stdout.write("result " + json.dumps(result) + "\\n")
instance.dispose()
sys.exit(1 if summary.failed_runs else 0)
"""

FIRST = day_range(date(2025, 3, 1), 4)
SECOND = day_range(date(2025, 3, 5), 4)


def start_worker(days: list[date], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, ",".join(d.isoformat() for d in days)],
        env=env,
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )


def test_two_processes_write_the_same_warehouse_at_once(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "dagster_home"
    copy_dagster_yaml(home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    # The instance exists before the workers start, as it does once `dagster dev` or the demo has
    # run: two first-time initializations of one SQLite instance at once race on its schema.
    dg.DagsterInstance.get().dispose()
    env = clean_env(DAGSTER_HOME=str(home), **pipeline.env)
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    workers = [start_worker(FIRST, env, logs[0]), start_worker(SECOND, env, logs[1])]
    try:
        # Barrier: both have loaded their definitions before either starts writing.
        for worker, log in zip(workers, logs, strict=True):
            assert worker.stdout.readline().strip() == "ready", log.read_text()[-3000:]
        for worker in workers:
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=240)[0] for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    results = []
    for worker, output, log in zip(workers, outputs, logs, strict=True):
        stderr = log.read_text()
        assert worker.returncode == 0, stderr[-3000:]
        assert "Could not set lock" not in stderr
        assert "database is locked" not in stderr
        line = [ln for ln in output.splitlines() if ln.startswith("result ")][-1]
        results.append(json.loads(line.removeprefix("result ")))
    for result in results:
        assert result["failed"] == []
        assert result["checks"] == []
    # The two workers' runs really overlapped in time.
    assert max(r["started"] for r in results) < min(r["ended"] for r in results)

    all_days = FIRST + SECOND
    wh = pipeline.warehouse
    for table in ("raw_events", "features", "raw_outcomes", "labeled_examples"):
        counts = wh.query(
            "SELECT air_date AS d, count(*) AS n, count(DISTINCT airing_id) AS k "
            f'FROM mlops."{table}" GROUP BY 1 ORDER BY 1'
        )
        assert counts["d"].to_list() == all_days, table
        assert counts["n"].to_list() == [SMALL_AIRINGS_PER_DAY] * len(all_days), table
        assert counts["k"].to_list() == [SMALL_AIRINGS_PER_DAY] * len(all_days), table

    instance = dg.DagsterInstance.get()
    try:
        for asset in ("raw_events", "features", "raw_outcomes"):
            stored = instance.get_materialized_partitions(dg.AssetKey(asset))
            assert stored == {d.isoformat() for d in all_days}, asset
        runs = instance.get_runs()
        assert len(runs) == sum(r["runs"] for r in results)
        assert {run.status for run in runs} == {dg.DagsterRunStatus.SUCCESS}
    finally:
        instance.dispose()
