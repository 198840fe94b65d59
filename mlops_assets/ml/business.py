"""Business metrics as pure functions: what the predictions meant in money and outcomes once the
actuals have landed, what the online endpoint served, and whether a number is out of its usual band.

Definitions (per group of predicted events whose actual outcome is known):

- ``cost``: sum of the spec's cost column (e.g. spend) over the events that have one; NaN when
  no event of the group has a cost (or the spec names no cost column). ``cost_missing`` counts
  the events without one.
- ``actual`` / ``predicted``: sums of the target and of the prediction.
- ``cost_per_outcome_actual`` = cost / actual and ``cost_per_outcome_predicted`` = cost /
  predicted (e.g. cost per visit); NaN when the divisor is 0.
- ``wape`` = sum |predicted - actual| / sum actual; ``bias`` = (predicted - actual) / actual,
  positive when the model over-forecasts. Both NaN when actual is 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from mlops_assets.dataset import DatasetSpec
from mlops_assets.ml.rules import RuleResult

PREDICTION = "prediction"
COUNT_COLUMNS = ("events", "cost_missing")
METRIC_COLUMNS = (
    "cost",
    "actual",
    "predicted",
    "abs_error",
    "cost_per_outcome_actual",
    "cost_per_outcome_predicted",
    "wape",
    "bias",
)
# Median absolute deviation x this estimates the standard deviation of normal data.
MAD_TO_STD = 1.4826


@dataclass(frozen=True)
class BusinessResult:
    """Business metrics of one or more days.

    ``table`` has one row per day and segment (the warehouse table), ``segments`` one row per
    segment over all the days, ``total`` one row over everything.
    """

    table: pl.DataFrame
    segments: pl.DataFrame
    total: pl.DataFrame
    segment_column: str
    outcome_noun: str
    cost_column: str | None
    unmatched_predictions: int

    def totals(self) -> dict[str, float]:
        """The totals as plain floats (counts included), for metadata and band checks."""
        row = self.total.row(0, named=True)
        out = {c: float(row[c]) for c in (*COUNT_COLUMNS, *METRIC_COLUMNS)}
        out["unmatched_predictions"] = float(self.unmatched_predictions)
        return out

    def segments_markdown(self) -> str:
        """Per segment (largest cost first, else largest actual), then the total."""
        order = "cost" if self.cost_column else "actual"
        rows = self.segments.sort(
            pl.col(order).fill_nan(None), "actual", descending=True, nulls_last=True
        )
        cost = self.cost_column or "cost"
        lines = [
            f"Outcome: {self.outcome_noun}; cost: {self.cost_column or 'none in this dataset'}.",
            "",
            f"| {self.segment_column} | events | {cost} | actual | predicted | "
            f"{cost} per outcome (actual) | {cost} per outcome (predicted) | WAPE | bias |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in [*rows.iter_rows(named=True), {**self.total.row(0, named=True)}]:
            name = row.get(self.segment_column, "**total**")
            lines.append(
                f"| {name} | {row['events']:,} | {_num(row['cost'])} | {_num(row['actual'])} | "
                f"{_num(row['predicted'])} | {_num(row['cost_per_outcome_actual'], 2)} | "
                f"{_num(row['cost_per_outcome_predicted'], 2)} | {_pct(row['wape'])} | "
                f"{_pct(row['bias'], signed=True)} |"
            )
        return "\n".join(lines)


def _num(value: float | None, decimals: int = 0) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:,.{decimals}f}"


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:+.1%}" if signed else f"{value:.1%}"


def _ratio(num: str, den: str) -> pl.Expr:
    return pl.when(pl.col(den) != 0).then(pl.col(num) / pl.col(den)).otherwise(float("nan"))


def _aggregate(joined: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    sums = [
        pl.len().cast(pl.Int64).alias("events"),
        pl.col("cost").is_null().sum().cast(pl.Int64).alias("cost_missing"),
        pl.when(pl.col("cost").is_not_null().any())
        .then(pl.col("cost").sum())
        .otherwise(float("nan"))
        .alias("cost"),
        pl.col("actual").sum().alias("actual"),
        pl.col("predicted").sum().alias("predicted"),
        (pl.col("predicted") - pl.col("actual")).abs().sum().alias("abs_error"),
    ]
    frame = joined.group_by(by).agg(sums).sort(by) if by else joined.select(sums)
    return frame.with_columns(
        _ratio("cost", "actual").alias("cost_per_outcome_actual"),
        _ratio("cost", "predicted").alias("cost_per_outcome_predicted"),
        _ratio("abs_error", "actual").alias("wape"),
        ((pl.col("predicted") - pl.col("actual")) / pl.col("actual")).alias("bias"),
    ).select(
        *by,
        *COUNT_COLUMNS,
        *[pl.col(c).cast(pl.Float64) for c in METRIC_COLUMNS if c != "bias"],
        pl.when(pl.col("actual") != 0).then(pl.col("bias")).otherwise(float("nan")).alias("bias"),
    )


def _unique_keys(frame: pl.DataFrame, key: str, what: str) -> None:
    if key not in frame.columns:
        raise ValueError(f"{what} have no {key!r} column (the event key)")
    dupes = frame.height - frame[key].n_unique()
    if dupes:
        raise ValueError(f"{what}: {dupes} duplicate {key!r} values; metrics would double count")


def business_metrics(
    predictions: pl.DataFrame,
    outcomes: pl.DataFrame,
    events: pl.DataFrame | None,
    spec: DatasetSpec,
) -> BusinessResult:
    """Cost, actual and predicted outcomes, cost per outcome, WAPE and bias, per day and segment
    and in total, over the predicted events whose outcome is known.

    Predictions are joined with ``outcomes`` (the target) and ``events`` (the cost column) on the
    event key; ``events`` may be None, and is not read when the spec has no cost column. Each
    input must hold an event key once. Predictions without an outcome are left out and counted.
    """
    key, day, segment = spec.event_key, spec.date_column, spec.segment_column
    _unique_keys(predictions, key, "predictions")
    _unique_keys(outcomes, key, "outcomes")
    base = predictions.select(
        pl.col(day).cast(pl.Date),
        key,
        pl.col(segment).cast(pl.String),
        pl.col(PREDICTION).cast(pl.Float64).alias("predicted"),
    )
    joined = base.join(
        outcomes.select(key, pl.col(spec.target).cast(pl.Float64).alias("actual")),
        on=key,
        how="inner",
    )
    cost_column: str | None = None
    if spec.cost_column and events is not None:
        cost_column = spec.cost_column
        _unique_keys(events, key, "events")
        if cost_column not in events.columns:
            raise ValueError(f"events have no {cost_column!r} column (the spec's cost_column)")
        cost = pl.col(cost_column).cast(pl.Float64).fill_nan(None).alias("cost")
        costs = events.select(key, cost)
        joined = joined.join(costs, on=key, how="left")
    else:
        joined = joined.with_columns(pl.lit(None, dtype=pl.Float64).alias("cost"))
    return BusinessResult(
        table=_aggregate(joined, [day, segment]),
        segments=_aggregate(joined, [segment]),
        total=_aggregate(joined, []),
        segment_column=segment,
        outcome_noun=spec.outcome_noun,
        cost_column=cost_column,
        unmatched_predictions=base.height - joined.height,
    )


def serving_summary(log: pl.DataFrame) -> dict[str, Any]:
    """Requests, error rates and latency percentiles of a request log (``status`` HTTP code,
    ``latency_ms``). ``error_rate`` is the share of 5xx answers, ``client_error_rate`` of 4xx.
    With no requests the rates are 0.0 and the latencies NaN."""
    n = log.height
    if n == 0:
        return {
            "requests": 0,
            "server_errors": 0,
            "client_errors": 0,
            "error_rate": 0.0,
            "client_error_rate": 0.0,
            "p50_latency_ms": math.nan,
            "p99_latency_ms": math.nan,
        }
    status = log["status"]
    server = int((status >= 500).sum())
    client = int(((status >= 400) & (status < 500)).sum())
    latency = log["latency_ms"].cast(pl.Float64).drop_nulls()
    latency = latency.filter(latency.is_finite())

    def pct(q: float) -> float:
        value = latency.quantile(q, interpolation="linear") if len(latency) else None
        return math.nan if value is None else value

    return {
        "requests": n,
        "server_errors": server,
        "client_errors": client,
        "error_rate": server / n,
        "client_error_rate": client / n,
        "p50_latency_ms": pct(0.5),
        "p99_latency_ms": pct(0.99),
    }


def within_band(
    value: float, history: list[float], k: float = 3.0, min_history: int = 7
) -> RuleResult:
    """``value`` lies within median +- k x scaled MAD (a robust standard deviation) of the
    finite values of ``history``. With fewer than ``min_history`` of them it passes with a note,
    since there is no usual band yet. A NaN ``value`` fails."""
    past = np.asarray([h for h in history if h is not None and math.isfinite(h)], dtype=float)
    if len(past) < min_history:
        return RuleResult(
            True,
            value,
            "n/a",
            {
                "note": f"only {len(past)} of {min_history} days of history: no band yet",
                "history": len(past),
            },
        )
    median = float(np.median(past))
    spread = MAD_TO_STD * float(np.median(np.abs(past - median)))
    lower, upper = median - k * spread, median + k * spread
    inside = value is not None and math.isfinite(value) and lower <= value <= upper
    return RuleResult(
        inside,
        value,
        f"{lower:.6g}..{upper:.6g}",
        {
            "median": median,
            "robust_std": spread,
            "k": k,
            "lower": lower,
            "upper": upper,
            "history": len(past),
        },
    )


def actuals_landed(day: date, label_lag_days: int, as_of: date | datetime) -> bool:
    """The actual outcomes of ``day`` have landed once the day they land on has begun."""
    today = as_of.date() if isinstance(as_of, datetime) else as_of
    return today >= day + timedelta(days=label_lag_days)


@dataclass(frozen=True)
class DayMetrics:
    """One day's business metrics and its verdict against the usual band of the days before."""

    day: date
    result: BusinessResult
    bands: dict[str, RuleResult]


def metrics_by_day(
    predictions: pl.DataFrame,
    outcomes: pl.DataFrame,
    events: pl.DataFrame | None,
    spec: DatasetSpec,
    days: list[date],
    band_days: int,
    band_columns: tuple[str, ...],
) -> list[DayMetrics]:
    """The business metrics of each of ``days``, each judged against the band of the
    ``band_days`` days before it. The band's days are recomputed from the same inputs (the
    predictions and outcomes of those days), never read from earlier results, so a day gets the
    same verdict whether it runs alone, in a range, or in any order."""
    day_col = spec.date_column
    predicted = set(predictions[day_col].unique().to_list()) if predictions.height else set()
    landed = set(outcomes[day_col].unique().to_list()) if outcomes.height else set()
    totals: dict[date, dict[str, float]] = {}
    results: dict[date, BusinessResult] = {}
    first = min(days) - timedelta(days=band_days)
    for day in sorted(d for d in predicted & landed if first <= d <= max(days)):
        result = business_metrics(
            predictions.filter(pl.col(day_col) == day), outcomes, events, spec
        )
        results[day], totals[day] = result, result.totals()
    out = []
    for day in days:
        if day not in results:
            raise ValueError(f"no predictions with landed outcomes on {day}")
        past = [totals[d] for d in sorted(totals) if day - timedelta(days=band_days) <= d < day]
        bands = {
            column: within_band(results[day].totals()[column], [p[column] for p in past])
            for column in band_columns
        }
        out.append(DayMetrics(day, results[day], bands))
    return out


# The segment value of a day's total row in the business_metrics table.
TOTAL = "ALL"


class ActualsNotLandedError(RuntimeError):
    """A day's actual outcomes have not landed: its business metrics wait for them."""


@dataclass(frozen=True)
class BusinessMetricsResult:
    """What the ``business_metrics`` asset stores and reports: the per-segment and total rows
    of every day, each day's metadata numbers (with its segment table as markdown) and, per
    banded column, the band rule's verdict over the days (None: the dataset has no cost)."""

    frame: pl.DataFrame
    per_day: dict[date, dict[str, Any]]
    bands: dict[str, tuple[bool, dict[str, Any]] | None]


def business_metrics_stage(
    spec: DatasetSpec,
    days: list[date],
    predictions: pl.DataFrame,
    outcomes: pl.DataFrame,
    events: pl.DataFrame,
    serving_log: pl.DataFrame,
    past: Callable[[str], pl.DataFrame],
    band_days: int,
) -> BusinessMetricsResult:
    """The business metrics of ``days`` from their predictions, outcomes and events, each day
    judged against the band of the ``band_days`` days before it. ``past(table)`` gives the rows
    of ``predictions``, ``raw_outcomes`` or ``raw_events`` from the band's first day up to the
    first of ``days``. ActualsNotLandedError naming the days whose outcomes have not landed."""
    landed = set(outcomes[spec.date_column].unique().to_list()) if outcomes.height else set()
    missing = [d for d in days if d not in landed]
    if missing:
        raise ActualsNotLandedError(
            f"the {spec.outcome_noun} of {', '.join(map(str, missing))} have not landed yet "
            f"(they land {spec.label_lag_days} days after the day): business metrics wait for "
            "actuals"
        )
    columns = ("wape", "cost_per_outcome_actual") if spec.cost_column else ("wape",)

    def with_past(table: str, frame: pl.DataFrame) -> pl.DataFrame:
        earlier = past(table)
        return pl.concat([earlier, frame], how="diagonal_relaxed") if earlier.width else frame

    per_day = metrics_by_day(
        with_past("predictions", predictions),
        with_past("raw_outcomes", outcomes),
        with_past("raw_events", events),
        spec,
        days,
        band_days,
        columns,
    )
    tables, numbers = [], {}
    for m in per_day:
        total = m.result.total.with_columns(
            pl.lit(m.day, dtype=pl.Date).alias(spec.date_column),
            pl.lit(TOTAL).alias(spec.segment_column),
        )
        tables += [m.result.table, total]
        log = serving_log.filter(pl.col("day") == m.day) if serving_log.height else serving_log
        numbers[m.day] = {
            "day": str(m.day),
            **{k: float(v) for k, v in m.result.totals().items()},
            **{f"serving_{k}": float(v) for k, v in serving_summary(log).items()},
            "segments": m.result.segments_markdown(),
        }
    bands: dict[str, tuple[bool, dict[str, Any]] | None] = {}
    for column in ("wape", "cost_per_outcome_actual"):
        if column not in columns:
            bands[column] = None
            continue
        failed = [m for m in per_day if not m.bands[column].passed]
        shown = (failed or per_day)[-1]
        bands[column] = (
            not failed,
            {
                **shown.bands[column].metadata(),
                "day": str(shown.day),
                "days_checked": len(per_day),
                "days_outside_band": ", ".join(str(m.day) for m in failed) or "none",
            },
        )
    return BusinessMetricsResult(pl.concat(tables, how="diagonal_relaxed"), numbers, bands)
