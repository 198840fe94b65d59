"""Read one day of events or outcomes from the dataset's source: the simulator, a CSV or Parquet
file, or a table in a DuckDB file of the user's.

A CSV is read as text and each column is converted to the kind the spec gives it, day by day: a
value that does not convert fails its own day, naming its line, column and day, and every other
day reads as before. A composite key (``event_key: [date, hour]``) is added as one key column.

The spec's types come from :mod:`mlops_assets.dataset`, which imports no reader; checking a spec
against its source (:mod:`mlops_assets.dataset_load`) imports this module.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_assets.dataset import CATEGORICAL, DATE, NUMERIC, DatasetSpec

if TYPE_CHECKING:
    # Imported where used: loading the definitions checks a simulated dataset's spec without it.
    import polars as pl

# Separates the parts of a composite key in the key column the pipeline derives from them.
KEY_SEPARATOR = "|"
# The file line of a CSV row (the header is line 1), kept while a day is converted.
LINE = "__line"

# The simulator's columns by kind, as its EVENT_SCHEMA and OUTCOME_SCHEMA type them, so that
# checking a simulated dataset's spec imports neither the simulator (numpy) nor polars.
SIMULATOR_KINDS = {
    "air_date": DATE,
    "airing_id": CATEGORICAL,
    "network": CATEGORICAL,
    "daypart": CATEGORICAL,
    "creative_id": CATEGORICAL,
    "hour": NUMERIC,
    "duration_s": NUMERIC,
    "creative_age_days": NUMERIC,
    "spend": NUMERIC,
    "audience_k": NUMERIC,
    "visits": NUMERIC,
    "landed_on": DATE,
}


class OutcomesNotLanded(RuntimeError):
    """Outcomes of a day are asked for before they land."""


class SourceReadError(ValueError):
    """The source file or table cannot be read (e.g. a value of the wrong type in a column)."""


def _kind(dtype: pl.DataType) -> str:
    import polars as pl

    if dtype.is_numeric():
        return NUMERIC
    if dtype in (pl.Date, pl.Datetime) or isinstance(dtype, pl.Datetime):
        return DATE
    return CATEGORICAL


def _where(spec: DatasetSpec) -> str:
    return f"{spec.source.kind} source {spec.source.path}"


def _file(spec: DatasetSpec) -> Path:
    """The file of a csv or parquet source (the spec loader requires one for those kinds)."""
    if spec.source.path is None:
        raise SourceReadError(f"{_where(spec)} names no file")
    return spec.source.path


def _duckdb_table(spec: DatasetSpec) -> pl.DataFrame:
    import duckdb

    src = spec.source
    with duckdb.connect(str(src.path), read_only=True) as con:
        tables = sorted(
            row[0]
            for row in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
            ).fetchall()
        )
        if src.table not in tables:
            raise SourceReadError(
                f"dataset spec field 'source.table': table {src.table!r} is not in {src.path} "
                f"(it has: {', '.join(tables) or 'no tables'}); name the table that holds one "
                "row per event"
            )
        return con.sql(f'SELECT * FROM "{src.table}"').pl()


@lru_cache(maxsize=4)
def _csv_text(path: Path, _mtime_ns: int, _size: int) -> pl.DataFrame:
    """The CSV as text (every column a string) with its file line; cached while unchanged."""
    import polars as pl

    try:
        frame = pl.read_csv(path, infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        reason = str(exc).strip().splitlines()[0]
        raise SourceReadError(f"csv source {path} cannot be read: {reason}") from exc
    return frame.with_row_index(LINE, offset=2)


def _csv(spec: DatasetSpec) -> pl.DataFrame:
    path = _file(spec)
    stat = path.stat()
    return _csv_text(path, stat.st_mtime_ns, stat.st_size)


def _as_date(values: pl.Expr) -> pl.Expr:
    """Text as a date: an ISO date, or the day of an ISO timestamp; null when neither."""
    import polars as pl

    return pl.coalesce(
        values.str.to_date("%Y-%m-%d", strict=False),
        values.str.to_datetime(strict=False).dt.date(),
    )


def source_schema(spec: DatasetSpec) -> dict[str, str]:
    """Column name -> numeric | categorical | date, as the source really has it (a CSV's kinds
    are inferred from every row, not the first ones)."""
    if spec.source.kind == "simulator":
        kinds = dict(SIMULATOR_KINDS)
        if spec.source.options.get("leak_column"):
            kinds[str(spec.source.options["leak_column"])] = NUMERIC
        return kinds
    import polars as pl

    if spec.source.kind == "csv":
        try:
            schema = pl.scan_csv(
                _file(spec), try_parse_dates=True, infer_schema_length=None
            ).collect_schema()
        except pl.exceptions.PolarsError as exc:
            reason = str(exc).strip().splitlines()[0]
            raise SourceReadError(f"{_where(spec)} cannot be read: {reason}") from exc
        return {name: _kind(dtype) for name, dtype in schema.items()}
    if spec.source.kind == "parquet":
        schema = pl.scan_parquet(_file(spec)).collect_schema()
        return {name: _kind(dtype) for name, dtype in schema.items()}
    return {name: _kind(dtype) for name, dtype in _duckdb_table(spec).schema.items()}


def first_bad_value(spec: DatasetSpec, column: str) -> str | None:
    """For a CSV column the spec takes as numeric: where its first value that is not a number
    is ('line 12 (2025-01-03): \\'n/a\\''), or None."""
    import polars as pl

    if spec.source.kind != "csv":
        return None
    text = _csv(spec)
    if column not in text.columns:
        return None
    bad = text.filter(
        pl.col(column).is_not_null() & pl.col(column).cast(pl.Float64, strict=False).is_null()
    ).head(1)
    if bad.is_empty():
        return None
    row = bad.row(0, named=True)
    return f"line {row[LINE]} ({row.get(spec.date_column)}): {row[column]!r}"


def source_date_range(spec: DatasetSpec) -> tuple[date, date] | None:
    """The first and last day a file or table source holds; None for the simulator."""
    if spec.source.kind == "simulator":
        return None
    import polars as pl

    if spec.source.kind == "csv":
        days = _csv(spec).select(_as_date(pl.col(spec.date_column)).alias("d"))
    elif spec.source.kind == "parquet":
        days = (
            pl.scan_parquet(_file(spec))
            .select(pl.col(spec.date_column).cast(pl.Date).alias("d"))
            .collect()
        )
    else:
        days = _duckdb_table(spec).select(pl.col(spec.date_column).cast(pl.Date).alias("d"))
    first, last = days["d"].min(), days["d"].max()
    if not isinstance(first, date) or not isinstance(last, date):
        raise SourceReadError(f"{_where(spec)} holds no dated rows: it has no day to run")
    return first, last


def _csv_day(spec: DatasetSpec, day: date) -> pl.DataFrame:
    """A CSV's rows of ``day``, each spec column converted to its kind; a value that does not
    convert fails the day naming its line, column and day."""
    import polars as pl

    text = _csv(spec)
    rows = text.filter(_as_date(pl.col(spec.date_column)) == day)
    numeric = set(spec.numeric_features) | {spec.target}
    if spec.cost_column:
        numeric.add(spec.cost_column)
    casts = {}
    for col in rows.columns:
        if col in numeric:
            casts[col] = pl.col(col).cast(pl.Float64, strict=False)
    typed = rows.with_columns(
        **casts,
        **{spec.date_column: _date_or_time(rows[spec.date_column])},
    )
    for col in casts:
        bad = typed.filter(pl.col(col).is_null() & rows[col].is_not_null()).head(1)
        if bad.height:
            line = bad[LINE][0]
            value = rows.filter(pl.col(LINE) == line)[col][0]
            raise SourceReadError(
                f"{_where(spec)} cannot be read for {day}: line {line}, column {col!r} holds "
                f"{value!r}, which is not a number; fix the value (leave the cell empty for a "
                "missing value)"
            )
    return typed.drop(LINE)


def _date_or_time(values: pl.Series) -> pl.Series:
    """A CSV date column as dates, or as timestamps when it holds times of day."""
    import polars as pl

    frame = values.to_frame("v")
    as_date = frame.select(pl.col("v").str.to_date("%Y-%m-%d", strict=False))["v"]
    if as_date.null_count() == values.null_count():
        return as_date
    return frame.select(pl.col("v").str.to_datetime(strict=False))["v"]


def _file_day(spec: DatasetSpec, day: date) -> pl.DataFrame:
    import polars as pl

    if spec.source.kind == "csv":
        frame = _csv_day(spec, day)
    elif spec.source.kind == "parquet":
        col = pl.col(spec.date_column)
        frame = pl.scan_parquet(_file(spec)).filter(col.cast(pl.Date) == day).collect()
    else:
        frame = _duckdb_table(spec).filter(pl.col(spec.date_column).cast(pl.Date) == day)
    # A category may be stored as numbers (a 0/1 flag); the pipeline reads it as text.
    categories = [c for c in spec.categorical_features if c in frame.columns]
    frame = frame.with_columns(pl.col(c).cast(pl.String) for c in categories)
    return with_key(spec, frame)


def with_key(spec: DatasetSpec, frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with the key column of a composite key (its parts as text, joined by ``|``)."""
    import polars as pl

    if not spec.composite_key or not all(c in frame.columns for c in spec.key_columns):
        return frame
    parts = [pl.col(c).cast(pl.String) for c in spec.key_columns]
    return frame.with_columns(pl.concat_str(parts, separator=KEY_SEPARATOR).alias(spec.event_key))


def _simulator(spec: DatasetSpec):
    from mlops_assets.simulator import SimulatorConfig

    return SimulatorConfig.from_options(spec.source.options, spec.label_lag_days)


def read_events(spec: DatasetSpec, day: date) -> pl.DataFrame:
    """Every event of ``day`` with its attributes as known when predicting (no target)."""
    import polars as pl

    if spec.source.kind == "simulator":
        from mlops_assets.simulator import simulate_events

        return simulate_events(day, _simulator(spec))
    frame = _file_day(spec, day)
    return frame.drop(spec.target, strict=False).with_columns(
        pl.col(spec.date_column).cast(pl.Date)
    )


def read_day(spec: DatasetSpec, day: date) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """The events of ``day`` and, for a file or table source (whose rows carry the target),
    its outcomes as :func:`read_outcomes` gives them once landed; None for the simulator."""
    import polars as pl

    if spec.source.kind == "simulator":
        return read_events(spec, day), None
    frame = _file_day(spec, day)
    events = frame.drop(spec.target, strict=False).with_columns(
        pl.col(spec.date_column).cast(pl.Date)
    )
    return events, _outcomes(spec, frame, day)


def outcomes_land_on(spec: DatasetSpec, day: date) -> date:
    return day + timedelta(days=spec.label_lag_days)


def _outcomes(spec: DatasetSpec, frame: pl.DataFrame, day: date) -> pl.DataFrame:
    import polars as pl

    return frame.select(
        pl.col(spec.date_column).cast(pl.Date),
        pl.col(spec.event_key),
        pl.col(spec.target).cast(pl.Float64),
        pl.lit(outcomes_land_on(spec, day), dtype=pl.Date).alias("landed_on"),
    )


def read_outcomes(spec: DatasetSpec, day: date, as_of: datetime) -> pl.DataFrame:
    """The observed outcome of every event of ``day``; refuses before they land."""
    land = outcomes_land_on(spec, day)
    if as_of.date() < land:
        raise OutcomesNotLanded(
            f"{spec.outcome_noun} of {day} land on {land} ({spec.label_lag_days} days after); "
            f"the clock says {as_of:%Y-%m-%d %H:%M}"
        )
    if spec.source.kind == "simulator":
        from mlops_assets.simulator import simulate_outcomes

        return simulate_outcomes(day, _simulator(spec))
    return _outcomes(spec, _file_day(spec, day), day)
