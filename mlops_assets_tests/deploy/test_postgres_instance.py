"""deploy/dagster.yaml against a real PostgreSQL server: the file as shipped is a valid instance
config naming the Kubernetes launcher, and with that launcher swapped for the default one (the
cluster launcher's package, dagster-k8s, is not installed here) it gives an instance whose runs,
materializations and check results live in Postgres, read back by a new instance and by SQL.

The server is private to the test session (initdb into a temporary folder as the ``postgres``
user, a free port of 127.0.0.1, a password login); see harness.PostgresServer. The days run are
the dataset's first two, whose feature history window lies wholly before the first partition.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.config import dagster_instance_config
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster_postgres import (
    PostgresEventLogStorage,
    PostgresRunStorage,
    PostgresScheduleStorage,
)

from mlops_assets.defs.common import REGISTRY_POOL
from mlops_assets.defs.feature_refresh.checks import POINT_IN_TIME
from mlops_assets.runner import ALL_DAILY
from mlops_assets_tests.deploy.harness import (
    DEPLOY_INSTANCE,
    Database,
    deploy_instance_config,
    write_deploy_home,
)
from mlops_assets_tests.helpers import day_range

FIRST_DAY = date(2025, 1, 1)
DAYS = day_range(FIRST_DAY, 2)
PARTITIONS = {d.isoformat() for d in DAYS}


def test_shipped_config_is_valid_and_names_the_kubernetes_launcher(tmp_path: Path) -> None:
    home = tmp_path / "shipped_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DEPLOY_INSTANCE.read_text())

    config, custom_class = dagster_instance_config(str(home))

    assert custom_class is None
    assert config["run_launcher"]["module"] == "dagster_k8s"
    assert config["run_launcher"]["class"] == "K8sRunLauncher"
    # The Kubernetes launcher injects the database password of postgres_password_secret as
    # DAGSTER_PG_PASSWORD into each run pod: the storage must read exactly that variable.
    assert config["run_launcher"]["config"]["postgres_password_secret"]
    assert config["storage"]["postgres"]["postgres_db"]["password"] == {
        "env": "DAGSTER_PG_PASSWORD"
    }
    assert config["concurrency"]["pools"]["default_limit"] == 1


@pytest.fixture
def postgres_home(tmp_path: Path, postgres_db: Database, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var, value in postgres_db.dagster_env().items():
        monkeypatch.setenv(var, value)
    return write_deploy_home(tmp_path / "dagster_home")


def test_instance_from_deploy_config_uses_postgres_and_the_run_queue(postgres_home: Path) -> None:
    with dg.DagsterInstance.from_config(str(postgres_home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert instance.run_launcher.__class__.__name__ == "DefaultRunLauncher"
        queue = instance.get_concurrency_config()
        expected = deploy_instance_config()["concurrency"]
        assert queue.pool_config.default_pool_limit == expected["pools"]["default_limit"] == 1
        assert queue.run_queue_config.max_concurrent_runs == expected["runs"]["max_concurrent_runs"]


def test_pipeline_runs_are_recorded_in_postgres(
    make_pipeline, postgres_home: Path, postgres_db: Database
) -> None:
    pipeline = make_pipeline()
    pipeline.use_instance(dg.DagsterInstance.from_config(str(postgres_home)))

    summary = pipeline.run_days(DAYS)

    assert summary.failed_runs == []
    assert summary.checks_failed == []

    # A new instance object, built from the same file, sees what the first one wrote.
    with dg.DagsterInstance.from_config(str(postgres_home)) as reader:
        runs = reader.get_runs()
        assert len(runs) == summary.runs == 2
        assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
        assert {r.job_name for r in runs} == {"daily_refresh", "__ASSET_JOB"}
        for name in ALL_DAILY:
            key = dg.AssetKey(name)
            assert reader.get_materialized_partitions(key) == PARTITIONS, name
        assert reader.get_latest_materialization_event(dg.AssetKey("online_features"))
        check = dg.AssetCheckKey(dg.AssetKey("features"), POINT_IN_TIME)
        records = reader.event_log_storage.get_asset_check_execution_history(check, limit=10)
        assert AssetCheckExecutionRecordStatus.SUCCEEDED in {r.status for r in records}
        # The "registry" pool has the file's default limit, and no slot is left claimed.
        pool = reader.event_log_storage.get_concurrency_info(REGISTRY_POOL)
        assert (pool.limit, pool.claimed_slots) == (1, [])

    # And the rows are in Postgres' own tables, read with psycopg2 as the deployment's login.
    statuses = postgres_db.query("SELECT status FROM runs ORDER BY create_timestamp")
    assert statuses == [("SUCCESS",), ("SUCCESS",)]
    materialized = postgres_db.query(
        "SELECT asset_key, partition FROM event_logs"
        " WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND partition IS NOT NULL"
    )
    by_asset: dict[str, set[str]] = {}
    for asset_key, partition in materialized:
        by_asset.setdefault(asset_key, set()).add(partition)
    assert by_asset == {f'["{name}"]': PARTITIONS for name in ALL_DAILY}
