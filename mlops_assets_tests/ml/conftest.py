"""Fixtures of the ML-layer tests: realistic labeled examples made by the TV-ad simulator and the
feature functions (the same path the pipeline takes), the windows of one training date, and
every candidate trained once on them."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import date, timedelta

import polars as pl
import pytest

from mlops_assets.dataset import DatasetSpec, load_spec
from mlops_assets.environments import DEFAULT_DATASET
from mlops_assets.ml.candidates import CANDIDATES
from mlops_assets.ml.features import build_features, label_examples, outcome_stats
from mlops_assets.ml.training import (
    TrainResult,
    Windows,
    split_windows,
    train_and_score,
    training_windows,
)
from mlops_assets.simulator import SimulatorConfig, simulate_day

# LightGBM's OpenMP threads spin while waiting; on a busy 2-core machine (other test processes)
# that made a 0.2 s fit take 4-10 s. Passive waiting changes timing only, never results. It must
# be set before lightgbm loads, which nothing imported above does.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

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


def simulated_examples(
    spec: DatasetSpec, first_day: date, days: int, airings_per_day: int, seed: int = 7
) -> pl.DataFrame:
    """Labeled examples of ``days`` days from ``first_day``, with point-in-time history features
    (the simulator runs ``history_lookback_days`` earlier so the history is full)."""
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
    return pl.concat(examples)


@pytest.fixture(scope="session")
def spec() -> DatasetSpec:
    return small_spec()


@pytest.fixture(scope="session")
def examples(spec: DatasetSpec) -> pl.DataFrame:
    return simulated_examples(spec, FIRST_DAY, TRAIN_DAYS + HOLDOUT_DAYS, AIRINGS_PER_DAY)


@pytest.fixture(scope="session")
def training_date(spec: DatasetSpec, examples: pl.DataFrame) -> date:
    """The first date whose holdout ends on the last simulated day."""
    return examples[spec.date_column].max() + timedelta(days=spec.label_lag_days)


@pytest.fixture(scope="session")
def windows(spec: DatasetSpec, training_date: date) -> Windows:
    return training_windows(spec, training_date)


@pytest.fixture(scope="session")
def train(examples: pl.DataFrame, spec: DatasetSpec, windows: Windows) -> pl.DataFrame:
    return split_windows(examples, spec, windows)[0]


@pytest.fixture(scope="session")
def holdout(examples: pl.DataFrame, spec: DatasetSpec, windows: Windows) -> pl.DataFrame:
    return split_windows(examples, spec, windows)[1]


@pytest.fixture(scope="session")
def fitted(train: pl.DataFrame, holdout: pl.DataFrame, spec: DatasetSpec) -> dict[str, TrainResult]:
    """Every registered candidate trained on ``train`` and scored on ``holdout``."""
    return {c.name: train_and_score(c, train, holdout, spec, seed=SEED) for c in CANDIDATES}
