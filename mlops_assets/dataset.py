"""DatasetSpec: what the pipeline needs to know about a dataset, loaded from a YAML file.

The spec names the date column, keys, target, features, cost column, label lag, the source and the
training cadence. Loading validates it against the source's real columns, so a spec that names a
missing column, a wrong type or an unknown source fails at load with a message naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from mlops_assets.environments import ENVIRONMENTS, validate_identifier

SOURCE_KINDS = ("simulator", "csv", "parquet", "duckdb")
CADENCES = ("daily", "weekly")
METRICS = ("wape", "mae", "rmse")
NUMERIC = "numeric"
CATEGORICAL = "categorical"
DATE = "date"


class SpecError(ValueError):
    """The dataset spec is invalid; the message names the field."""


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


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    event_noun: str
    outcome_noun: str
    description: str
    start_date: date
    date_column: str
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
    # Overrides of the environment's promotion gate thresholds (see GateThresholds): keys apply
    # in every environment, a key named after an environment holds that one's overrides.
    gates: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def monitored_numeric(self) -> list[str]:
        """Numeric columns the drift report watches (all raw numeric features by default)."""
        chosen = self.monitored_features or self.raw_feature_columns
        return [c for c in chosen if c in self.numeric_features]

    @property
    def monitored_categorical(self) -> list[str]:
        chosen = self.monitored_features or self.raw_feature_columns
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


def _require(raw: dict[str, Any], key: str, where: str = "") -> Any:
    if key not in raw or raw[key] in (None, ""):
        raise SpecError(f"dataset spec field '{where}{key}' is required")
    return raw[key]


def _names(raw: dict[str, Any], key: str, required: bool = True) -> tuple[str, ...]:
    value = raw.get(key, [])
    if value is None:
        value = []
    if isinstance(value, str):
        value = [value]
    if required and not value:
        raise SpecError(f"dataset spec field '{key}' needs at least one column")
    return tuple(validate_column(v, key) for v in value)


def validate_column(value: Any, what: str) -> str:
    try:
        return validate_identifier(value, f"dataset spec field '{what}': column")
    except ValueError as exc:
        raise SpecError(str(exc)) from exc


def _int(raw: dict[str, Any], key: str, default: int, lo: int, where: str = "") -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise SpecError(
            f"dataset spec field '{where}{key}' must be an integer >= {lo}, got {value!r}"
        )
    return value


def _gate_values(raw: Any, where: str) -> dict[str, Any]:
    from dataclasses import fields

    from mlops_assets.environments import GATE_NAMES, GateThresholds

    known = {f.name: f.type for f in fields(GateThresholds)}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise SpecError(
                f"dataset spec field '{where}{key}' is not a gate setting; known: "
                f"{', '.join(known)} (or an environment: {', '.join(ENVIRONMENTS)})"
            )
        if key == "blocking":
            names = [value] if isinstance(value, str) else list(value or [])
            unknown = [n for n in names if n not in GATE_NAMES]
            if unknown:
                raise SpecError(
                    f"dataset spec field '{where}blocking' names unknown gates {unknown}; "
                    f"known: {', '.join(GATE_NAMES)}"
                )
            out[key] = tuple(names)
        elif key == "serving_calls":
            if not isinstance(value, int) or isinstance(value, bool) or value < 10:
                raise SpecError(
                    f"dataset spec field '{where}serving_calls' must be an integer >= 10, "
                    f"got {value!r}"
                )
            out[key] = value
        else:
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise SpecError(
                    f"dataset spec field '{where}{key}' must be a number >= 0, got {value!r}"
                )
            out[key] = float(value)
    return out


def _gates(raw: Any) -> dict[str, Any]:
    """The spec's ``gates:`` overrides, checked: known settings, numbers, known gate names."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError("dataset spec field 'gates' must be a mapping of gate settings")
    shared = {k: v for k, v in raw.items() if k not in ENVIRONMENTS}
    out: dict[str, Any] = _gate_values(shared, "gates.")
    for env in ENVIRONMENTS:
        if env in raw:
            if not isinstance(raw[env], dict):
                raise SpecError(f"dataset spec field 'gates.{env}' must be a mapping")
            out[env] = _gate_values(raw[env], f"gates.{env}.")
    return out


def gate_overrides(spec: DatasetSpec, env: str) -> dict[str, Any]:
    """The spec's gate overrides that apply in ``env``."""
    shared = {k: v for k, v in spec.gates.items() if k not in ENVIRONMENTS}
    return {**shared, **spec.gates.get(env, {})}


def parse_spec(raw: dict[str, Any], base_dir: Path) -> DatasetSpec:
    """Build a DatasetSpec from a parsed YAML mapping (no source access)."""
    if not isinstance(raw, dict):
        raise SpecError("dataset spec must be a YAML mapping")
    src_raw = _require(raw, "source")
    if not isinstance(src_raw, dict):
        raise SpecError("dataset spec field 'source' must be a mapping")
    kind = _require(src_raw, "kind", "source.")
    if kind not in SOURCE_KINDS:
        raise SpecError(
            f"dataset spec field 'source.kind' is {kind!r}; "
            f"known sources: {', '.join(SOURCE_KINDS)}"
        )
    path = None
    if kind != "simulator":
        path = Path(_require(src_raw, "path", "source."))
        if not path.is_absolute():
            path = (base_dir / path).resolve()
        if not path.exists():
            raise SpecError(f"dataset spec field 'source.path': file {path} does not exist")
    table = src_raw.get("table")
    if kind == "duckdb":
        table = validate_column(_require(src_raw, "table", "source."), "source.table")
    source = SourceSpec(
        kind=kind, path=path, table=table, options=dict(src_raw.get("options") or {})
    )

    tr_raw = raw.get("training") or {}
    cadence = tr_raw.get("cadence", "weekly")
    if cadence not in CADENCES:
        raise SpecError(f"dataset spec field 'training.cadence' must be one of {CADENCES}")
    metric = tr_raw.get("metric", "wape")
    if metric not in METRICS:
        raise SpecError(f"dataset spec field 'training.metric' must be one of {METRICS}")
    training = TrainingSpec(
        cadence=cadence,
        train_days=_int(tr_raw, "train_days", 28, 1, "training."),
        holdout_days=_int(tr_raw, "holdout_days", 7, 1, "training."),
        metric=metric,
        max_train_rows=_int(tr_raw, "max_train_rows", 200_000, 100, "training."),
        baseline_margin=float(tr_raw.get("baseline_margin", 0.05)),
    )
    try:
        start = date.fromisoformat(str(_require(raw, "start_date")))
    except ValueError as exc:
        raise SpecError("dataset spec field 'start_date' must be an ISO date") from exc

    categorical = _names(raw, "categorical_features", required=False)
    numeric = _names(raw, "numeric_features", required=False)
    if not categorical and not numeric:
        raise SpecError("dataset spec needs 'numeric_features' or 'categorical_features'")
    segment = validate_column(
        raw.get("segment_column") or (categorical or numeric)[0], "segment_column"
    )
    cost = raw.get("cost_column")
    spec = DatasetSpec(
        name=str(_require(raw, "name")),
        event_noun=str(raw.get("event_noun", "event")),
        outcome_noun=str(raw.get("outcome_noun", "outcome")),
        description=str(raw.get("description", "")).strip(),
        start_date=start,
        date_column=validate_column(_require(raw, "date_column"), "date_column"),
        event_key=validate_column(_require(raw, "event_key"), "event_key"),
        serving_keys=_names(raw, "serving_keys"),
        target=validate_column(_require(raw, "target"), "target"),
        numeric_features=numeric,
        categorical_features=categorical,
        segment_column=segment,
        history_keys=_names(raw, "history_keys", required=False),
        history_days=_int(raw, "history_days", 28, 1),
        label_lag_days=_int(raw, "label_lag_days", 2, 0),
        source=source,
        training=training,
        cost_column=validate_column(cost, "cost_column") if cost else None,
        monitored_features=_names(raw, "monitored_features", required=False),
        gates=_gates(raw.get("gates")),
    )
    for key in spec.serving_keys + spec.history_keys:
        if key not in spec.categorical_features:
            raise SpecError(
                f"dataset spec: key column {key!r} (serving_keys/history_keys) must also be "
                "listed in 'categorical_features'"
            )
    if segment not in spec.categorical_features:
        raise SpecError(f"dataset spec field 'segment_column': {segment!r} must be categorical")
    return spec


def check_source_location(spec: DatasetSpec, data_dir: Path) -> None:
    """Refuse a source file inside an environment's folder of ``data_dir``: a dataset must not
    read any environment's state (another environment's data, or its own warehouse)."""
    if spec.source.path is None:
        return
    path = spec.source.path.resolve()
    for env in ENVIRONMENTS:
        folder = (Path(data_dir) / env).resolve()
        if path.is_relative_to(folder):
            raise SpecError(
                f"dataset spec field 'source.path': {path} lies inside the data folder of the "
                f"{env!r} environment ({folder}); a source must not read an environment's state"
            )


def load_spec(
    path: str | Path, validate_source: bool = True, data_dir: Path | None = None
) -> DatasetSpec:
    """Load a spec file and check it against its source's columns and types and, given the
    data folder, refuse a source inside an environment's folder."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"dataset spec file {path} does not exist (MLOPS_DATASET)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"dataset spec file {path} is not valid YAML: {exc}") from exc
    spec = parse_spec(raw, path.parent)
    spec = DatasetSpec(**{**spec.__dict__, "path": path})
    if data_dir is not None:
        check_source_location(spec, data_dir)
    if validate_source:
        from mlops_assets.storage.sources import source_schema

        check_columns(spec, source_schema(spec))
    check_monitored(spec)
    return spec


def check_monitored(spec: DatasetSpec) -> None:
    """Every monitored feature must be one of the spec's raw features."""
    for col in spec.monitored_features:
        if col not in spec.raw_feature_columns:
            raise SpecError(
                f"dataset spec field 'monitored_features': {col!r} is not a numeric or "
                "categorical feature"
            )


def check_columns(spec: DatasetSpec, schema: dict[str, str]) -> None:
    """Refuse a source whose columns do not match the spec, naming the spec field at fault."""
    fields = {
        "date_column": [spec.date_column],
        "event_key": [spec.event_key],
        "target": [spec.target],
        "numeric_features": list(spec.numeric_features),
        "categorical_features": list(spec.categorical_features),
        "cost_column": [spec.cost_column] if spec.cost_column else [],
    }
    for field_name, columns in fields.items():
        for col in columns:
            if col not in schema:
                raise SpecError(
                    f"dataset spec field '{field_name}' names column {col!r}, which the source "
                    f"does not have (it has: {', '.join(sorted(schema))})"
                )
    for field_name in ("numeric_features", "target", "cost_column"):
        for col in fields[field_name]:
            if schema[col] != NUMERIC:
                raise SpecError(
                    f"dataset spec field '{field_name}': column {col!r} must be numeric but the "
                    f"source has it as {schema[col]}"
                )
    if schema[spec.date_column] != DATE:
        raise SpecError(
            f"dataset spec field 'date_column': column {spec.date_column!r} must be a date but "
            f"the source has it as {schema[spec.date_column]}"
        )
