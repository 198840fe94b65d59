"""Training functions: the window rule (label lag, strictly before the cut-off, no overlap),
deterministic sampling above the cap, the metrics on hand-computed numbers, the data
fingerprint, and the errors for empty windows or a missing or null target. The candidate stage
(what a candidate asset stores and reports) trains on the windows of its cut-off, logs through
the function it is given and returns the model card row; a window without rows is refused
before anything is logged."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date, timedelta

import polars as pl
import pytest

from mlops_assets.dataset import DatasetSpec
from mlops_assets.ml.candidates import candidate_by_name
from mlops_assets.ml.training import (
    PREDICTION,
    TRAINING_DATE,
    TrainingDataError,
    TrainResult,
    Windows,
    candidate_stage,
    data_fingerprint,
    metrics,
    sample_rows,
    split_windows,
    train_and_score,
    training_windows,
)
from mlops_assets.storage.sources import outcomes_land_on


def test_windows_of_the_default_spec(spec: DatasetSpec) -> None:
    spec = replace(spec, training=replace(spec.training, train_days=28, holdout_days=7))
    w = training_windows(spec, date(2025, 3, 3))
    assert w == Windows(
        train_start=date(2025, 1, 26),
        train_end=date(2025, 2, 22),
        holdout_start=date(2025, 2, 23),
        holdout_end=date(2025, 3, 1),
    )
    assert (w.train_end - w.train_start).days + 1 == 28
    assert (w.holdout_end - w.holdout_start).days + 1 == 7
    assert w.as_dict()["holdout_end"] == "2025-03-01" and w.train_label == "2025-01-26..2025-02-22"


@pytest.mark.parametrize("lag", [0, 1, 2, 5])
def test_holdout_outcomes_have_landed_and_end_before_the_cutoff(
    spec: DatasetSpec, lag: int
) -> None:
    spec = replace(spec, label_lag_days=lag)
    cutoff = date(2025, 6, 10)
    w = training_windows(spec, cutoff)
    assert w.holdout_end < cutoff
    assert outcomes_land_on(spec, w.holdout_end) <= cutoff
    assert w.holdout_end == cutoff - timedelta(days=max(lag, 1))
    assert w.train_end < w.holdout_start


def test_split_windows_keeps_only_each_window(
    examples: pl.DataFrame, spec: DatasetSpec, windows: Windows
) -> None:
    train, holdout = split_windows(examples, spec, windows)
    assert train[spec.date_column].min() == windows.train_start
    assert train[spec.date_column].max() == windows.train_end
    assert holdout[spec.date_column].min() == windows.holdout_start
    assert holdout[spec.date_column].max() == windows.holdout_end
    assert train.height + holdout.height == examples.height
    assert set(train[spec.event_key]).isdisjoint(holdout[spec.event_key])


def test_sampling_under_the_cap_keeps_every_row(train: pl.DataFrame) -> None:
    assert sample_rows(train, train.height, seed=1).equals(train)


def test_sampling_above_the_cap_is_deterministic(train: pl.DataFrame, spec: DatasetSpec) -> None:
    first = sample_rows(train, 500, seed=1)
    assert first.height == 500
    assert first.equals(sample_rows(train, 500, seed=1))
    shuffled = train.sample(fraction=1.0, shuffle=True, seed=9)
    keys = set(first[spec.event_key])
    assert set(sample_rows(shuffled, 500, seed=1)[spec.event_key]) == keys
    assert set(sample_rows(train, 500, seed=2)[spec.event_key]) != keys
    assert keys <= set(train[spec.event_key])
    with pytest.raises(ValueError, match="max_rows"):
        sample_rows(train, 0, seed=1)


def test_train_and_score_samples_to_max_train_rows(
    train: pl.DataFrame, holdout: pl.DataFrame, spec: DatasetSpec
) -> None:
    capped = replace(spec, training=replace(spec.training, max_train_rows=300))
    result = train_and_score(candidate_by_name("segment_mean"), train, holdout, capped, seed=4)
    assert result.train_rows == 300
    assert result.train_rows_available == train.height
    assert result.holdout_rows == holdout.height


def test_metrics_on_hand_computed_numbers() -> None:
    m = metrics([10.0, 0.0, 30.0], [12.0, 1.0, 24.0])
    assert m["mae"] == pytest.approx(3.0)
    assert m["rmse"] == pytest.approx(math.sqrt((4 + 1 + 36) / 3))
    assert m["wape"] == pytest.approx(9 / 40)
    assert m["bias"] == pytest.approx(-3 / 40)
    with pytest.raises(ValueError, match="equal length"):
        metrics([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least one row"):
        metrics([], [])
    with pytest.raises(ValueError, match="NaN"):
        metrics([1.0], [float("nan")])


def test_fingerprint_depends_on_content_not_order(train: pl.DataFrame, spec: DatasetSpec) -> None:
    fingerprint = data_fingerprint(train)
    assert len(fingerprint) == 16 and int(fingerprint, 16) >= 0
    assert data_fingerprint(train.sample(fraction=1.0, shuffle=True, seed=5)) == fingerprint
    assert data_fingerprint(train.select(reversed(train.columns))) == fingerprint
    changed = train.with_columns(
        pl.when(pl.int_range(pl.len()) == 7)
        .then(pl.col(spec.target) + 1)
        .otherwise(pl.col(spec.target))
        .alias(spec.target)
    )
    assert data_fingerprint(changed) != fingerprint
    assert data_fingerprint(train.head(train.height - 1)) != fingerprint


def test_result_holds_per_row_holdout_predictions(
    fitted: dict[str, TrainResult], holdout: pl.DataFrame, spec: DatasetSpec
) -> None:
    result = fitted["lgbm_small"]
    rows = result.holdout_predictions
    assert rows.height == holdout.height
    assert {spec.event_key, spec.target, PREDICTION, "network", "daypart"} <= set(rows.columns)
    recomputed = metrics(rows[spec.target].to_numpy(), rows[PREDICTION].to_numpy())
    assert recomputed == result.metrics
    assert (rows[PREDICTION] >= 0).all()
    assert result.input_sample.columns == list(spec.model_feature_columns)


def test_errors_name_the_empty_window_or_the_target(
    train: pl.DataFrame, holdout: pl.DataFrame, spec: DatasetSpec
) -> None:
    candidate = candidate_by_name("global_mean")
    with pytest.raises(TrainingDataError, match="training window has no labeled rows"):
        train_and_score(candidate, train.head(0), holdout, spec)
    with pytest.raises(TrainingDataError, match="holdout window has no labeled rows"):
        train_and_score(candidate, train, holdout.head(0), spec)
    with pytest.raises(TrainingDataError, match="target column 'visits'"):
        train_and_score(candidate, train.drop(spec.target), holdout, spec)
    nulls = train.with_columns(pl.lit(None, dtype=pl.Float64).alias(spec.target))
    with pytest.raises(TrainingDataError, match=f"{train.height} of {train.height} training"):
        train_and_score(candidate, nulls, holdout, spec)
    assert issubclass(TrainingDataError, ValueError)


@dataclass(frozen=True)
class FakeLogged:
    run_id: str = "run-1"
    version: str = "3"
    run_url: str = "http://mlflow/run-1"
    reused: bool = False


def test_candidate_stage_trains_on_the_cutoffs_windows_logs_and_returns_the_card_row(
    examples: pl.DataFrame, spec: DatasetSpec, training_date: date, windows: Windows
) -> None:
    logged: list[tuple[TrainResult, Windows, str]] = []

    def log(result: TrainResult, w: Windows, fingerprint: str) -> FakeLogged:
        logged.append((result, w, fingerprint))
        return FakeLogged()

    candidate = candidate_by_name("segment_mean")
    run = candidate_stage(spec, candidate, examples, date(2025, 3, 24), training_date, log, 4)
    ((result, logged_windows, fingerprint),) = logged
    train = split_windows(examples, spec, windows)[0]
    assert logged_windows == run.windows == windows
    assert fingerprint == data_fingerprint(train)
    assert result is run.result and result.train_rows == train.height
    (row,) = run.card.to_dicts()
    assert row[TRAINING_DATE] == date(2025, 3, 24)
    assert (row["candidate"], row["role"], row["model_version"]) == (
        "segment_mean",
        "baseline",
        "3",
    )
    assert row["run_url"] == "http://mlflow/run-1" and row["metric"] == spec.training.metric
    assert row["wape"] == result.metrics["wape"] and row["holdout_end"] == str(windows.holdout_end)
    meta = run.metadata()
    assert meta["model_version"] == "3" and meta["reused_logged_run"] is False
    assert meta["train_window"] == windows.train_label and meta["wape"] == result.metrics["wape"]


def test_candidate_stage_refuses_an_empty_window_before_logging(
    examples: pl.DataFrame, spec: DatasetSpec, training_date: date
) -> None:
    calls: list[str] = []

    def log(result: TrainResult, w: Windows, fingerprint: str) -> FakeLogged:
        calls.append(fingerprint)
        return FakeLogged()

    too_early = training_date - timedelta(days=60)
    candidate = candidate_by_name("global_mean")
    with pytest.raises(TrainingDataError, match="no labeled rows"):
        candidate_stage(spec, candidate, examples, too_early, too_early, log)
    assert calls == []
