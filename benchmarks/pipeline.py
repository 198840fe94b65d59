"""Sections 3 and 4, orchestration overhead and backfill, in the pipeline world."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import (
    AIRINGS_PER_DAY,
    CYCLE_DAY,
    BenchError,
    RssWatch,
    _maxrss_bytes,
    _mib,
    _r,
)

# 3 and 4. Backfill and one daily cycle, in the pipeline world ---------------------------------


def _run_stats(instance: Any, runs_before: int) -> dict[str, Any]:
    """Wall and step time of the runs recorded since the instance held ``runs_before`` runs,
    with the seconds of each step (asset) summed over those runs."""
    records = instance.get_runs(limit=max(0, instance.get_runs_count() - runs_before))
    run_seconds = 0.0
    steps: dict[str, float] = {}
    for run in reversed(records):
        stats = instance.get_run_stats(run.run_id)
        if stats.start_time and stats.end_time:
            run_seconds += stats.end_time - stats.start_time
        for step in instance.get_run_step_stats(run.run_id):
            if step.start_time and step.end_time:
                steps[step.step_key] = steps.get(step.step_key, 0.0) + (
                    step.end_time - step.start_time
                )
    return {
        "runs": len(records),
        "run_seconds": run_seconds,
        "step_seconds": sum(steps.values()),
        "by_step": steps,
    }


def _direct_daily(p: Any, days: list[date], scratch: Path) -> int:
    """The daily refresh's pure functions over ``days``, as ``run_days`` materializes them:
    events, outcomes, outcome statistics, features (with their checks), labeled examples, then
    the online store of the last week. Returns the rows of features built."""
    import polars as pl

    from mlops_assets.defs.feature_refresh.checks import evaluate_feature_checks
    from mlops_assets.ml import features as F
    from mlops_assets.storage import online_store
    from mlops_assets.storage.sources import read_events, read_outcomes

    spec, now = p.spec, p.settings.now()
    stats: list[Any] = []
    built = []
    for day in days:
        events = F.validate_events(spec, read_events(spec, day), day)
        outcomes = F.validate_outcomes(spec, read_outcomes(spec, day, now), day)
        stats.append(F.outcome_stats(spec, events, outcomes))
        frame = F.build_features_for_days(spec, [day], events, pl.concat(stats))
        evaluate_feature_checks(p, frame)
        F.label_examples(spec, frame, outcomes)
        built.append(frame)
    recent = pl.concat(built[-7:])
    online_store.publish(F.latest_per_serving_key(spec, recent), scratch / "features.parquet")
    return sum(f.height for f in built)


@dataclass
class _CycleInputs:
    """What the assets of the cycle day read from earlier days, loaded before the clock starts
    for the direct path."""

    history_stats: Any
    recent_features: Any
    champion_history: Any
    references: Any
    # The champion's training window and the largest outcome seen in it.
    train_window: tuple[date, date]
    max_outcome: float | None


def _cycle_inputs(p: Any, day: date) -> _CycleInputs:
    import polars as pl

    from mlops_assets.ml import history_queries, promotion, registry
    from mlops_assets.storage.warehouse import Warehouse

    spec, settings = p.spec, p.settings
    wh = Warehouse.for_settings(settings)
    first = day - timedelta(days=spec.history_lookback_days)
    stats = wh.read("outcome_stats", "day", first, day - timedelta(days=spec.label_lag_days))
    recent = wh.read("features", spec.date_column, day - timedelta(days=6), day)
    history = wh.read(promotion.HISTORY_TABLE)
    version = history_queries.champion_in_force(history, day)
    if version is None:
        raise BenchError(f"no champion is in force on {day}: the backfill trained none")
    tags = registry.version_tags(
        settings.registered_model_name, version, settings.mlflow_tracking_uri
    )
    start, end = (date.fromisoformat(d) for d in tags["train_window"].split(".."))
    seen = wh.read("labeled_examples", spec.date_column, start, end + timedelta(days=1))
    references = wh.read("drift_reference")
    latest = references.filter(pl.col("model_version") == version)["training_date"].max()
    return _CycleInputs(
        history_stats=stats,
        recent_features=recent,
        champion_history=history,
        references=references.filter(
            (pl.col("model_version") == version) & (pl.col("training_date") == latest)
        ),
        train_window=(start, end),
        max_outcome=seen[spec.target].max(),
    )


def _direct_cycle(p: Any, day: date, inputs: _CycleInputs, scratch: Path) -> dict[str, float]:
    """The asset bodies of one daily cycle, minus Dagster and the IO manager: the same pure
    functions in sequence on in-memory frames (seconds per asset group)."""
    import polars as pl

    from mlops_assets.defs.feature_refresh.checks import evaluate_feature_checks
    from mlops_assets.ml import (
        business,
        dashboard,
        history_queries,
        inference,
        monitoring,
        registry,
    )
    from mlops_assets.ml import features as F
    from mlops_assets.storage import online_store, request_log
    from mlops_assets.storage.sources import read_events, read_outcomes

    spec, settings = p.spec, p.settings
    limits = settings.thresholds
    laps: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        laps[name] = now - clock[0]
        clock[0] = now

    events = F.validate_events(spec, read_events(spec, day), day)
    outcomes = F.validate_outcomes(spec, read_outcomes(spec, day, settings.now()), day)
    lap("sources")
    F.outcome_stats(spec, events, outcomes)
    features = F.build_features_for_days(spec, [day], events, inputs.history_stats)
    evaluate_feature_checks(p, features)
    F.label_examples(spec, features, outcomes)
    lap("features")
    recent = pl.concat([inputs.recent_features, features], how="diagonal_relaxed")
    online_store.publish(F.latest_per_serving_key(spec, recent), scratch / "features.parquet")
    lap("online_features")
    name, uri = settings.registered_model_name, settings.mlflow_tracking_uri
    predictions = inference.predictions_stage(
        spec,
        features,
        [day],
        lambda d: history_queries.champion_in_force(inputs.champion_history, d),
        lambda v: registry.load_model_version(name, v, uri),
        lambda _v: inputs.train_window,
        lambda _start, _end: inputs.max_outcome,
    ).frame
    lap("predictions")
    empty = (pl.DataFrame(), pl.DataFrame())
    monitored = monitoring.drift_report_stage(
        spec, [day], features, predictions, inputs.references, {}, lambda _d: empty, limits
    )
    result = monitored.days[0].result
    dashboard.save_report(result, scratch / f"drift_{day}.html")
    dashboard.add_to_workspace(result, scratch / "workspace", "bench")
    lap("drift_report")
    log = request_log.read_day(settings.request_log_dir, day)
    if "day" not in log.columns:
        log = log.with_columns(pl.lit(day, dtype=pl.Date).alias("day"))
    business.business_metrics_stage(
        spec, [day], predictions, outcomes, events, log, lambda _table: pl.DataFrame(), 28
    )
    lap("business_metrics")
    return laps


def _pipeline_worker(args: dict[str, Any]) -> dict[str, Any]:
    """Backfill the pipeline world through the runner (section 4), then time one more daily
    cycle through Dagster and directly (section 3)."""
    import gc

    from mlops_assets.defs.common import project
    from mlops_assets.run_instance import ensure_instance
    from mlops_assets.runner import (
        RunSummary,
        first_champion_day,
        run_days,
        run_metrics,
        run_scoring,
        run_training,
        training_partitions,
    )

    p = project()
    settings = p.settings
    watch = RssWatch()
    summary = RunSummary()
    days = [CYCLE_DAY - timedelta(days=n) for n in range(args["days"], 0, -1)]
    with watch.stage("load_definitions"):
        instance = ensure_instance(settings)
        from mlops_assets.definitions import defs
    with watch.stage("daily_refresh") as extra:
        run_days(defs, instance, settings, days, summary=summary)
        extra["partitions"] = len(days)
    available = training_partitions(days[0], CYCLE_DAY)
    partitions = available[-args["training_dates"] :] if args["training_dates"] else available
    with watch.stage("training") as extra:
        run_training(defs, instance, partitions, summary=summary)
        extra["partitions"] = len(partitions)
    fits = _fit_seconds(settings, partitions)
    served_from = first_champion_day(settings)
    if served_from is None:
        raise BenchError(f"training dates {partitions} promoted no champion")
    served = [d for d in days if d >= served_from]
    with watch.stage("scoring") as extra:
        run_scoring(defs, instance, served, summary=summary, drift_days=args["drift_days"])
        extra["partitions"] = len(served)
        extra["drift_reports"] = min(len(served), args["drift_days"])
    with watch.stage("metrics") as extra:
        run_metrics(defs, instance, settings, served, summary=summary)
        extra["partitions"] = len(served)
    if summary.failed_runs:
        raise BenchError(f"backfill runs failed: {summary.failed_runs}")
    peak = _maxrss_bytes()
    backfill_seconds = sum(s["seconds"] for s in watch.stages.values())

    scratch = Path(args["scratch"])
    scratch.mkdir(parents=True, exist_ok=True)
    gc.collect()
    started = time.perf_counter()
    rows = _direct_daily(p, days, scratch)
    direct_daily = time.perf_counter() - started
    daily = watch.stages["daily_refresh"]["seconds"]
    backfill = {
        "days": len(days),
        "first_day": days[0].isoformat(),
        "last_day": days[-1].isoformat(),
        "airings_per_day": AIRINGS_PER_DAY,
        "training_dates": partitions,
        "training_dates_available": len(available),
        "runs": summary.runs,
        "asset_partitions": sum(summary.partitions.values()),
        "checks_passed": summary.checks_passed,
        "checks_failed": len(summary.checks_failed),
        "stages": watch.stages,
        "wall_seconds": _r(backfill_seconds),
        "peak_rss_mib": _mib(peak),
        "daily_refresh_direct_seconds": _r(direct_daily),
        "daily_refresh_feature_rows": rows,
        "per_partition_seconds": _r(daily / len(days)),
        "per_partition_overhead_seconds": _r((daily - direct_daily) / len(days)),
    }

    orchestration = _measure_cycle(p, defs, instance, scratch, args["repeats"])
    watch.close()
    trained = watch.stages["training"]["seconds"]
    training = {
        "dates": len(partitions),
        "seconds_per_date": _r(trained / len(partitions)),
        "fit_seconds_per_date": _r(sum(fits.values()) / len(partitions)),
        "fit_seconds_by_date": {k: _r(v) for k, v in fits.items()},
        "other_seconds_per_date": _r((trained - sum(fits.values())) / len(partitions)),
    }
    return {"backfill": backfill, "orchestration": orchestration, "training": training}


def _fit_seconds(settings: Any, partitions: list[str]) -> dict[str, float]:
    """The seconds every candidate's fit took, summed per training date, from the runs the
    candidates logged (their ``fit_seconds`` metric)."""
    from mlflow import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    if experiment is None:
        raise BenchError(f"no MLflow experiment {settings.mlflow_experiment!r} after training")
    fits = dict.fromkeys(partitions, 0.0)
    for run in client.search_runs([experiment.experiment_id], max_results=10_000):
        partition = run.data.tags.get("partition")
        if partition in fits and "fit_seconds" in run.data.metrics:
            fits[partition] += run.data.metrics["fit_seconds"]
    return fits


def _measure_cycle(
    p: Any,
    defs: Any,
    instance: Any,
    scratch: Path,
    repeats: int,
    rows: int = AIRINGS_PER_DAY,
    ephemeral: bool = True,
) -> dict[str, Any]:
    """One daily cycle of :data:`CYCLE_DAY` (``rows`` airings) up to three ways, alternated
    ``repeats`` times after one untimed pass of each: one run of the ``daily_cycle`` job on the
    environment's Dagster instance (SQLite event log, as the demo uses), the same run on an
    in-memory instance (what the framework costs without event storage; when ``ephemeral``),
    and the asset bodies' functions directly."""
    import gc

    import dagster as dg

    from benchmarks.floor import FLOOR_JOB, floor_definitions, shape
    from mlops_assets.definitions import CYCLE_JOB
    from mlops_assets.run_instance import execute_run
    from mlops_assets.runner import RunSummary, run_cycle

    settings, day = p.settings, CYCLE_DAY
    inputs = _cycle_inputs(p, day)
    floor_job = floor_definitions(defs, CYCLE_JOB).resolve_job_def(FLOOR_JOB)

    def floor() -> dict[str, Any]:
        started = time.perf_counter()
        result = execute_run(floor_job, instance, partition_key=day.isoformat())
        wall = time.perf_counter() - started
        if not result.success:
            raise BenchError(f"the floor run of {day} failed")
        return {"seconds": wall}

    def through_dagster(on: Any) -> dict[str, Any]:
        runs_before = on.get_runs_count()
        cycle = RunSummary()
        started = time.perf_counter()
        run_cycle(defs, on, settings, day, summary=cycle)
        wall = time.perf_counter() - started
        if cycle.failed_runs:
            raise BenchError(f"the daily cycle of {day} failed: {cycle.failed_runs}")
        return {"seconds": wall, **_run_stats(on, runs_before)}

    def directly() -> dict[str, Any]:
        started = time.perf_counter()
        laps = _direct_cycle(p, day, inputs, scratch)
        return {"seconds": time.perf_counter() - started, **laps}

    directly()
    through_dagster(instance)
    floor()
    samples: dict[str, list[dict[str, Any]]] = {
        "dagster": [],
        "ephemeral": [],
        "direct": [],
        "floor": [],
    }
    with dg.DagsterInstance.ephemeral() as in_memory:
        ways = [
            ("direct", directly),
            ("dagster", lambda: through_dagster(instance)),
            ("floor", floor),
        ]
        if ephemeral:
            ways.append(("ephemeral", lambda: through_dagster(in_memory)))
        for _ in range(repeats):
            for name, measure in ways:
                gc.collect()
                samples[name].append(measure())

    def median_sample(name: str) -> dict[str, Any]:
        middle = statistics.median(x["seconds"] for x in samples[name])
        return min(samples[name], key=lambda x: abs(x["seconds"] - middle))

    direct, dagster = median_sample("direct"), median_sample("dagster")
    floor_seconds = median_sample("floor")["seconds"]
    overhead = dagster["seconds"] - direct["seconds"]

    def runs(sample: dict[str, Any]) -> dict[str, Any]:
        return {
            "seconds": _r(sample["seconds"]),
            "runs": int(sample["runs"]),
            "run_seconds": _r(sample["run_seconds"]),
            "step_seconds": _r(sample["step_seconds"]),
            "by_step": {k: _r(v) for k, v in sample["by_step"].items()},
            "ratio": _r(sample["seconds"] / direct["seconds"], 2),
        }

    extra = {"dagster_ephemeral": runs(median_sample("ephemeral"))} if ephemeral else {}
    return {
        "day": day.isoformat(),
        "rows": rows,
        "repeats": repeats,
        "dagster": runs(dagster),
        **extra,
        "direct": {
            "seconds": _r(direct["seconds"]),
            "by_stage": {k: _r(v) for k, v in direct.items() if k != "seconds"},
        },
        "ratio": _r(dagster["seconds"] / direct["seconds"], 2),
        "overhead_seconds": _r(overhead),
        "floor_seconds": _r(floor_seconds),
        "floor_samples": [_r(x["seconds"]) for x in samples["floor"]],
        "floor_shape": shape(defs, CYCLE_JOB),
        "overhead_vs_floor": _r(overhead / floor_seconds, 2),
    }


def _cycle_scale_worker(args: dict[str, Any]) -> dict[str, Any]:
    """The daily cycle of :data:`CYCLE_DAY` at ``airings`` a day, in the backfilled pipeline
    world (its history, champion and drift reference come from the 400-a-day days before):
    through the ``daily_cycle`` job and directly, to show how the overhead scales."""
    from mlops_assets.defs.common import project
    from mlops_assets.run_instance import ensure_instance

    p = project()
    instance = ensure_instance(p.settings)
    from mlops_assets.definitions import defs

    return _measure_cycle(
        p,
        defs,
        instance,
        Path(args["scratch"]),
        args["repeats"],
        rows=args["airings"],
        ephemeral=False,
    )
