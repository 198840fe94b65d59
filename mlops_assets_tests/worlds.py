"""The test worlds: small, deterministic data made by the TV-ad simulator and the feature
functions (the same path the pipeline takes), shared by the tests and the benchmark
(``benchmarks/``). Importable: nothing here is a fixture."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import polars as pl

from mlops_assets.dataset import DatasetSpec
from mlops_assets.dataset_load import load_spec
from mlops_assets.environments import DEFAULT_DATASET
from mlops_assets.ml.features import build_features, label_examples, outcome_stats
from mlops_assets.simulator import SimulatorConfig, simulate_day

AIRINGS_PER_DAY = 200
TRAIN_DAYS = 21
HOLDOUT_DAYS = 7
FIRST_DAY = date(2025, 3, 1)
SEED = 7


def small_spec(**training: object) -> DatasetSpec:
    """The default TV-ad spec with a short training window (overridable)."""
    spec = load_spec(DEFAULT_DATASET, validate_source=False)
    options = {"train_days": TRAIN_DAYS, "holdout_days": HOLDOUT_DAYS, **training}
    return replace(spec, training=replace(spec.training, **options))


def simulated_days(
    spec: DatasetSpec, first_day: date, days: int, airings_per_day: int, seed: int = SEED
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Labeled examples of ``days`` days from ``first_day``, with point-in-time history features
    (the simulator runs ``history_lookback_days`` earlier so the history is full), and every
    simulated day's outcome statistics."""
    config = SimulatorConfig(
        seed=seed, airings_per_day=airings_per_day, label_lag_days=spec.label_lag_days
    )
    day = first_day - timedelta(days=spec.history_lookback_days)
    stats: list[pl.DataFrame] = []
    examples: list[pl.DataFrame] = []
    while day < first_day + timedelta(days=days):
        events, outcomes = simulate_day(day, config)
        if day >= first_day:
            features = build_features(spec, day, events, pl.concat(stats))
            examples.append(label_examples(spec, features, outcomes))
        stats.append(outcome_stats(spec, events, outcomes))
        day += timedelta(days=1)
    return pl.concat(examples), pl.concat(stats)


def simulated_examples(
    spec: DatasetSpec, first_day: date, days: int, airings_per_day: int, seed: int = SEED
) -> pl.DataFrame:
    """The labeled examples of :func:`simulated_days`."""
    return simulated_days(spec, first_day, days, airings_per_day, seed)[0]
