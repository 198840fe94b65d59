"""Batch inference as pure functions: score each day's features with the champion in force."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import polars as pl

from mlops_assets.dataset import DatasetSpec
from mlops_assets.ml.model import TabularModel
from mlops_assets.ml.rules import RuleResult

PREDICTION = "prediction"
MODEL_VERSION = "model_version"
# A prediction above this multiple of the largest outcome seen in training is implausible.
PLAUSIBLE_FACTOR = 3.0


class NoChampionError(RuntimeError):
    """No champion was in force on a day that needs predictions."""


def _number_or_zero(value: object) -> float:
    """A float column's max or mean (polars types it as any Python value); 0.0 when the
    column is empty."""
    if value is None:
        return 0.0
    if not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def predict_days(
    spec: DatasetSpec,
    features: pl.DataFrame,
    version_for_day: Callable[[date], str | None],
    load: Callable[[str], TabularModel],
) -> pl.DataFrame:
    """Predictions for every feature row, each made by the champion in force on its day."""
    parts = []
    models: dict[str, TabularModel] = {}
    for (day,), rows in features.group_by(spec.date_column, maintain_order=True):
        version = version_for_day(day)
        if version is None:
            raise NoChampionError(
                f"no champion was in force on {day}: train and deploy a model before it"
            )
        model = models.get(version) or models.setdefault(version, load(version))
        parts.append(
            rows.select(
                spec.date_column,
                spec.event_key,
                *dict.fromkeys((*spec.serving_keys, spec.segment_column)),
            ).with_columns(
                pl.Series(PREDICTION, model.predict(rows), dtype=pl.Float64),
                pl.lit(version, dtype=pl.String).alias(MODEL_VERSION),
            )
        )
    if not parts:
        return pl.DataFrame()
    return pl.concat(parts).sort(spec.date_column, spec.event_key)


def one_per_row(predictions: pl.DataFrame, features: pl.DataFrame, key: str) -> RuleResult:
    missing = features.join(predictions, on=key, how="anti").height
    extra = predictions.height - predictions[key].n_unique() if predictions.height else 0
    return RuleResult(
        missing == 0 and extra == 0 and predictions.height == features.height,
        predictions.height,
        features.height,
        {"missing": missing, "duplicates": extra},
    )


def all_finite(predictions: pl.DataFrame) -> RuleResult:
    values = predictions[PREDICTION].to_numpy()
    bad = int((~np.isfinite(values)).sum())
    return RuleResult(bad == 0, bad, 0, {"rows": len(values)})


def within_range(predictions: pl.DataFrame, upper_by_version: Mapping[str, float]) -> RuleResult:
    bounds = pl.DataFrame(
        {MODEL_VERSION: list(upper_by_version), "upper": list(upper_by_version.values())},
        schema={MODEL_VERSION: pl.String, "upper": pl.Float64},
    )
    joined = predictions.join(bounds, on=MODEL_VERSION, how="left")
    out = joined.filter(
        (pl.col(PREDICTION) < 0) | (pl.col(PREDICTION) > pl.col("upper").fill_null(np.inf))
    ).height
    return RuleResult(
        out == 0,
        _number_or_zero(predictions[PREDICTION].max()),
        {v: round(u, 3) for v, u in upper_by_version.items()}.__repr__(),
        {"rows_out_of_range": out},
    )


class NoFeaturesError(RuntimeError):
    """A day to predict has no feature rows."""


@dataclass(frozen=True)
class PredictionsResult:
    """What the ``predictions`` asset stores and reports: the predictions, each day's metadata
    numbers and the results of its three rules (one per row, finite, plausible range)."""

    frame: pl.DataFrame
    per_day: dict[date, dict[str, Any]]
    one_per_row: RuleResult
    finite: RuleResult
    in_range: RuleResult


def predictions_stage(
    spec: DatasetSpec,
    features: pl.DataFrame,
    days: Sequence[date],
    version_for_day: Callable[[date], str | None],
    load: Callable[[str], TabularModel],
    train_window: Callable[[str], tuple[date, date]],
    max_outcome: Callable[[date, date], float | None],
) -> PredictionsResult:
    """Predict ``days`` (the feature rows of those days) with the champion in force on each,
    and check the result. ``train_window(version)`` is the version's training window and
    ``max_outcome(start, end)`` the largest outcome seen in it: a prediction above
    :data:`PLAUSIBLE_FACTOR` times that is out of range.

    NoFeaturesError when a day has no feature rows, NoChampionError when no champion was in
    force on one. Each day's metadata says what predicted it (``predictor``: ``compiled`` when
    ``load`` gave a model with a verified compiled library, ``booster`` otherwise)."""
    day_rows = features.filter(pl.col(spec.date_column).is_in(list(days)))
    present = set(day_rows[spec.date_column].unique().to_list()) if day_rows.height else set()
    missing = sorted(set(days) - present)
    if missing:
        raise NoFeaturesError(
            f"no features for {', '.join(map(str, missing))}: nothing to predict (a day whose "
            "source broke has none; materialize its features first)"
        )
    loaded: dict[str, TabularModel] = {}

    def remember(version: str) -> TabularModel:
        loaded[version] = load(version)
        return loaded[version]

    frame = predict_days(spec, day_rows, version_for_day, remember)
    upper = {
        version: PLAUSIBLE_FACTOR * float(max_outcome(*train_window(version)) or 0.0)
        for version in frame[MODEL_VERSION].unique().to_list()
    }
    per_day = {}
    for day in days:
        rows = frame.filter(pl.col(spec.date_column) == day)
        versions = sorted(rows[MODEL_VERSION].unique())
        per_day[day] = {
            "model_versions": ", ".join(versions),
            "predictor": ", ".join(sorted({loaded[v].predictor for v in versions})),
            "mean_prediction": _number_or_zero(rows[PREDICTION].mean()),
            "rows": rows.height,
        }
    return PredictionsResult(
        frame=frame,
        per_day=per_day,
        one_per_row=one_per_row(frame, day_rows, spec.event_key),
        finite=all_finite(frame),
        in_range=within_range(frame, upper),
    )
