"""DatasetSpec: what the pipeline needs to know about a dataset.

The spec names the date column, keys, target, features, cost column, label lag, the source and the
training cadence. A spec file's shape and its JSON Schema are in :mod:`mlops_assets.dataset_schema`;
reading a file, and checking it against the source's real columns, is
:mod:`mlops_assets.dataset_load`. This module imports neither, nor the source readers, so every
module that reads a spec can import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from mlops_assets.environments import ENVIRONMENTS

# The kind of a column, as the spec gives it and a source reports it.
NUMERIC = "numeric"
CATEGORICAL = "categorical"
DATE = "date"
SOURCE_KINDS = ("simulator", "csv", "parquet", "duckdb")
CADENCES = ("daily", "weekly")
METRICS = ("wape", "mae", "rmse")


class SpecError(ValueError):
    """The dataset spec is invalid; the message names the field, the value and the fix."""


@dataclass(frozen=True)
class SourceSpec:
    kind: str
    path: Path | None = None
    table: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingSpec:
    cadence: str = "weekly"
    train_days: int = 28
    holdout_days: int = 7
    metric: str = "wape"
    max_train_rows: int = 200_000
    # A new model must beat the best baseline by this relative margin on the metric.
    baseline_margin: float = 0.05
    # Parameter overrides per candidate name (``mlops_assets.ml.candidates.candidates_for``).
    candidate_params: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    event_noun: str
    outcome_noun: str
    description: str
    start_date: date
    date_column: str
    # The key column every table joins on: the spec's single key column, or for a composite key
    # the column the pipeline derives from its parts (``event_key_columns``).
    event_key: str
    serving_keys: tuple[str, ...]
    target: str
    numeric_features: tuple[str, ...]
    categorical_features: tuple[str, ...]
    segment_column: str
    history_keys: tuple[str, ...]
    history_days: int
    label_lag_days: int
    source: SourceSpec
    training: TrainingSpec
    cost_column: str | None = None
    monitored_features: tuple[str, ...] = ()
    # Columns the drift report leaves out; None: the default (columns constant within a day).
    drift_exclude: tuple[str, ...] | None = None
    # Overrides of the environment's promotion gate thresholds (see GateThresholds): keys apply
    # in every environment, a key named after an environment holds that one's overrides.
    gates: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    # The source columns that make up the key (one, or several for a composite key).
    event_key_columns: tuple[str, ...] = ()

    @property
    def key_columns(self) -> tuple[str, ...]:
        return self.event_key_columns or (self.event_key,)

    @property
    def composite_key(self) -> bool:
        return len(self.key_columns) > 1

    @property
    def key_description(self) -> str:
        """What must be unique, in words: 'airing_id' or '(date, hour)'."""
        if self.composite_key:
            return "(" + ", ".join(self.key_columns) + ")"
        return repr(self.event_key)

    @property
    def monitored_numeric(self) -> list[str]:
        """Numeric columns the drift report considers (every numeric model feature, history
        features included, by default); ``ml.monitoring`` decides which of them it tests."""
        chosen = self.monitored_features or self.model_feature_columns
        numeric = self.numeric_features + self.history_feature_columns
        return [c for c in chosen if c in numeric]

    @property
    def monitored_categorical(self) -> list[str]:
        chosen = self.monitored_features or self.model_feature_columns
        return [c for c in chosen if c in self.categorical_features]

    @property
    def raw_feature_columns(self) -> tuple[str, ...]:
        return self.numeric_features + self.categorical_features

    @property
    def history_feature_columns(self) -> tuple[str, ...]:
        cols: list[str] = []
        for key in self.history_keys:
            cols += [f"hist_{key}_mean", f"hist_{key}_n"]
        return tuple(cols)

    @property
    def model_feature_columns(self) -> tuple[str, ...]:
        """The columns a model sees, in a fixed order."""
        return self.raw_feature_columns + self.history_feature_columns

    @property
    def event_columns(self) -> dict[str, str]:
        """Columns a raw_events partition must have, with their kind."""
        cols = {self.date_column: DATE, self.event_key: CATEGORICAL}
        for c in self.categorical_features + self.serving_keys:
            cols[c] = CATEGORICAL
        for c in self.numeric_features:
            cols[c] = NUMERIC
        if self.cost_column:
            cols[self.cost_column] = NUMERIC
        return cols

    @property
    def history_lookback_days(self) -> int:
        """How many days before D the features of D look back into (label lag + window)."""
        return self.label_lag_days + self.history_days


def derived_key_name(parts: tuple[str, ...]) -> str:
    """The key column the pipeline adds for a composite key: its parts joined, then ``_key``."""
    return "_".join(parts) + "_key"


def gate_overrides(spec: DatasetSpec, env: str) -> dict[str, Any]:
    """The spec's gate overrides that apply in ``env``."""
    shared = {k: v for k, v in spec.gates.items() if k not in ENVIRONMENTS}
    return {**shared, **spec.gates.get(env, {})}
