"""Model training: one asset per candidate, baselines included, trained on a window of labeled
examples, scored on a later holdout window, logged to MLflow and registered as a model version."""

import math
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

import dagster as dg

from mlops_assets.defs.common import (
    REGISTRY_POOL,
    Frame,
    Project,
    Stage,
    after_blocking_checks,
    code_version,
    project,
)
from mlops_assets.defs.resources import MlflowResource
from mlops_assets.ml.candidates import Candidate, candidates_for

if TYPE_CHECKING:
    # Imported where used, so that loading the definitions does not import polars (asset
    # signatures name `Frame`: Dagster evaluates them when it decorates).
    from mlops_assets.ml.training import LogFn, Logged, TrainResult, Windows

GROUP = "model_training"
OWNERS = ["team:data-science"]
SEED = 7


def training_cutoff(context: dg.AssetExecutionContext) -> date:
    """A training partition trains on data before the end of its window.

    A step asked for anything but one training date (a daily partition, from a launch that
    selected daily and training-date assets together, or a range) is refused here, before it
    trains, logs or registers anything, naming the training date that holds the day."""
    partitions = context.assets_def.partitions_def
    asked = context.partition_key_range
    if asked.start == asked.end and partitions.has_partition_key(asked.start):
        return context.partition_time_window.end.date()
    first = datetime.fromisoformat(asked.start).replace(tzinfo=UTC)
    holding = partitions.get_partition_key_for_timestamp(first.timestamp())
    shown = asked.start if asked.start == asked.end else f"{asked.start}...{asked.end}"
    raise dg.Failure(
        description=(
            f"{context.asset_key.to_user_string()} is partitioned by training date (keys like "
            f"{partitions.get_first_partition_key()}), and this run asked for {shown}, which is "
            "not one training date (a daily partition launched with daily and training assets "
            "selected together?). Nothing was trained or logged. Launch the train_and_deploy "
            f"job for training date {holding} (the one whose week holds {asked.start}), and "
            "daily assets on their own."
        ),
        allow_retries=False,
    )


def training_input_mapping(p: Project) -> dg.TimeWindowPartitionMapping:
    """Daily labeled examples covering the train and holdout windows of a training partition."""
    spec = p.spec
    period = 1 if spec.training.cadence == "daily" else 7
    span = spec.training.train_days + spec.training.holdout_days + spec.label_lag_days
    return dg.TimeWindowPartitionMapping(start_offset=-math.ceil(max(0, span - period) / period))


def candidate_code_version(candidate: Candidate) -> str:
    """The training code of one candidate: its fit function and parameters, and the training,
    model and registry modules (what it logs is part of what it produces)."""
    return code_version(
        "mlops_assets.ml.training",
        "mlops_assets.ml.model",
        "mlops_assets.ml.registry",
        "mlops_assets.ml.run_artifacts",
        extra=(candidate.fit, sorted(candidate.params.items())),
    )


def build_candidate_asset(p: Project, candidate: Candidate) -> dg.AssetsDefinition:
    spec = p.spec
    kinds = {"lightgbm", "mlflow", "duckdb"} if candidate.role == "model" else {"mlflow", "duckdb"}
    version = candidate_code_version(candidate)

    @Stage(p, GROUP, OWNERS, REGISTRY_POOL).asset(
        candidate.asset_name,
        partitions="training",
        version=version,
        kinds=kinds,
        metadata={"role": candidate.role},
        table="candidate",
        automation_condition=after_blocking_checks(dg.AutomationCondition.eager()),
        tags={"role": candidate.role},
        ins={"labeled_examples": dg.AssetIn(partition_mapping=training_input_mapping(p))},
        description=p.words(
            f"Candidate model `{candidate.name}` ({candidate.role}): "
            f"{candidate.description} Trained on {spec.training.train_days} days of labeled "
            f"{{events}}, scored on the next {spec.training.holdout_days} days; the run and "
            "model version live in MLflow. Value: its model card row."
        ),
    )
    def _candidate(
        context: dg.AssetExecutionContext, labeled_examples: Frame, mlflow: MlflowResource
    ) -> Frame:
        from mlops_assets.ml import training

        try:
            run = training.candidate_stage(
                spec,
                candidate,
                labeled_examples,
                datetime.fromisoformat(context.partition_key).date(),
                training_cutoff(context),
                _logger(context, mlflow, candidate, version),
                seed=SEED,
            )
        except training.TrainingDataError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        mlflow_run = dg.MetadataValue.url(run.logged.run_url)
        context.add_output_metadata({**run.metadata(), "mlflow_run": mlflow_run})
        return run.card

    return _candidate


def _logger(
    context: dg.AssetExecutionContext, mlflow: MlflowResource, candidate: Candidate, version: str
) -> "LogFn":
    """How a candidate trained in this run is logged: as a run under the training date's
    parent run in the environment's experiment, its model registered as a version."""
    from mlops_assets.ml import registry

    def log(result: "TrainResult", windows: "Windows", fingerprint: str) -> "Logged":
        experiment_id = mlflow.experiment_id()
        partition = context.partition_key
        return registry.log_candidate(
            experiment_id=experiment_id,
            candidate=candidate,
            result=result,
            windows=windows,
            registered_model_name=mlflow.registered_model,
            partition=partition,
            data_fingerprint=fingerprint,
            dagster_run_id=context.run_id,
            parent_run_id=registry.ensure_partition_run(experiment_id, partition, context.run_id),
            code_version=version,
            ui_base=mlflow.ui_base,
        )

    return log


def build_assets(p: Project) -> list[dg.AssetsDefinition]:
    return [build_candidate_asset(p, c) for c in candidates_for(p.spec)]


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=build_assets(project()))
