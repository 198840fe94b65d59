"""Read a dataset spec file into a :class:`~mlops_assets.dataset.DatasetSpec` and check it.

:func:`parse_spec` validates the mapping against the strict :class:`SpecModel` and then the rules
a schema cannot say (a column in two roles is an error naming both fields, gate overrides name
known settings). :func:`load_spec` then checks the spec against the source's real columns, so a
spec that names a missing column, a wrong type or an unknown source fails at load with a message
naming the field, the value and the fix.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mlops_assets.dataset import (
    DATE,
    NUMERIC,
    DatasetSpec,
    SourceSpec,
    SpecError,
    TrainingSpec,
    derived_key_name,
)
from mlops_assets.dataset_schema import Columns, SpecModel, explain
from mlops_assets.environments import ENVIRONMENTS, validate_identifier
from mlops_assets.storage.sources import (
    SourceReadError,
    first_bad_value,
    source_date_range,
    source_schema,
)


def validate_column(value: Any, what: str) -> str:
    try:
        return validate_identifier(value, f"dataset spec field '{what}': column")
    except ValueError as exc:
        raise SpecError(str(exc)) from exc


def _names(value: Columns | None, what: str, required: bool = False) -> tuple[str, ...]:
    if value is None:
        value = []
    if isinstance(value, str):
        value = [value]
    if required and not value:
        raise SpecError(f"dataset spec field '{what}' needs at least one column")
    return tuple(validate_column(v, what) for v in value)


def _two_roles(model: SpecModel, key_parts: tuple[str, ...]) -> None:
    """Refuse a column given two roles that exclude each other, naming both fields."""
    roles: dict[str, list[str]] = {}

    def add(fieldname: str, columns: Columns | None) -> None:
        for col in [columns] if isinstance(columns, str) else columns or []:
            roles.setdefault(col, []).append(fieldname)

    add("target", model.target)
    add("date_column", model.date_column)
    add("numeric_features", model.numeric_features)
    add("categorical_features", model.categorical_features)
    add("cost_column", model.cost_column)
    add("event_key", list(key_parts))
    exclusive = {
        "target": {"date_column", "numeric_features", "categorical_features", "cost_column"},
        "date_column": {"numeric_features", "categorical_features", "cost_column"},
        "numeric_features": {"categorical_features"},
        "cost_column": {"categorical_features", "event_key"},
    }
    fixes = {
        "target": "the target is what models predict and cannot be one of their inputs",
        "date_column": "the date column partitions the data; derive a feature such as weekday "
        "under another name",
    }
    for col, fields_ in roles.items():
        for first in fields_:
            clash = [f for f in fields_ if f in exclusive.get(first, set())]
            if clash:
                second = clash[0]
                fix = fixes.get(first, "a column has one kind; keep it in the field that fits")
                raise SpecError(
                    f"dataset spec: column {col!r} is listed in both '{first}' and '{second}'; "
                    f"remove it from one of them ({fix})"
                )
        if len(fields_) != len(set(fields_)):
            raise SpecError(
                f"dataset spec field '{fields_[0]}' lists column {col!r} twice; list it once"
            )
    if model.target in key_parts:
        raise SpecError(
            f"dataset spec: column {model.target!r} is listed in both 'target' and 'event_key'; "
            "the key identifies a row and cannot be the outcome"
        )


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


def parse_spec(raw: dict[str, Any], base_dir: Path) -> DatasetSpec:
    """Build a DatasetSpec from a parsed YAML mapping (no source access)."""
    if not isinstance(raw, dict):
        raise SpecError("dataset spec must be a YAML mapping of fields (name, date_column, ...)")
    try:
        model = SpecModel.model_validate(raw)
    except ValidationError as exc:
        raise SpecError("; ".join(explain(e) for e in exc.errors())) from exc
    src = model.source
    path = None
    if src.kind != "simulator":
        if not src.path:
            raise SpecError(
                f"dataset spec field 'source.path' is required for a {src.kind} source; "
                "name the file (relative to the spec's folder or absolute)"
            )
        path = Path(src.path)
        if not path.is_absolute():
            path = (base_dir / path).resolve()
        if not path.exists():
            raise SpecError(
                f"dataset spec field 'source.path': file {path} does not exist; "
                "fix the path (relative paths start at the spec's folder)"
            )
    table = None
    if src.kind == "duckdb":
        if not src.table:
            raise SpecError(
                "dataset spec field 'source.table' is required for a duckdb source; "
                "name the table that holds one row per event"
            )
        table = validate_column(src.table, "source.table")
    source = SourceSpec(kind=src.kind, path=path, table=table, options=dict(src.options))
    from mlops_assets.ml.candidates import check_candidate_params

    t = model.training
    training = TrainingSpec(
        cadence=t.cadence,
        train_days=t.train_days,
        holdout_days=t.holdout_days,
        metric=t.metric,
        max_train_rows=t.max_train_rows,
        baseline_margin=t.baseline_margin,
        candidate_params=check_candidate_params(t.candidate_params),
    )
    key_parts = _names(model.event_key, "event_key", required=True)
    _two_roles(model, key_parts)
    categorical = _names(model.categorical_features, "categorical_features")
    numeric = _names(model.numeric_features, "numeric_features")
    if not categorical and not numeric:
        raise SpecError(
            "dataset spec needs 'numeric_features' or 'categorical_features': list the columns "
            "models learn from"
        )
    date_column = validate_column(model.date_column, "date_column")
    if date_column in key_parts and len(key_parts) == 1:
        raise SpecError(
            f"dataset spec field 'event_key': {date_column!r} is the date column and alone cannot "
            f"identify a row; add the columns that do, e.g. event_key: [{date_column}, hour]"
        )
    segment = validate_column(model.segment_column or (categorical or numeric)[0], "segment_column")
    key = key_parts[0] if len(key_parts) == 1 else derived_key_name(key_parts)
    spec = DatasetSpec(
        name=model.name,
        event_noun=model.event_noun,
        outcome_noun=model.outcome_noun,
        description=model.description.strip(),
        start_date=model.start_date,
        date_column=date_column,
        event_key=key,
        event_key_columns=key_parts,
        serving_keys=_names(model.serving_keys, "serving_keys", required=True),
        target=validate_column(model.target, "target"),
        numeric_features=numeric,
        categorical_features=categorical,
        segment_column=segment,
        history_keys=_names(model.history_keys, "history_keys"),
        history_days=model.history_days,
        label_lag_days=model.label_lag_days,
        source=source,
        training=training,
        cost_column=validate_column(model.cost_column, "cost_column")
        if model.cost_column
        else None,
        monitored_features=_names(model.monitored_features, "monitored_features"),
        drift_exclude=None
        if model.drift_exclude is None
        else _names(model.drift_exclude, "drift_exclude"),
        gates=_gates(model.gates),
    )
    for k in spec.serving_keys + spec.history_keys:
        if k not in spec.categorical_features:
            raise SpecError(
                f"dataset spec: key column {k!r} (serving_keys/history_keys) must also be "
                "listed in 'categorical_features'; add it there"
            )
    if segment not in spec.categorical_features:
        raise SpecError(
            f"dataset spec field 'segment_column': {segment!r} must be categorical; name a "
            "column of 'categorical_features'"
        )
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
    """Load a spec file and check it against its source's columns and types (on every row)
    and, given the data folder, refuse a source inside an environment's folder."""
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
        try:
            schema = source_schema(spec)
        except SourceReadError as exc:
            raise SpecError(str(exc)) from exc
        check_columns(spec, schema)
    check_monitored(spec)
    return spec


def source_days(spec: DatasetSpec) -> tuple[date, date] | None:
    """The first and last day a file or table source holds (None for the simulator)."""
    try:
        return source_date_range(spec)
    except SourceReadError as exc:
        raise SpecError(str(exc)) from exc


def check_monitored(spec: DatasetSpec) -> None:
    """Every monitored feature is a model feature (raw or history); every column of
    ``drift_exclude`` is a model feature or the target, and not also in monitored_features."""
    features = spec.model_feature_columns
    for col in spec.monitored_features:
        if col not in features:
            raise SpecError(
                f"dataset spec field 'monitored_features': {col!r} is not a numeric or "
                "categorical feature nor a history feature "
                f"({', '.join(spec.history_feature_columns) or 'none'}); list it in one of them "
                "or drop it here"
            )
    for col in spec.drift_exclude or ():
        if col not in (*features, spec.target):
            raise SpecError(
                f"dataset spec field 'drift_exclude': {col!r} is not a column the drift report "
                f"watches (the target {spec.target!r}, a numeric or categorical feature, or a "
                f"history feature: {', '.join(spec.history_feature_columns) or 'none'}); fix "
                "its name or drop it here"
            )
        if col in spec.monitored_features:
            raise SpecError(
                f"dataset spec: column {col!r} is listed in both 'monitored_features' and "
                "'drift_exclude'; remove it from one of them"
            )


def check_columns(spec: DatasetSpec, schema: dict[str, str]) -> None:
    """Refuse a source whose columns do not match the spec, naming the spec field at fault."""
    fields_ = {
        "date_column": [spec.date_column],
        "event_key": list(spec.key_columns),
        "target": [spec.target],
        "numeric_features": list(spec.numeric_features),
        "categorical_features": list(spec.categorical_features),
        "cost_column": [spec.cost_column] if spec.cost_column else [],
    }
    for field_name, columns in fields_.items():
        for col in columns:
            if col not in schema:
                raise SpecError(
                    f"dataset spec field '{field_name}' names column {col!r}, which the source "
                    f"does not have (it has: {', '.join(sorted(schema))}); fix the name"
                )
    if spec.composite_key and spec.event_key in schema:
        raise SpecError(
            f"dataset spec field 'event_key': the composite key {spec.key_description} is "
            f"stored as column {spec.event_key!r}, which the source already has; use that "
            "column as the key or rename it in the source"
        )
    for field_name in ("numeric_features", "target", "cost_column"):
        for col in fields_[field_name]:
            if schema[col] != NUMERIC:
                bad = first_bad_value(spec, col)
                where = f" (first value that is not a number: {bad})" if bad else ""
                raise SpecError(
                    f"dataset spec field '{field_name}': column {col!r} must be numeric but the "
                    f"source has it as {schema[col]}{where}; fix the values or list it in "
                    "'categorical_features'"
                )
    if schema[spec.date_column] != DATE:
        raise SpecError(
            f"dataset spec field 'date_column': column {spec.date_column!r} must be a date but "
            f"the source has it as {schema[spec.date_column]}; name a column of ISO dates or "
            "timestamps"
        )
