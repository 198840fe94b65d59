"""The warehouse with a PostgreSQL catalog, as more than one machine would use it: two separate
`dagster asset materialize` runs write different daily partitions at once through a DuckLake
catalog in a real PostgreSQL server (the session's private one), with the data in a folder
(MLOPS_WAREHOUSE_CATALOG, MLOPS_WAREHOUSE_DATA_PATH). Both succeed, every partition's rows are
there exactly once, read back through the same catalog, and the snapshots are rows of
PostgreSQL's own tables."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dagster as dg

from mlops_assets.storage.warehouse import Warehouse
from mlops_assets_tests.deploy.harness import Database
from mlops_assets_tests.helpers import clean_env, copy_dagster_yaml
from mlops_assets_tests.test_concurrent_writers import (
    AIRINGS,
    FIRST_DAY,
    SOURCES,
    split,
    start_runs,
    wait_all,
)


def test_two_runs_write_through_a_postgres_catalog_at_once(
    make_pipeline, postgres_db: Database, tmp_path: Path
) -> None:
    pipeline = make_pipeline(as_of="2025-03-01T06:00", airings_per_day=AIRINGS)
    catalog = (
        f"postgres:dbname={postgres_db.name} host={postgres_db.host} port={postgres_db.port} "
        f"user={postgres_db.user} password={postgres_db.password}"
    )
    data_path = f"{tmp_path / 'lake_data'}/"
    home = tmp_path / "dagster_home"
    copy_dagster_yaml(home)
    dg.DagsterInstance.from_config(str(home)).dispose()
    env = clean_env(
        **pipeline.env,
        DAGSTER_HOME=str(home),
        MLOPS_WAREHOUSE_CATALOG=catalog,
        MLOPS_WAREHOUSE_DATA_PATH=data_path,
    )
    days = [FIRST_DAY + timedelta(days=i) for i in range(12)]

    wait_all(start_runs(env, split(FIRST_DAY, 12, 2)))

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 2 and {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    wh = Warehouse(pipeline.settings.warehouse_path, catalog=catalog, data_path=data_path)
    column = pipeline.spec.date_column
    for table in SOURCES:
        counts = wh.query(
            f'SELECT "{column}" AS day, count(*) AS n, count(DISTINCT airing_id) AS k '
            f'FROM mlops."{table}" GROUP BY 1 ORDER BY 1'
        )
        assert counts["day"].to_list() == days, table
        assert set(counts["n"].to_list()) == {AIRINGS} == set(counts["k"].to_list()), table
    # Nothing of the warehouse went to the embedded catalog; the snapshots live in PostgreSQL.
    assert not (pipeline.settings.warehouse_path / "catalog.sqlite").exists()
    assert list(Path(data_path).rglob("*.parquet"))
    [(snapshots,)] = postgres_db.query("SELECT count(*) FROM ducklake_snapshot")
    assert snapshots >= 2 * 2  # at least one commit per table and run
    assert "password" not in wh.describe()
