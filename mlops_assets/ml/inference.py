"""Batch inference as pure functions: score each day's features with the champion in force."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date

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
        float(predictions[PREDICTION].max() or 0.0),
        {v: round(u, 3) for v, u in upper_by_version.items()}.__repr__(),
        {"rows_out_of_range": out},
    )
