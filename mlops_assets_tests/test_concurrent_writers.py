"""Several Dagster runs writing the warehouse at once: four `dagster asset materialize`
processes on one Dagster home (the repository's dagster.yaml) materialize 30 different daily
partitions of the source assets concurrently on the embedded DuckLake (SQLite catalog); every
run succeeds and every partition's rows are there exactly once, each materialization naming the
snapshot it committed. The PostgreSQL-catalog case, from two separate runs, is
``deploy/test_lake_postgres.py``."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from mlops_assets.environments import REPO_ROOT
from mlops_assets.storage.io_manager import SNAPSHOT
from mlops_assets_tests.helpers import clean_env, copy_dagster_yaml

FIRST_DAY = date(2025, 1, 10)
AIRINGS = 60
SOURCES = ("raw_events", "raw_outcomes")


def start_runs(env: dict[str, str], ranges: list[tuple[date, date]]) -> list[subprocess.Popen]:
    """One `dagster asset materialize` process per range of days, all started at once."""
    dagster = str(Path(sys.executable).with_name("dagster"))
    return [
        subprocess.Popen(
            [
                *(dagster, "asset", "materialize", "-m", "mlops_assets.definitions"),
                *("--select", ",".join(SOURCES)),
                *("--partition-range", f"{first.isoformat()}...{last.isoformat()}"),
            ],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for first, last in ranges
    ]


def wait_all(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        out, _ = process.communicate(timeout=600)
        assert process.returncode == 0, out[-4000:]


def split(first: date, days: int, parts: int) -> list[tuple[date, date]]:
    """``days`` days from ``first`` in ``parts`` contiguous ranges."""
    sizes = [days // parts + (1 if i < days % parts else 0) for i in range(parts)]
    ranges, start = [], first
    for size in sizes:
        ranges.append((start, start + timedelta(days=size - 1)))
        start += timedelta(days=size)
    return ranges


def assert_each_day_once(pipeline, days: list[date]) -> None:
    column = pipeline.spec.date_column
    for table in SOURCES:
        counts = pipeline.warehouse.query(
            f'SELECT "{column}" AS day, count(*) AS n, count(DISTINCT airing_id) AS k '
            f'FROM mlops."{table}" GROUP BY 1 ORDER BY 1'
        )
        assert counts["day"].to_list() == days, table
        assert set(counts["n"].to_list()) == {AIRINGS} == set(counts["k"].to_list()), table


def test_four_runs_write_30_daily_partitions_at_once(make_pipeline, tmp_path: Path) -> None:
    pipeline = make_pipeline(as_of="2025-03-01T06:00", airings_per_day=AIRINGS)
    home = tmp_path / "dagster_home"
    copy_dagster_yaml(home)
    env = clean_env(**pipeline.env, DAGSTER_HOME=str(home))
    days = [FIRST_DAY + timedelta(days=i) for i in range(30)]
    # The instance's SQLite storages exist before the runs start (as on any used Dagster home):
    # four processes creating them at once race in Dagster's own migrations.
    dg.DagsterInstance.from_config(str(home)).dispose()

    wait_all(start_runs(env, split(FIRST_DAY, 30, 4)))

    assert_each_day_once(pipeline, days)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 4 and {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
        for name in SOURCES:
            key = dg.AssetKey(name)
            assert instance.get_materialized_partitions(key) == {d.isoformat() for d in days}
            event = instance.get_latest_materialization_event(key)
            assert event is not None and event.asset_materialization is not None
            snapshot = event.asset_materialization.metadata[SNAPSHOT].value
            assert isinstance(snapshot, int) and snapshot > 0
