"""Environment isolation: materializing in one environment (with its own Dagster home, as the
demo does) writes only under $MLOPS_DATA_DIR/<env>/ and nothing under the other environments'
folders; two environments sharing a data folder keep separate warehouses."""

from __future__ import annotations

from datetime import date

from mlops_assets.environments import ENVIRONMENTS
from mlops_assets.run_instance import ensure_instance
from mlops_assets.storage import warehouse
from mlops_assets_tests.helpers import Pipeline, day_range

DAYS = day_range(date(2025, 3, 11), 3)


def run_in(p: Pipeline, env: str) -> None:
    p.set_env(env)
    instance = ensure_instance(p.settings)
    p.use_instance(instance)
    summary = p.run_days(DAYS)
    assert summary.failed_runs == []
    p.close()


def test_dev_writes_only_under_its_folder(pipeline: Pipeline) -> None:
    env = "dev"
    run_in(pipeline, env)

    assert sorted(p.name for p in pipeline.data_dir.iterdir()) == [env]
    for other in set(ENVIRONMENTS) - {env}:
        assert not (pipeline.data_dir / other).exists()
    written = [p for p in pipeline.data_dir.rglob("*") if p.is_file()]
    env_dir = pipeline.data_dir / env
    assert env_dir / "warehouse" / "catalog.sqlite" in written
    assert env_dir / "online_store" / "features.parquet" in written
    assert env_dir / "dagster_home" / "dagster.yaml" in written
    assert all(p.is_relative_to(env_dir) for p in written)


def test_environments_keep_separate_warehouses(pipeline: Pipeline) -> None:
    run_in(pipeline, "dev")
    dev_rows = pipeline.rows("raw_events")
    # Close the connection this process keeps to dev's warehouse (closing checkpoints it).
    warehouse.close_all()
    dev_files = {p: p.stat().st_mtime_ns for p in (pipeline.data_dir / "dev").rglob("*")}

    run_in(pipeline, "staging")
    staging_rows = pipeline.rows("raw_events")
    assert pipeline.settings.warehouse_path == pipeline.data_dir / "staging" / "warehouse"
    assert staging_rows.equals(dev_rows)
    # The staging run touched no file of dev's.
    assert {p: p.stat().st_mtime_ns for p in (pipeline.data_dir / "dev").rglob("*")} == dev_files
    assert not (pipeline.data_dir / "prod").exists()
