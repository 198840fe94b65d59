"""The one entry point: every stage's definitions from defs/, plus what cuts across them
(environment resources, jobs and executor)."""

from __future__ import annotations

import dagster as dg

from mlops_assets import defs as defs_package
from mlops_assets.defs.common import WarehouseResource, project
from mlops_assets.storage.io_manager import DuckDBPolarsIOManager

DAILY_JOB = "daily_refresh"


def build_definitions() -> dg.Definitions:
    p = project()
    settings = p.settings
    database = str(settings.warehouse_path)
    stages = dg.components.load_defs(defs_root=defs_package)
    daily_assets = dg.AssetSelection.groups(
        "sources", "feature_refresh"
    ) - dg.AssetSelection.assets("online_features")
    cross_cutting = dg.Definitions(
        resources={
            "io_manager": DuckDBPolarsIOManager(database=database, schema_name=settings.schema),
            "warehouse": WarehouseResource(database=database, schema_name=settings.schema),
        },
        jobs=[
            dg.define_asset_job(
                DAILY_JOB,
                selection=daily_assets,
                partitions_def=p.daily,
                description="One day of sources and feature refresh.",
            )
        ],
        executor=dg.in_process_executor,
    )
    return dg.Definitions.merge(stages, cross_cutting)


defs = build_definitions()
