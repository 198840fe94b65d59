"""The dataset spec file's shape: a strict pydantic model (:class:`SpecModel`) whose JSON Schema is
published as ``data/datasets/dataset_spec.schema.json``, and its validation errors explained as
sentences: an unknown field gets a "did you mean" suggestion, a wrong value the allowed ones.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mlops_assets.environments import REPO_ROOT

SCHEMA_PATH = REPO_ROOT / "data" / "datasets" / "dataset_spec.schema.json"

Columns = str | list[str]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceModel(_Strict):
    """Where the rows come from."""

    kind: Literal["simulator", "csv", "parquet", "duckdb"] = Field(
        description="simulator (the embedded data), csv, parquet or duckdb"
    )
    path: str | None = Field(
        None, description="the file (csv, parquet, duckdb), relative to the spec's folder"
    )
    table: str | None = Field(None, description="the table of a duckdb file")
    options: dict[str, Any] = Field(
        default_factory=dict, description="the simulator's options (seed, airings_per_day, ...)"
    )


class TrainingModel(_Strict):
    """How candidates are trained and compared."""

    cadence: Literal["daily", "weekly"] = "weekly"
    train_days: int = Field(28, ge=1, strict=True)
    holdout_days: int = Field(7, ge=1, strict=True)
    metric: Literal["wape", "mae", "rmse"] = "wape"
    max_train_rows: int = Field(200_000, ge=100, strict=True)
    baseline_margin: float = Field(
        0.05, ge=0, description="relative margin a model must beat the best baseline by"
    )
    candidate_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="parameters to change per candidate, e.g. lgbm_large: {num_boost_round: "
        "2000}; names and kinds are checked against the candidates' own parameters",
    )


class SpecModel(_Strict):
    """A dataset spec file (YAML)."""

    name: str = Field(description="the dataset's name")
    event_noun: str = Field("event", description="what one row is, in your business's words")
    outcome_noun: str = Field("outcome", description="what the target counts")
    description: str = ""
    start_date: date = Field(description="first day of the daily partitions (ISO date)")
    date_column: str = Field(description="the day (or timestamp) of each row")
    event_key: Columns = Field(
        description="the column, or list of columns, unique per row across all days"
    )
    target: str = Field(description="the numeric outcome to predict")
    numeric_features: list[str] = Field(default_factory=list)
    categorical_features: list[str] = Field(default_factory=list)
    serving_keys: Columns = Field(description="categorical columns naming an online-store entry")
    history_keys: Columns = Field(default_factory=list)
    history_days: int = Field(28, ge=1, strict=True)
    segment_column: str | None = None
    cost_column: str | None = None
    monitored_features: list[str] = Field(
        default_factory=list,
        description="the features the drift report watches (default: every model feature, "
        "raw and history)",
    )
    drift_exclude: list[str] | None = Field(
        None,
        description="columns the drift report leaves out; when given it replaces the default "
        "exclusion of columns constant within a day ([] watches them too)",
    )
    gates: dict[str, Any] | None = Field(
        None,
        description="promotion gate overrides: settings for every environment, or under "
        "dev/staging/prod for one",
    )
    label_lag_days: int = Field(2, ge=0, strict=True)
    # pydantic's stubs cannot match a model class to default_factory's two call shapes.
    training: TrainingModel = Field(default_factory=TrainingModel)  # type: ignore[arg-type]
    source: SourceModel


def json_schema() -> dict[str, Any]:
    """The spec's JSON Schema (what ``data/datasets/dataset_spec.schema.json`` publishes)."""
    schema = SpecModel.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "mlops_assets dataset spec"
    return schema


def write_json_schema(path: Path = SCHEMA_PATH) -> Path:
    path.write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")
    return path


def _model_for(loc: tuple[Any, ...]) -> type[BaseModel]:
    model: type[BaseModel] = SpecModel
    for part in loc:
        annotation = model.model_fields.get(str(part))
        inner = getattr(annotation, "annotation", None)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            model = inner
    return model


def explain(error: Mapping[str, Any]) -> str:
    """One pydantic error as a sentence naming the field, the value and the fix."""
    loc = tuple(p for p in error["loc"] if not isinstance(p, int))
    name = ".".join(str(p) for p in loc)
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        parent = ".".join(str(p) for p in loc[:-1])
        known = list(_model_for(loc[:-1]).model_fields)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        prefix = f"{parent}." if parent else ""
        hint = f"did you mean '{prefix}{close[0]}'? " if close else "remove it or fix its name "
        where = f"'{parent}' " if parent else ""
        return (
            f"dataset spec field '{name}' is not a {where}spec field; {hint}"
            f"(known fields: {', '.join(known)})"
        )
    if kind == "missing":
        return f"dataset spec field '{name}' is required; add it to the spec"
    if kind == "literal_error":
        allowed = error.get("ctx", {}).get("expected", "").replace("'", "")
        allowed = allowed.replace(" or ", ", ")
        return f"dataset spec field '{name}' is {value!r}; use one of: {allowed}"
    return f"dataset spec field '{name}': {error['msg'].lower()}, got {value!r}"
