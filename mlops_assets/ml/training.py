"""Model training as pure functions: windows, sampling, scoring and fingerprints.

Window rule, for a training date T (the partition's date, the day training runs):

- ``holdout_end = T - max(label_lag_days, 1)``. Outcomes of day d land on d + label_lag_days
  (see ``storage.sources.outcomes_land_on``), so every holdout day has its outcomes by T, and the
  holdout ends strictly before T even when the label lag is 0.
- ``holdout_start = holdout_end - (holdout_days - 1)``: ``holdout_days`` whole days.
- ``train_end = holdout_start - 1`` and ``train_start = train_end - (train_days - 1)``: the
  training window is the ``train_days`` days right before the holdout. No day is in both.

All bounds are inclusive dates.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Protocol

import numpy as np
import polars as pl

from mlops_assets.dataset import DatasetSpec
from mlops_assets.ml.candidates import Candidate, segment_columns
from mlops_assets.ml.model import TabularModel

METRIC_NAMES = ("mae", "rmse", "wape", "bias")
PREDICTION = "prediction"
TRAINING_DATE = "training_date"
# Holdout feature rows kept with a result: MLflow input example and serving-check sample.
INPUT_SAMPLE_ROWS = 20


class TrainingDataError(ValueError):
    """Training cannot run on the data it was given; the message names the problem."""


@dataclass(frozen=True)
class Windows:
    """Inclusive date bounds of the training and holdout windows of one training date."""

    train_start: date
    train_end: date
    holdout_start: date
    holdout_end: date

    def as_dict(self) -> dict[str, str]:
        """ISO strings, for MLflow params/tags and Dagster metadata."""
        return {
            "train_start": self.train_start.isoformat(),
            "train_end": self.train_end.isoformat(),
            "holdout_start": self.holdout_start.isoformat(),
            "holdout_end": self.holdout_end.isoformat(),
        }

    @property
    def train_label(self) -> str:
        return f"{self.train_start}..{self.train_end}"

    @property
    def holdout_label(self) -> str:
        return f"{self.holdout_start}..{self.holdout_end}"


def training_windows(spec: DatasetSpec, training_date: date) -> Windows:
    """The train and holdout windows of ``training_date`` (rule in the module docstring)."""
    tr = spec.training
    holdout_end = training_date - timedelta(days=max(spec.label_lag_days, 1))
    holdout_start = holdout_end - timedelta(days=tr.holdout_days - 1)
    train_end = holdout_start - timedelta(days=1)
    train_start = train_end - timedelta(days=tr.train_days - 1)
    return Windows(train_start, train_end, holdout_start, holdout_end)


def split_windows(
    frame: pl.DataFrame, spec: DatasetSpec, windows: Windows
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The rows of ``frame`` in the training window and in the holdout window."""
    day = pl.col(spec.date_column).cast(pl.Date)
    train = frame.filter(day.is_between(windows.train_start, windows.train_end))
    holdout = frame.filter(day.is_between(windows.holdout_start, windows.holdout_end))
    return train, holdout


def sample_rows(frame: pl.DataFrame, max_rows: int, seed: int) -> pl.DataFrame:
    """At most ``max_rows`` rows: all of them under the cap, else a seeded uniform sample that
    depends on the rows' content and the seed, not on their order (kept rows stay in order).

    Polars' row hash alone is not uniform enough to rank by: keeping the smallest raw hashes
    skews categorical shares (a 30 % daypart came out at 21 %). Each hash is therefore put
    through the splitmix64 finalizer before ranking.
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    if frame.height <= max_rows:
        return frame
    z = frame.hash_rows(seed=seed).to_numpy().astype(np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    keep = np.sort(np.argsort(z, kind="stable")[:max_rows])
    return frame[keep]


def metrics(actual: Any, predicted: Any) -> dict[str, float]:
    """mae, rmse, wape (sum|err| / sum|actual|) and bias (sum(pred - actual) / sum(actual))."""
    y = np.asarray(actual, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"actual {y.shape} and predicted {p.shape} must be 1-d and equal length")
    if y.size == 0:
        raise ValueError("metrics need at least one row")
    if not (np.isfinite(y).all() and np.isfinite(p).all()):
        raise ValueError("metrics need finite actuals and predictions (found NaN or inf)")
    err = p - y
    total = float(np.abs(y).sum())
    return {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "wape": float(np.abs(err).sum() / total) if total else float("inf"),
        "bias": float(err.sum() / y.sum()) if y.sum() else float("inf"),
    }


def data_fingerprint(frame: pl.DataFrame) -> str:
    """A stable hash of the rows: same rows (in any order) and columns -> same 16 hex digits.

    Hashes the sorted rows written as CSV with the schema, so it does not depend on polars'
    internal hash function and survives a library upgrade.
    """
    columns = sorted(frame.columns)
    canonical = frame.select(columns)
    if columns and canonical.height:
        canonical = canonical.sort(columns, nulls_last=True)
    digest = hashlib.sha256()
    digest.update(repr([(c, str(canonical.schema[c])) for c in columns]).encode())
    digest.update(canonical.write_csv().encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class TrainResult:
    """A fitted candidate and its score on the holdout window."""

    model: TabularModel
    metrics: dict[str, float]
    train_rows: int
    holdout_rows: int
    holdout_predictions: pl.DataFrame
    train_rows_available: int
    seed: int
    fit_seconds: float
    input_sample: pl.DataFrame


def _require_rows(frame: pl.DataFrame, spec: DatasetSpec, what: str) -> None:
    if spec.target not in frame.columns:
        raise TrainingDataError(
            f"{what} rows lack the target column {spec.target!r} (columns: "
            f"{', '.join(frame.columns)})"
        )
    if frame.is_empty():
        raise TrainingDataError(f"the {what} window has no labeled rows")
    nulls = frame[spec.target].null_count()
    if nulls:
        raise TrainingDataError(
            f"{nulls} of {frame.height} {what} rows have a null target {spec.target!r}"
        )


def _canonical_order(frame: pl.DataFrame, spec: DatasetSpec) -> pl.DataFrame:
    keys = [c for c in (spec.date_column, spec.event_key) if c in frame.columns]
    return frame.sort(keys) if keys else frame


def score(
    model: TabularModel, holdout: pl.DataFrame, spec: DatasetSpec
) -> tuple[dict[str, float], pl.DataFrame]:
    """Metrics of ``model`` on ``holdout`` and the per-row predictions (re-scores an incumbent)."""
    _require_rows(holdout, spec, "holdout")
    holdout = _canonical_order(holdout, spec)
    predicted = model.predict(holdout)
    keep = [
        c
        for c in (spec.date_column, spec.event_key, *segment_columns(spec))
        if c in holdout.columns
    ]
    rows = holdout.select(*keep, pl.col(spec.target).cast(pl.Float64)).with_columns(
        pl.Series(PREDICTION, predicted, dtype=pl.Float64)
    )
    return metrics(rows[spec.target].to_numpy(), predicted), rows


def train_and_score(
    candidate: Candidate,
    train: pl.DataFrame,
    holdout: pl.DataFrame,
    spec: DatasetSpec,
    seed: int = 0,
) -> TrainResult:
    """Fit ``candidate`` on ``train`` (sampled to ``max_train_rows``) and score it on ``holdout``.

    Rows are put in (date, event key) order before fitting, so the same rows in any order give
    the same model.
    """
    _require_rows(train, spec, "training")
    _require_rows(holdout, spec, "holdout")
    available = train.height
    sampled = _canonical_order(sample_rows(train, spec.training.max_train_rows, seed), spec)
    started = time.perf_counter()
    model = candidate.fit(sampled, spec, seed)
    fit_seconds = time.perf_counter() - started
    result_metrics, predictions = score(model, holdout, spec)
    return TrainResult(
        model=model,
        metrics=result_metrics,
        train_rows=sampled.height,
        holdout_rows=holdout.height,
        holdout_predictions=predictions,
        train_rows_available=available,
        seed=seed,
        fit_seconds=fit_seconds,
        input_sample=_canonical_order(holdout, spec)
        .select(spec.model_feature_columns)
        .head(INPUT_SAMPLE_ROWS),
    )


class Logged(Protocol):
    """Where a trained candidate was logged (the registry's ``LoggedCandidate``)."""

    @property
    def run_id(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def run_url(self) -> str: ...
    @property
    def reused(self) -> bool: ...


# Logs a trained candidate: (result, windows, fingerprint of the training rows) -> where.
LogFn = Callable[[TrainResult, Windows, str], Logged]


@dataclass(frozen=True)
class CandidateRun:
    """What a candidate asset stores (its model card row) and reports about one training date."""

    card: pl.DataFrame
    result: TrainResult
    windows: Windows
    logged: Logged

    def metadata(self) -> dict[str, Any]:
        return {
            **{k: float(v) for k, v in self.result.metrics.items()},
            "model_version": self.logged.version,
            "reused_logged_run": self.logged.reused,
            "train_window": self.windows.train_label,
            "holdout_window": self.windows.holdout_label,
            "train_rows": self.result.train_rows,
            "holdout_rows": self.result.holdout_rows,
        }


def model_card_row(
    spec: DatasetSpec,
    candidate: Candidate,
    training_date: date,
    windows: Windows,
    result: TrainResult,
    logged: Logged,
) -> pl.DataFrame:
    """The candidate's row of a training date's leaderboard: where it is logged, its holdout
    metrics, its windows and row counts."""
    return pl.DataFrame(
        [
            {
                TRAINING_DATE: training_date,
                "candidate": candidate.name,
                "role": candidate.role,
                "model_version": logged.version,
                "run_id": logged.run_id,
                "run_url": logged.run_url,
                **{k: float(v) for k, v in result.metrics.items()},
                **windows.as_dict(),
                "train_rows": result.train_rows,
                "holdout_rows": result.holdout_rows,
                "metric": spec.training.metric,
            }
        ]
    )


def candidate_stage(
    spec: DatasetSpec,
    candidate: Candidate,
    labeled_examples: pl.DataFrame,
    training_date: date,
    cutoff: date,
    log: LogFn,
    seed: int = 0,
) -> CandidateRun:
    """Train ``candidate`` for ``training_date`` on the labeled examples of the training window
    before ``cutoff``, score it on the holdout window after it, then ``log`` it (nothing is
    logged when training cannot run).

    TrainingDataError when a window has no labeled rows or they lack the target."""
    windows = training_windows(spec, cutoff)
    train, holdout = split_windows(labeled_examples, spec, windows)
    result = train_and_score(candidate, train, holdout, spec, seed=seed)
    logged = log(result, windows, data_fingerprint(train))
    card = model_card_row(spec, candidate, training_date, windows, result, logged)
    return CandidateRun(card, result, windows, logged)
