"""The ``drift_reference`` stage as a pure function: what normal looks like for the model a
training date hands to monitoring (its proposal while it awaits approval, else the champion in
force after it): a bounded, seeded sample of the labeled examples of that model's training
window, with the model's predictions. Reading the registry and the warehouse is the caller's,
passed in as functions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl

from mlops_assets.dataset import DatasetSpec
from mlops_assets.ml import decision_history, history_queries
from mlops_assets.ml.model import TabularModel
from mlops_assets.ml.training import PREDICTION, sample_rows

MODEL_VERSION = "model_version"
TRAINING_DATE = "training_date"


class NoReferenceError(RuntimeError):
    """No model is watched after a training date: there is nothing to take a reference of."""


@dataclass(frozen=True)
class ReferenceResult:
    frame: pl.DataFrame
    version: str
    window: tuple[date, date]

    def metadata(self) -> dict[str, Any]:
        start, end = self.window
        return {
            "champion_version": self.version,
            "window": f"{start}..{end}",
            "rows": self.frame.height,
        }


def drift_reference_stage(
    spec: DatasetSpec,
    history: pl.DataFrame,
    training_date: date,
    *,
    train_window: Callable[[str], tuple[date, date]],
    read_examples: Callable[[date, date], pl.DataFrame],
    load: Callable[[str], TabularModel],
    max_rows: int,
    seed: int,
) -> ReferenceResult:
    """The reference of ``training_date`` from the decision ``history`` (empty, or without
    columns when never stored): at most ``max_rows`` examples of the watched version's training
    window (``train_window(version)``, read with ``read_examples(start, end)``, inclusive), their
    target and the model's predictions (``load(version)``), its version and the training date on
    every row.

    NoReferenceError when no champion is in force or proposed after the training date."""
    stored = history if history.width else decision_history.empty_history()
    watched = history_queries.watched_versions(stored)
    watched = watched.filter(pl.col("training_date") == training_date)
    if not watched.height:
        raise NoReferenceError(
            f"no champion in force or proposed after training date {training_date}"
        )
    version = watched["version"][-1]
    start, end = train_window(version)
    sample = sample_rows(read_examples(start, end), max_rows, seed)
    frame = sample.select(spec.date_column, *spec.model_feature_columns, spec.target).with_columns(
        pl.Series(PREDICTION, load(version).predict(sample), dtype=pl.Float64),
        pl.lit(version, dtype=pl.String).alias(MODEL_VERSION),
        pl.lit(training_date, dtype=pl.Date).alias(TRAINING_DATE),
    )
    return ReferenceResult(frame, version, (start, end))
