"""Model monitoring: the reference each champion is watched against."""

from datetime import date, datetime, timedelta

import dagster as dg

from mlops_assets.defs.catalog import schema_metadata
from mlops_assets.defs.common import (
    SINGLE_RUN,
    WAREHOUSE_POOL,
    Frame,
    Project,
    after_blocking_checks,
    after_history,
    champion_in_force_mapping,
    code_version,
    eager_within,
    partition_days,
    project,
    severity,
    table_metadata,
)
from mlops_assets.defs.model_monitoring.checks import (
    DRIFT_SHARE,
    NULL_SHARE,
    PERSISTENT,
    PREDICTION_DRIFT,
    drift_check_specs,
)
from mlops_assets.defs.model_training.assets import TRAINING_DATE
from mlops_assets.defs.resources import AlertSinkResource, MlflowResource, WarehouseResource

OWNERS = ["team:ml-engineering"]
REFERENCE_ROWS = 5_000
SEED = 11


def build_assets(p: Project) -> list[dg.AssetsDefinition]:
    spec = p.spec

    @dg.asset(
        name="drift_reference",
        group_name="model_monitoring",
        automation_condition=after_blocking_checks(after_history()),
        partitions_def=p.training,
        pool=WAREHOUSE_POOL,
        owners=OWNERS,
        kinds={"duckdb", "polars"},
        code_version=code_version("mlops_assets.ml.training", "mlops_assets.ml.promotion"),
        metadata=table_metadata(TRAINING_DATE, **schema_metadata(spec, "drift_reference")),
        ins={"champion_history": dg.AssetIn()},
        deps=["labeled_examples"],
        description=p.words(
            "What normal looks like for the champion chosen on this training date: a bounded "
            f"sample (up to {REFERENCE_ROWS:,} rows) of its training window's features with its "
            "predictions. Daily drift reports compare each day's {events} and predictions "
            "against it. Not built when the champion's blocking checks fail."
        ),
    )
    def drift_reference(
        context: dg.AssetExecutionContext,
        champion_history: Frame,
        mlflow: MlflowResource,
        warehouse: WarehouseResource,
    ) -> Frame:
        import polars as pl

        from mlops_assets.ml import promotion, registry
        from mlops_assets.ml.training import sample_rows

        mlflow.experiment_id()
        wh = warehouse.get()
        training_date = datetime.fromisoformat(context.partition_key).date()
        history = champion_history if champion_history.width else promotion.empty_history()
        watched = promotion.watched_versions(history).filter(
            pl.col("training_date") == training_date
        )
        version = watched["version"][-1] if watched.height else None
        if version is None:
            raise dg.Failure(
                description=f"no champion in force or proposed after training date {training_date}",
                allow_retries=False,
            )
        tags = registry.version_tags(mlflow.registered_model, version, mlflow.tracking_uri)
        start, end = (date.fromisoformat(d) for d in tags["train_window"].split(".."))
        window = wh.read("labeled_examples", spec.date_column, start, end + timedelta(days=1))
        sample = sample_rows(window, REFERENCE_ROWS, SEED)
        model = registry.load_model_version(mlflow.registered_model, version, mlflow.tracking_uri)
        frame = sample.select(spec.date_column, *spec.model_feature_columns).with_columns(
            pl.Series("prediction", model.predict(sample), dtype=pl.Float64),
            pl.lit(version, dtype=pl.String).alias("model_version"),
            pl.lit(training_date, dtype=pl.Date).alias(TRAINING_DATE),
        )
        context.add_output_metadata(
            {"champion_version": version, "window": tags["train_window"], "rows": frame.height}
        )
        return frame

    return [drift_reference, build_drift_report(p)]


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=build_assets(project()))


def build_drift_report(p: Project) -> dg.AssetsDefinition:
    spec, settings = p.spec, p.settings
    limits = settings.thresholds
    numeric, categorical = spec.monitored_numeric, spec.monitored_categorical

    @dg.asset(
        name="drift_report",
        group_name="model_monitoring",
        partitions_def=p.daily,
        backfill_policy=SINGLE_RUN,
        pool=WAREHOUSE_POOL,
        owners=OWNERS,
        kinds={"evidently", "duckdb"},
        code_version=code_version("mlops_assets.ml.drift"),
        automation_condition=eager_within(7),
        metadata=table_metadata("day", **schema_metadata(spec, "drift_report")),
        # The persistence rule looks back over the previous days: their drift flags are read
        # from this table or, for a day not reported yet, recomputed from that day's features
        # and predictions.
        ins={"features": dg.AssetIn(), "predictions": dg.AssetIn()},
        # The reference of the champion that made the day's predictions, not of the training
        # week the day falls in (that one is trained after the day and would redo its report).
        deps=[dg.AssetDep("drift_reference", partition_mapping=champion_in_force_mapping(p))],
        check_specs=drift_check_specs(p),
        description=p.words(
            "Has the world moved away from what the champion learnt? An Evidently data-drift "
            "report of the day's {events} and predictions against the champion's reference, "
            "one row per column with its drift score and null share. The full HTML report is "
            "saved under the environment's reports folder and linked here."
        ),
    )
    def drift_report(
        context: dg.AssetExecutionContext,
        features: Frame,
        predictions: Frame,
        warehouse: WarehouseResource,
        alerts: AlertSinkResource,
    ):
        import polars as pl

        from mlops_assets.ml import drift

        wh = warehouse.get()
        references = wh.read("drift_reference")
        past = wh.read("drift_report")
        summary = past.filter(pl.col("column") == "__drifted__") if past.width else None
        flags = {
            r["day"]: bool(r["drifted"])
            for r in (summary.iter_rows(named=True) if summary is not None else [])
        }

        days = partition_days(context)

        def run(day: date):
            feats, preds = features, predictions
            if day not in days:
                end = day + timedelta(days=1)
                feats = wh.read("features", spec.date_column, day, end)
                preds = wh.read("predictions", spec.date_column, day, end)
                if not preds.width:
                    return None, preds
            current = feats.filter(pl.col(spec.date_column) == day).join(
                preds.select(spec.event_key, "prediction", "model_version"),
                on=spec.event_key,
                how="inner",
            )
            if current.is_empty():
                return None, current
            version = current["model_version"][0]
            reference = references.filter(pl.col("model_version") == version)
            if reference.is_empty():
                raise dg.Failure(
                    description=f"no drift reference for champion v{version}: materialize "
                    "drift_reference for its training date"
                )
            reference = reference.filter(pl.col(TRAINING_DATE) == reference[TRAINING_DATE].max())
            result = drift.drift_report(
                reference,
                current,
                numeric,
                categorical,
                name=day.isoformat(),
                timestamp=datetime.combine(day, datetime.min.time()),
                drift_share_max=limits.drift_share_max,
            )
            return result, current

        frames, verdicts = [], {name: [] for name in (DRIFT_SHARE, PREDICTION_DRIFT, NULL_SHARE)}
        persistent_days: list[str] = []
        for day in days:
            result, current = run(day)
            if result is None:
                raise dg.Failure(description=f"no predictions for {day}: nothing to monitor")
            html = drift.save_report(result, settings.reports_dir / f"drift_{day}.html")
            drift.add_to_workspace(
                result, settings.reports_dir / "workspace", f"mlops_assets_{settings.env}"
            )
            rules = {
                DRIFT_SHARE: drift.drift_share_rule(result, limits.drift_share_max),
                NULL_SHARE: drift.null_share_rule(
                    current, numeric + categorical, limits.null_share_max
                ),
                PREDICTION_DRIFT: drift.prediction_drift_rule(result),
            }
            flags[day] = not rules[DRIFT_SHARE].passed
            window = [day - timedelta(days=k) for k in range(limits.drift_persist_m - 1, -1, -1)]
            for earlier in window:
                if earlier not in flags and earlier >= p.spec.start_date:
                    previous, _ = run(earlier)
                    if previous is not None:
                        flags[earlier] = not drift.drift_share_rule(
                            previous, limits.drift_share_max
                        ).passed
            recent = [flags[d] for d in window if d in flags]
            persistent = drift.persistent(recent, limits.drift_persist_n, limits.drift_persist_m)
            if persistent:
                persistent_days.append(str(day))
                alerts.send(
                    kind="drift_persistent",
                    asset="drift_report",
                    partition=day.isoformat(),
                    cause="persistent drift",
                    message=(
                        f"features drifted on {sum(recent)} of the last {len(recent)} days "
                        f"(share {result.drift_share:.0%} on {day}, threshold "
                        f"{limits.drift_share_max:.0%})"
                    ),
                    run_id=context.run_id,
                )
            for name, rule in rules.items():
                verdicts[name].append((day, rule))
            verdicts.setdefault(PERSISTENT, []).append((day, (recent, persistent)))
            frames.append(result.frame().with_columns(pl.lit(day, dtype=pl.Date).alias("day")))
            frames.append(
                pl.DataFrame(
                    {
                        "column": ["__drifted__"],
                        "kind": ["summary"],
                        "drifted": [flags[day]],
                        "score": [result.drift_share],
                        "day": [day],
                    }
                )
            )
            context.add_asset_metadata(
                {
                    **result.metrics(),
                    "day": str(day),
                    "persistent_drift": persistent,
                    "report": dg.MetadataValue.url(settings.report_url(html)),
                    "report_file": dg.MetadataValue.path(str(html)),
                    "summary": dg.MetadataValue.md(result.summary_markdown()),
                },
                partition_key=day.isoformat(),
            )
        yield dg.Output(pl.concat(frames, how="diagonal_relaxed"))
        sev = severity(limits.strict)
        for name in (DRIFT_SHARE, PREDICTION_DRIFT, NULL_SHARE):
            failed = [(d, r) for d, r in verdicts[name] if not r.passed]
            day, rule = (failed or verdicts[name])[-1]
            yield dg.AssetCheckResult(
                check_name=name,
                passed=not failed,
                severity=sev,
                metadata={
                    **rule.metadata(),
                    "day": str(day),
                    "days_checked": len(days),
                    "days_failed": ", ".join(str(d) for d, _ in failed) or "none",
                },
            )
        last_recent = verdicts[PERSISTENT][-1][1][0]
        yield dg.AssetCheckResult(
            check_name=PERSISTENT,
            passed=not persistent_days,
            severity=sev,
            metadata={
                "observed": f"{sum(last_recent)} of {len(last_recent)} days drifted "
                f"(up to {days[-1]})",
                "threshold": f"< {limits.drift_persist_n} of {limits.drift_persist_m}",
                "persistent_on": ", ".join(persistent_days) or "none",
            },
        )

    return drift_report
