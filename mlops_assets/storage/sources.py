"""Read one day of events or outcomes from the dataset's source: the simulator, a CSV or Parquet
file, or a table in a DuckDB file of the user's."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from mlops_assets.dataset import CATEGORICAL, DATE, NUMERIC, DatasetSpec

if TYPE_CHECKING:
    # Imported where used: loading the definitions checks a simulated dataset's spec without it.
    import polars as pl

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


def _scan(spec: DatasetSpec) -> pl.LazyFrame:
    import polars as pl

    src = spec.source
    if src.kind == "csv":
        return pl.scan_csv(src.path, try_parse_dates=True)
    if src.kind == "parquet":
        return pl.scan_parquet(src.path)
    if src.kind == "duckdb":
        import duckdb

        with duckdb.connect(str(src.path), read_only=True) as con:
            return con.sql(f'SELECT * FROM "{src.table}"').pl().lazy()
    raise ValueError(f"source kind {src.kind!r} is not a file or table")


def source_schema(spec: DatasetSpec) -> dict[str, str]:
    """Column name -> numeric | categorical | date, as the source really has it."""
    if spec.source.kind == "simulator":
        kinds = dict(SIMULATOR_KINDS)
        if spec.source.options.get("leak_column"):
            kinds[str(spec.source.options["leak_column"])] = NUMERIC
        return kinds
    return {name: _kind(dtype) for name, dtype in _scan(spec).collect_schema().items()}


def _simulator(spec: DatasetSpec):
    from mlops_assets.simulator import SimulatorConfig

    return SimulatorConfig.from_options(spec.source.options, spec.label_lag_days)


def _file_day(spec: DatasetSpec, day: date) -> pl.DataFrame:
    import polars as pl

    col = pl.col(spec.date_column)
    try:
        return _scan(spec).filter(col.cast(pl.Date) == day).collect()
    except pl.exceptions.ComputeError as exc:
        reason = str(exc).strip().splitlines()[0]
        raise SourceReadError(
            f"{spec.source.kind} source {spec.source.path} cannot be read for {day}: {reason}"
        ) from exc


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


def outcomes_land_on(spec: DatasetSpec, day: date) -> date:
    return day + timedelta(days=spec.label_lag_days)


def read_outcomes(spec: DatasetSpec, day: date, as_of: datetime) -> pl.DataFrame:
    """The observed outcome of every event of ``day``; refuses before they land."""
    import polars as pl

    land = outcomes_land_on(spec, day)
    if as_of.date() < land:
        raise OutcomesNotLanded(
            f"{spec.outcome_noun} of {day} land on {land} ({spec.label_lag_days} days after); "
            f"the clock says {as_of:%Y-%m-%d %H:%M}"
        )
    if spec.source.kind == "simulator":
        from mlops_assets.simulator import simulate_outcomes

        return simulate_outcomes(day, _simulator(spec))
    frame = _file_day(spec, day)
    return frame.select(
        pl.col(spec.date_column).cast(pl.Date),
        pl.col(spec.event_key),
        pl.col(spec.target).cast(pl.Float64),
        pl.lit(land, dtype=pl.Date).alias("landed_on"),
    )
