"""Fixtures of the ML-layer tests: realistic labeled examples made by the TV-ad simulator and the
feature functions (the same path the pipeline takes), the windows of one training date, and
every candidate trained once on them."""

from __future__ import annotations

import os
from datetime import date, timedelta

import polars as pl
import pytest

from mlops_assets.dataset import DatasetSpec
from mlops_assets.ml.candidates import CANDIDATES
from mlops_assets.ml.training import (
    TrainResult,
    Windows,
    split_windows,
    train_and_score,
    training_windows,
)

# LightGBM's OpenMP threads spin while waiting; on a busy 2-core machine (other test processes)
# that made a 0.2 s fit take 4-10 s. Passive waiting changes timing only, never results. It must
# be set before lightgbm loads, which nothing imported above does.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

from mlops_assets_tests.worlds import (  # after OMP_WAIT_POLICY is set
    AIRINGS_PER_DAY,
    FIRST_DAY,
    HOLDOUT_DAYS,
    SEED,
    TRAIN_DAYS,
    simulated_examples,
    small_spec,
)


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
