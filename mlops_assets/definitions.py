"""The one entry point: every stage's definitions from defs/, plus what cuts across them
(environment resources, jobs and executor)."""

from __future__ import annotations

import importlib
import pkgutil
import warnings

import dagster as dg
from dagster.components.definitions import LazyDefinitions

from mlops_assets import defs as defs_package
from mlops_assets.defs.common import project
from mlops_assets.defs.resources import AlertSinkResource, MlflowResource, WarehouseResource
from mlops_assets.environments import WEBHOOK_VAR
from mlops_assets.storage.io_manager import DuckDBPolarsIOManager

AUTOMATION_SENSOR = "automation"
DAILY_JOB = "daily_refresh"
TRAINING_JOB = "train_and_deploy"
METRICS_JOB = "metric_refresh"
SCORING_JOB = "daily_scoring"
CYCLE_JOB = "daily_cycle"
# One day end to end, in the order the data flows.
CYCLE_ASSETS = (
    "raw_events",
    "raw_outcomes",
    "outcome_stats",
    "features",
    "labeled_examples",
    "online_features",
    "predictions",
    "drift_report",
    "serving_log",
    "business_metrics",
)


def load_stages() -> dg.Definitions:
    """Every ``@dg.definitions`` function of the modules under ``defs/``, merged.

    What ``dg.components.load_defs`` finds, without what it adds on every load: a catalogue of
    the installed component types as JSON (about 0.25 s), for authoring YAML components, which
    this project does not use."""
    found: dict[int, LazyDefinitions] = {}
    prefix = defs_package.__name__ + "."
    with warnings.catch_warnings():
        # The Beta and Preview parameters in use (single-run backfills, partitioned check
        # specs) are deliberate; load_defs silences the same warnings.
        warnings.simplefilter("ignore", dg.BetaWarning)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        for info in pkgutil.walk_packages(defs_package.__path__, prefix):
            module = importlib.import_module(info.name)
            for value in vars(module).values():
                if isinstance(value, LazyDefinitions):
                    found[id(value)] = value
        return dg.Definitions.merge(*(load() for load in found.values()))


def build_definitions() -> dg.Definitions:
    p = project()
    settings = p.settings
    warehouse = {
        "database": str(settings.warehouse_path),
        "schema_name": settings.schema,
        "catalog": settings.warehouse_catalog,
        "data_path": settings.warehouse_data_path,
    }
    stages = load_stages()
    # The data profile costs an Evidently report per day: it is not part of a day's refresh,
    # but of the days that are watched (daily_scoring), and automation builds each new day's.
    daily_assets = dg.AssetSelection.groups(
        "sources", "feature_refresh"
    ) - dg.AssetSelection.assets("online_features", "data_profile")
    cross_cutting = dg.Definitions(
        resources={
            "io_manager": DuckDBPolarsIOManager(**warehouse),
            "warehouse": WarehouseResource(**warehouse),
            "alerts": AlertSinkResource(
                env=settings.env,
                path=str(settings.alerts_path),
                webhook_url=dg.EnvVar(WEBHOOK_VAR) if settings.alert_webhook_set else None,
                webhook_format=settings.alert_webhook_format,
                ui_base=settings.dagster_url,
            ),
            "mlflow": MlflowResource(
                tracking_uri=settings.mlflow_tracking_uri,
                artifacts_dir=str(settings.mlflow_artifacts_dir),
                registered_model=settings.registered_model_name,
                ui_base=settings.mlflow_url,
                experiment=settings.mlflow_experiment,
            ),
        },
        jobs=[
            dg.define_asset_job(
                DAILY_JOB,
                selection=daily_assets,
                partitions_def=p.daily,
                description="One day of sources and feature refresh.",
            ),
            dg.define_asset_job(
                SCORING_JOB,
                selection=dg.AssetSelection.assets("predictions", "drift_report", "data_profile"),
                partitions_def=p.daily,
                description=(
                    "Predictions of a day and what watches it (drift, the day's data profile), "
                    "once a champion is in."
                ),
            ),
            dg.define_asset_job(
                METRICS_JOB,
                selection=dg.AssetSelection.assets("serving_log", "business_metrics"),
                partitions_def=p.daily,
                description="Business metrics of days whose actuals have landed.",
            ),
            dg.define_asset_job(
                CYCLE_JOB,
                selection=dg.AssetSelection.assets(*CYCLE_ASSETS),
                partitions_def=p.daily,
                description=(
                    "One day end to end in one run: sources, features, the online store, "
                    "predictions, drift, the serving log and business metrics."
                ),
            ),
            dg.define_asset_job(
                TRAINING_JOB,
                selection=dg.AssetSelection.groups("model_training", "model_deployment")
                | dg.AssetSelection.assets("drift_reference"),
                partitions_def=p.training,
                description="Train every candidate of a training date and pick the champion.",
            ),
        ],
        sensors=[
            dg.AutomationConditionSensorDefinition(
                AUTOMATION_SENSOR,
                target=dg.AssetSelection.all(),
                default_status=dg.DefaultSensorStatus.RUNNING,
                minimum_interval_seconds=30,
                description="Runs the pipeline by itself from the assets' automation conditions.",
            )
        ],
        executor=dg.in_process_executor,
    )
    return dg.Definitions.merge(stages, cross_cutting)


defs = build_definitions()
