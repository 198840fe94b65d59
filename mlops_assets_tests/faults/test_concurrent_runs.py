"""Thirty daily partitions materialized by five OS processes at once, against one DuckDB
warehouse and one Dagster instance (DAGSTER_HOME with the repository's dagster.yaml, created
before they start): three processes backfill a range of days in one run each, two run every
other day of the last week, one run per day. Every run succeeds with no lock error, the
processes overlap in time, and every day of every daily table is stored exactly once (100 rows,
100 distinct keys)."""

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
    Pipeline,
    clean_env,
    copy_dagster_yaml,
    day_range,
    simulator_spec,
)

AIRINGS = 100
AS_OF = "2025-04-05T06:00"
DAYS = day_range(date(2025, 3, 1), 30)
# Each worker hands its days to the runner in one call: contiguous days make one run (a
# single-run backfill), days apart one run each.
WORKERS = [DAYS[0:8], DAYS[8:16], DAYS[16:23], DAYS[23::2], DAYS[24::2]]
TABLES = ("raw_events", "raw_outcomes", "features", "labeled_examples")

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
"""


def test_thirty_partitions_from_five_processes_are_each_stored_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pipeline = Pipeline(monkeypatch, tmp_path, as_of=AS_OF)
    pipeline.use_spec(simulator_spec(airings_per_day=AIRINGS))
    home = tmp_path / "dagster_home"
    copy_dagster_yaml(home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    # Created once before the workers: first-time initializations of one SQLite instance at
    # the same time race on its schema.
    dg.DagsterInstance.get().dispose()
    env = clean_env(DAGSTER_HOME=str(home), **pipeline.env)
    logs = [tmp_path / f"worker{i}.log" for i in range(len(WORKERS))]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, ",".join(d.isoformat() for d in days)],
            env=env,
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("w"),
            text=True,
        )
        for days, log in zip(WORKERS, logs, strict=True)
    ]
    try:
        # Barrier: every worker has loaded its definitions before any starts writing.
        for worker, log in zip(workers, logs, strict=True):
            assert worker.stdout.readline().strip() == "ready", log.read_text()[-3000:]
        for worker in workers:
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=400)[0] for worker in workers]
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
        line = [x for x in output.splitlines() if x.startswith("result ")][-1]
        results.append(json.loads(line.removeprefix("result ")))
    for result in results:
        assert result["failed"] == [] and result["checks"] == [], result
    assert max(r["started"] for r in results) < min(r["ended"] for r in results)

    wh = pipeline.warehouse
    for table in TABLES:
        counts = wh.query(
            "SELECT air_date AS d, count(*) AS n, count(DISTINCT airing_id) AS k "
            f'FROM mlops."{table}" GROUP BY 1 ORDER BY 1'
        )
        assert counts["d"].to_list() == DAYS, table
        assert counts["n"].to_list() == [AIRINGS] * len(DAYS), table
        assert counts["k"].to_list() == [AIRINGS] * len(DAYS), table
    stats_days = wh.query("SELECT DISTINCT day FROM mlops.outcome_stats ORDER BY 1")["day"]
    assert stats_days.to_list() == DAYS

    instance = dg.DagsterInstance.get()
    try:
        for asset in ("raw_events", "features", "labeled_examples"):
            stored = instance.get_materialized_partitions(dg.AssetKey(asset))
            assert stored == {d.isoformat() for d in DAYS}, asset
        runs = instance.get_runs()
        assert len(runs) == sum(r["runs"] for r in results)
        assert {run.status for run in runs} == {dg.DagsterRunStatus.SUCCESS}
    finally:
        instance.dispose()
