"""Inference: batch predictions of each day by the champion in force on that day."""

from datetime import date, timedelta

import dagster as dg

from mlops_assets.defs.catalog import predictions_lineage
from mlops_assets.defs.common import (
    Frame,
    Project,
    Stage,
    after_blocking_checks,
    champion_in_force_mapping,
    eager_within,
    ignoring_history,
    partition_days,
    project,
    rule_result,
)
from mlops_assets.defs.resources import MlflowResource, WarehouseResource

GROUP = "inference"
OWNERS = ["team:ml-engineering"]
ONE_PER_ROW = "predictions_one_per_feature_row"
FINITE = "predictions_finite"
IN_RANGE = "predictions_in_plausible_range"
LOG_COMPLETE = "serving_log_matches_log_files"


def _train_window(mlflow: MlflowResource, version: str) -> tuple[date, date]:
    """The training window a registered version was trained on (from its tags)."""
    from mlops_assets.ml import registry

    tags = registry.version_tags(mlflow.registered_model, version, mlflow.tracking_uri)
    start, end = (date.fromisoformat(d) for d in tags["train_window"].split(".."))
    return start, end


def build_assets(p: Project) -> list[dg.AssetsDefinition]:
    spec = p.spec
    checks = [
        dg.AssetCheckSpec(
            ONE_PER_ROW,
            asset="predictions",
            blocking=True,
            description="Exactly one prediction per feature row of the day.",
        ),
        dg.AssetCheckSpec(
            FINITE,
            asset="predictions",
            blocking=True,
            description="Every prediction is a finite number.",
        ),
        dg.AssetCheckSpec(
            IN_RANGE,
            asset="predictions",
            blocking=True,
            description="Predictions lie between 0 and 3x the largest outcome seen in the "
            "champion's training window.",
        ),
    ]

    @Stage(p, GROUP, OWNERS).asset(
        "predictions",
        partitions="daily",
        code=(
            "mlops_assets.ml.inference",
            "mlops_assets.ml.promotion",
            "mlops_assets.ml.history_queries",
        ),
        kinds={"duckdb", "polars", "lightgbm"},
        automation_condition=after_blocking_checks(ignoring_history(eager_within(7))),
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=timedelta(hours=72), warn_window=timedelta(hours=48)
        ),
        ins={"features": dg.AssetIn(), "champion_history": dg.AssetIn()},
        deps=[dg.AssetDep("champion", partition_mapping=champion_in_force_mapping(p))],
        check_specs=checks,
        description=p.words(
            "Predicted {outcome} for every {event} of the day, made by the champion that was in "
            "force that day (trained before it), with the model version on every row."
        ),
    )
    def predictions(
        context: dg.AssetExecutionContext,
        features: Frame,
        champion_history: Frame,
        mlflow: MlflowResource,
        warehouse: WarehouseResource,
    ):
        from mlops_assets.ml import compiled, decision_history, history_queries, inference

        mlflow.experiment_id()
        history = champion_history if champion_history.width else decision_history.empty_history()
        try:
            result = inference.predictions_stage(
                spec,
                features,
                partition_days(context),
                lambda day: history_queries.champion_in_force(history, day),
                lambda v: compiled.load_version(
                    mlflow.registered_model, v, mlflow.tracking_uri, p.settings.compiled_models_dir
                ),
                lambda v: _train_window(mlflow, v),
                lambda start, end: _max_outcome(warehouse.get(), start, end),
            )
        except (inference.NoFeaturesError, inference.NoChampionError) as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        for day, numbers in result.per_day.items():
            context.add_asset_metadata(numbers, partition_key=day.isoformat())
        lineage = {"dagster/column_lineage": predictions_lineage(spec)}
        yield dg.Output(result.frame, metadata=lineage)
        yield rule_result(result.one_per_row, check_name=ONE_PER_ROW)
        yield rule_result(result.finite, check_name=FINITE)
        yield rule_result(result.in_range, check_name=IN_RANGE)

    def _max_outcome(wh, start: date, end: date) -> float | None:
        """The largest outcome of the labeled examples of ``[start, end]``."""
        return wh.query(
            f'SELECT max("{spec.target}") AS m FROM "{wh.schema}"."labeled_examples" '
            f'WHERE "{spec.date_column}" BETWEEN ? AND ?',
            [start, end],
        )["m"][0]

    @Stage(p, GROUP, OWNERS).asset(
        "serving_log",
        partitions="daily",
        code=("mlops_assets.storage.request_log",),
        partition_column="day",
        automation_condition=dg.AutomationCondition.eager(),
        check_specs=[
            dg.AssetCheckSpec(
                LOG_COMPLETE,
                asset="serving_log",
                description="The warehouse holds exactly as many requests as the day's log files.",
            )
        ],
        description=p.words(
            "Every request the online endpoint answered that day: the keys asked for, the "
            "features used, the predicted {outcome}, the model version and the latency. "
            "Ingested from the endpoint's own log files the day after."
        ),
    )
    def serving_log(context: dg.AssetExecutionContext):
        import polars as pl

        from mlops_assets.storage import request_log

        log_dir = p.settings.request_log_dir
        days = partition_days(context)
        frame = pl.concat(
            [request_log.read_day(log_dir, day) for day in days], how="vertical_relaxed"
        )
        in_files = sum(request_log.count_day(log_dir, day) for day in days)
        errors = frame.filter(pl.col("status") >= 400).height if frame.height else 0
        yield dg.Output(
            frame,
            metadata={
                "requests": frame.height,
                "error_rate": errors / frame.height if frame.height else 0.0,
                "latency_p50_ms": float(frame["latency_ms"].quantile(0.5) or 0.0),
                "latency_p99_ms": float(frame["latency_ms"].quantile(0.99) or 0.0),
            },
        )
        yield dg.AssetCheckResult(
            check_name=LOG_COMPLETE,
            passed=frame.height == in_files,
            metadata={"observed": frame.height, "threshold": in_files, "log_dir": str(log_dir)},
        )

    return [predictions, serving_log]


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=build_assets(project()))
