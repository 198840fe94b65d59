"""Section 6, the scale curve: one day at several sizes, time and peak RSS of each stage."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import CHAMPION_CANDIDATE, CYCLE_DAY, SEED, RssWatch, _maxrss_bytes, _mib, _r

# 6. Scale curve -----------------------------------------------------------------------------


def _scale_worker(args: dict[str, Any]) -> dict[str, Any]:
    """One day at ``airings`` per day: simulate, features, fit one LightGBM candidate on the
    capped sample, predict every row, drift report on a sampled current."""
    import polars as pl

    from mlops_assets.dataset_load import load_spec
    from mlops_assets.ml import dashboard, drift
    from mlops_assets.ml.candidates import candidate_by_name
    from mlops_assets.ml.features import build_features, label_examples, outcome_stats
    from mlops_assets.ml.inference import PREDICTION, predict_days
    from mlops_assets.ml.training import sample_rows
    from mlops_assets.simulator import SimulatorConfig, simulate_day

    airings = args["airings"]
    spec = load_spec(os.environ["MLOPS_DATASET"], validate_source=False)
    config = SimulatorConfig(seed=SEED, airings_per_day=airings, label_lag_days=spec.label_lag_days)
    day = CYCLE_DAY
    watch = RssWatch()
    history = []
    setup_started = time.perf_counter()
    # Imported up front so that no stage pays a one-off import (evidently alone takes seconds).
    import evidently  # noqa: F401
    import lightgbm  # noqa: F401

    for back in (1, 2):
        prior = day - timedelta(days=spec.label_lag_days + back)
        history.append(outcome_stats(spec, *simulate_day(prior, config)))
    stats = pl.concat(history)
    setup_seconds = time.perf_counter() - setup_started
    baseline = _mib(watch.rss())

    with watch.stage("simulate") as extra:
        events, outcomes = simulate_day(day, config)
        extra["rows"] = events.height
    with watch.stage("features") as extra:
        outcome_stats(spec, events, outcomes)
        features = build_features(spec, day, events, stats)
        labeled = label_examples(spec, features, outcomes)
        extra["rows"] = features.height
    with watch.stage("train") as extra:
        candidate = candidate_by_name(CHAMPION_CANDIDATE)
        sample = sample_rows(labeled, spec.training.max_train_rows, SEED)
        model = candidate.fit(sample, spec, SEED)
        extra["rows"] = sample.height
    with watch.stage("predict") as extra:
        predictions = predict_days(spec, features, lambda _d: "1", lambda _v: model)
        extra["rows"] = predictions.height
    with watch.stage("drift") as extra:
        reference = sample_rows(sample, 5_000, 11)
        reference = reference.with_columns(
            pl.Series(PREDICTION, model.predict(reference), dtype=pl.Float64)
        )
        current = features.join(predictions.select(spec.event_key, PREDICTION), on=spec.event_key)
        result = drift.drift_report(
            reference, current, spec.monitored_numeric, spec.monitored_categorical
        )
        dashboard.save_report(result, Path(args["scratch"]) / f"drift_{airings}.html")
        extra["rows"] = result.sampled_current
    watch.close()
    peak = _maxrss_bytes()
    return {
        "airings_per_day": airings,
        "candidate": candidate.name,
        "max_train_rows": spec.training.max_train_rows,
        "history_setup_seconds": _r(setup_seconds),
        "baseline_rss_mib": baseline,
        "stages": watch.stages,
        "seconds": _r(sum(s["seconds"] for s in watch.stages.values())),
        "peak_rss_mib": _mib(peak),
    }
