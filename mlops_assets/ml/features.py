"""Feature refresh, as pure functions on polars frames.

Point-in-time rule: the features of day D use outcomes only of days d with d + label_lag < D, that
is outcomes that had landed before D began. ``build_features`` enforces it itself, whatever history
it is handed.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import polars as pl

from mlops_assets.dataset import CATEGORICAL, DATE, NUMERIC, DatasetSpec

HISTORY_THROUGH = "history_through"
STATS_SCHEMA = pl.Schema(
    {
        "day": pl.Date,
        "key_name": pl.String,
        "key_value": pl.String,
        "n": pl.Int64,
        "total": pl.Float64,
    }
)


class DataContractError(ValueError):
    """Input data breaks the dataset's contract; the message names the problem."""


def _kind(dtype: pl.DataType) -> str:
    if dtype.is_numeric():
        return NUMERIC
    if dtype == pl.Date or isinstance(dtype, pl.Datetime):
        return DATE
    return CATEGORICAL


def schema_problems(
    spec: DatasetSpec, frame: pl.DataFrame, columns: list[str] | None = None
) -> list[str]:
    """Every way ``frame`` fails the events contract of the spec (empty when it holds), on
    ``columns`` only when given."""
    problems = []
    for col, kind in spec.event_columns.items():
        if columns is not None and col not in columns:
            continue
        if col not in frame.columns:
            problems.append(f"column {col!r} is missing")
        elif frame[col].dtype != pl.Null and _kind(frame[col].dtype) != kind:
            problems.append(f"column {col!r} should be {kind} but is {frame[col].dtype}")
    return problems


def require_day_ended(spec: DatasetSpec, day: date, now: datetime) -> None:
    """Refuse to read the events of a day the pipeline's clock has not seen end: a source that
    already holds rows dated after the clock (a replay, a mistyped year) must not feed them."""
    if day >= now.date():
        raise DataContractError(
            f"{spec.event_noun}s of {day}: the day has not ended by the pipeline's clock "
            f"({now:%Y-%m-%d %H:%M}); rows dated after the clock are not read"
        )


# A target beyond this is no observation but a broken value (1e308 overflows every sum).
MAX_ABS_TARGET = 1e15


def _two_rows(spec: DatasetSpec, frame: pl.DataFrame, duplicated: pl.Expr) -> str:
    """Two rows sharing a key, as text, for an error message."""
    shown = [*spec.key_columns, spec.date_column]
    cols = list(dict.fromkeys(c for c in shown if c in frame.columns))
    rows = frame.filter(duplicated).sort(spec.event_key).head(2).select(cols).to_dicts()
    return " and ".join(str({k: str(v) for k, v in r.items()}) for r in rows)


def _unique_per_day(spec: DatasetSpec, frame: pl.DataFrame, what: str) -> None:
    if spec.event_key not in frame.columns:
        return
    duplicated = pl.col(spec.event_key).is_duplicated()
    dupes = frame.height - frame[spec.event_key].n_unique()
    if dupes:
        fix = (
            "fix the source or name the columns that identify a row, e.g. "
            f"event_key: [{spec.date_column}, ...]"
        )
        raise DataContractError(
            f"{what}: {dupes} duplicate {spec.key_description} values; each row's "
            f"{spec.key_description} must be unique; two of them: "
            f"{_two_rows(spec, frame, duplicated)}; {fix}"
        )


def validate_events(spec: DatasetSpec, frame: pl.DataFrame, day: date) -> pl.DataFrame:
    """Refuse a day of events that would poison everything downstream, naming the problem;
    return the columns the spec names."""
    what = f"{spec.event_noun}s of {day}"
    problems = schema_problems(spec, frame)
    if problems:
        raise DataContractError(f"{what} break the dataset spec: " + "; ".join(problems))
    if frame.is_empty():
        raise DataContractError(f"{what}: the source returned no rows (empty day)")
    dates = frame[spec.date_column].cast(pl.Date).unique().to_list()
    if dates != [day]:
        raise DataContractError(f"{what}: rows dated {sorted(map(str, dates))} outside the day")
    _unique_per_day(spec, frame, what)
    # What the spec names is stored; other source columns are not part of the table's contract.
    return frame.select(list(spec.event_columns)).with_columns(
        pl.col(spec.date_column).cast(pl.Date)
    )


def validate_outcomes(spec: DatasetSpec, frame: pl.DataFrame, day: date) -> pl.DataFrame:
    """Refuse a day of outcomes that is empty, holds a missing, NaN, negative, infinite or
    absurd target (beyond ``MAX_ABS_TARGET``), or repeats a key."""
    what = f"{spec.outcome_noun} of {day}"
    if frame.is_empty():
        raise DataContractError(f"{what}: the source returned no rows (empty day)")
    target = pl.col(spec.target)
    broken = (
        target.is_null()
        | target.is_nan()
        | (target < 0)
        | target.is_infinite()
        | (target > MAX_ABS_TARGET)
    )
    bad = frame.filter(broken)
    if bad.height:
        example = bad.head(1).row(0, named=True)
        raise DataContractError(
            f"{what}: {bad.height} of {frame.height} rows have a missing, NaN or negative "
            f"{spec.target!r}, or one that is infinite or above {MAX_ABS_TARGET:g} (e.g. "
            f"{spec.event_key} {example[spec.event_key]!r}: {example[spec.target]!r}); "
            "fix the source's values for the day"
        )
    _unique_per_day(spec, frame, what)
    return frame


def validate_day(
    spec: DatasetSpec, day: date, events: pl.DataFrame, outcomes: pl.DataFrame | None
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """The contract of one source day, the same for both source assets: its events and, when
    given, its outcomes. A day refused by one is refused by the other, so neither stores it."""
    events = validate_events(spec, events, day)
    if outcomes is not None:
        outcomes = validate_outcomes(spec, outcomes, day)
    return events, outcomes


def outcome_stats(spec: DatasetSpec, events: pl.DataFrame, outcomes: pl.DataFrame) -> pl.DataFrame:
    """Per day and history key value: events with a landed outcome and their total outcome.

    Refuses events with duplicate keys: each duplicate would count its outcome again."""
    key = pl.col(spec.event_key)
    dupes = events.filter(key.is_duplicated())
    if dupes.height:
        days = sorted(str(d) for d in dupes[spec.date_column].cast(pl.Date).unique())
        shown = ", ".join(days[:5]) + (f" and {len(days) - 5} more days" if len(days) > 5 else "")
        raise DataContractError(
            f"{spec.event_noun}s of {shown} hold {dupes[spec.event_key].n_unique()} "
            f"duplicate {spec.key_description} values; their {spec.outcome_noun} would count "
            f"more than once in the history statistics. {spec.key_description} must be unique "
            f"across days; two of them: {_two_rows(spec, events, key.is_duplicated())}; if it "
            f"is unique only within a day, add the date: event_key: "
            f"[{spec.date_column}, {', '.join(spec.key_columns)}]"
        )
    joined = events.select(spec.event_key, *spec.history_keys).join(
        outcomes.select(spec.event_key, spec.date_column, spec.target), on=spec.event_key
    )
    parts = [
        joined.group_by(
            pl.col(spec.date_column).cast(pl.Date).alias("day"),
            pl.col(key).cast(pl.String).alias("key_value"),
        ).agg(
            pl.lit(key).alias("key_name"),
            pl.len().cast(pl.Int64).alias("n"),
            pl.col(spec.target).sum().cast(pl.Float64).alias("total"),
        )
        for key in spec.history_keys
    ]
    if not parts:
        return pl.DataFrame(schema=STATS_SCHEMA)
    frame = pl.concat(parts).select(list(STATS_SCHEMA)).cast(STATS_SCHEMA)
    return frame.drop_nulls("key_value").sort("day", "key_name", "key_value")


def history_cutoff(spec: DatasetSpec, day: date) -> date:
    """The last day whose outcomes the features of ``day`` may use."""
    return day - timedelta(days=spec.label_lag_days + 1)


def build_features(
    spec: DatasetSpec, day: date, events: pl.DataFrame, stats: pl.DataFrame
) -> pl.DataFrame:
    """Model-ready rows of ``day``: raw attributes plus trailing outcome means per history key."""
    cutoff = history_cutoff(spec, day)
    first = cutoff - timedelta(days=spec.history_days - 1)
    if stats.is_empty():
        stats = pl.DataFrame(schema=STATS_SCHEMA)
    window = stats.filter(pl.col("day").is_between(first, cutoff))
    rows = events.filter(pl.col(spec.date_column) == day).select(
        pl.col(spec.date_column).cast(pl.Date),
        pl.col(spec.event_key).cast(pl.String),
        *[pl.col(c).cast(pl.String) for c in spec.categorical_features],
        *[pl.col(c).cast(pl.Float64) for c in spec.numeric_features],
    )
    for key in spec.history_keys:
        agg = (
            window.filter(pl.col("key_name") == key)
            .group_by("key_value")
            .agg(
                (pl.col("total").sum() / pl.col("n").sum()).alias(f"hist_{key}_mean"),
                pl.col("n").sum().cast(pl.Float64).alias(f"hist_{key}_n"),
            )
        )
        rows = rows.join(agg, left_on=key, right_on="key_value", how="left")
    through = window["day"].max() if window.height else None
    return rows.with_columns(
        pl.col(f"hist_{k}_n").fill_null(0.0) for k in spec.history_keys
    ).with_columns(pl.lit(through, dtype=pl.Date).alias(HISTORY_THROUGH))


def build_features_for_days(
    spec: DatasetSpec, days: list[date], events: pl.DataFrame, stats: pl.DataFrame
) -> pl.DataFrame:
    """``build_features`` for each day of a range, concatenated in day order."""
    return pl.concat([build_features(spec, day, events, stats) for day in days], how="vertical")


def label_examples(
    spec: DatasetSpec, features: pl.DataFrame, outcomes: pl.DataFrame
) -> pl.DataFrame:
    """Features of a day joined with the outcomes observed for it (inner join on the event key)."""
    return features.join(
        outcomes.select(spec.event_key, pl.col(spec.target).cast(pl.Float64)),
        on=spec.event_key,
        how="inner",
    )


def latest_per_serving_key(spec: DatasetSpec, features: pl.DataFrame) -> pl.DataFrame:
    """The latest feature vector per serving key (the online store's content)."""
    keys = list(spec.serving_keys)
    return (
        features.sort([spec.date_column, spec.event_key])
        .group_by(keys, maintain_order=True)
        .last()
        .select(*keys, spec.date_column, *[c for c in spec.model_feature_columns if c not in keys])
        .sort(keys)
    )
