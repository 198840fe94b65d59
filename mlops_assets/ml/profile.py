"""The ``data_profile`` stage as a pure function: what each day's events looked like, against
the days before it. The write-up's lifecycle starts with "assessing the data's suitability for
addressing business questions"; this makes that look daily.

For each day, :func:`profile_stage` describes every raw attribute of the spec (missing share;
range and quartiles of a numeric column; distinct and most frequent values of a categorical
one), compares the day with its reference (the ``reference_days`` days before it, all known by
the day's cut-off) and judges two rules:

- ``segments_present``: every segment (``spec.segment_column``) that had events on at least
  ``regular_share`` of the reference days has events on the day. A vanished segment loses its
  predictions and its business metrics without any error.
- ``no_new_categories``: no categorical value appears that the reference never had, in a
  column whose values were stable over the reference (it took no new value after the
  reference's first day). The models read a new value as unknown; a column that gains values
  routinely (a new creative every few days) is "open" and not judged. Nor is any column while
  the reference holds fewer than ``min_reference_days`` days (everything looks new then).

:func:`save_report` writes Evidently's data summary of a day (imports Evidently when called).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from mlops_assets.atomic import write_atomic
from mlops_assets.dataset import DatasetSpec
from mlops_assets.ml.drift import missing_shares
from mlops_assets.ml.rules import RuleResult

SEGMENTS_PRESENT, NO_NEW_CATEGORIES = "segments_present", "no_new_categories"
NUMERIC, CATEGORICAL = "numeric", "categorical"
TOP = 5
REPORT_REFERENCE_ROWS = 5_000
SEED = 5
SCHEMA = {
    "column": pl.String,
    "kind": pl.String,
    "rows": pl.Int64,
    "missing_share": pl.Float64,
    "min": pl.Float64,
    "p25": pl.Float64,
    "median": pl.Float64,
    "p75": pl.Float64,
    "max": pl.Float64,
    "mean": pl.Float64,
    "distinct": pl.Int64,
    "top_values": pl.String,
    "new_values": pl.String,
    "absent_values": pl.String,
    "stable": pl.Boolean,
}


class ProfileError(ValueError):
    """A day cannot be profiled: no events stored for it, or a column of the spec is missing."""


@dataclass(frozen=True)
class DayProfile:
    """One day: a row per column (:data:`SCHEMA`), the segment coverage, the new values of the
    judged columns and the rules' verdicts; ``current`` and ``reference`` are the rows the
    Evidently report is built from."""

    day: date
    frame: pl.DataFrame
    segment_column: str
    segments_today: dict[str, int]
    segments_reference: dict[str, int]
    reference_days: int
    new_values: dict[str, list[str]]
    rules: dict[str, RuleResult]
    current: pl.DataFrame = field(repr=False, compare=False)
    reference: pl.DataFrame = field(repr=False, compare=False)

    @property
    def vanished(self) -> list[str]:
        return sorted(set(self.segments_reference) - set(self.segments_today))

    def metrics(self) -> dict[str, float | int]:
        """The numbers worth plotting, as plain floats and ints (asset metadata)."""
        missing = self.frame["missing_share"]
        return {
            "rows": self.current.height,
            "columns_profiled": self.frame.height,
            "max_missing_share": round(float(missing.max() or 0.0), 4),  # type: ignore[arg-type]
            "segments_today": len(self.segments_today),
            "segments_in_reference": len(self.segments_reference),
            "segments_vanished": int(self.rules[SEGMENTS_PRESENT].observed),
            "new_categories": int(self.rules[NO_NEW_CATEGORIES].observed),
            "reference_days": self.reference_days,
        }

    def summary_markdown(self) -> str:
        """The verdicts, then a table of the columns."""
        lines = [
            f"**{self.current.height} rows** on {self.day}, {self.frame.height} columns, "
            f"against {self.reference_days} reference days.",
            "",
            *(f"- {name}: {rule.details['reason']}" for name, rule in self.rules.items()),
            "",
            "| column | kind | missing | min | median | max | mean | distinct | top values | "
            "new | absent |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|---|---|",
        ]
        for r in self.frame.iter_rows(named=True):
            lines.append(
                f"| {r['column']} | {r['kind']} | {r['missing_share']:.1%} | {_num(r['min'])} | "
                f"{_num(r['median'])} | {_num(r['max'])} | {_num(r['mean'])} | "
                f"{_num(r['distinct'])} | {r['top_values'] or ''} | {r['new_values'] or ''} | "
                f"{r['absent_values'] or ''} |"
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class ProfileStageResult:
    frame: pl.DataFrame
    days: list[DayProfile]

    def verdict(self, rule: str) -> tuple[bool, dict[str, Any]]:
        """A rule over every day: passed when it passed on each, with the evidence of the last
        failing day (or the last day) and the failing days."""
        failed = [d for d in self.days if not d.rules[rule].passed]
        shown = (failed or self.days)[-1]
        return not failed, {
            **shown.rules[rule].metadata(),
            "day": str(shown.day),
            "days_checked": len(self.days),
            "days_failed": ", ".join(str(d.day) for d in failed) or "none",
        }


def _num(value: float | None) -> str:
    return (
        "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.4g}"
    )


def _numeric_row(current: pl.DataFrame, column: str) -> dict[str, Any]:
    values = current[column].cast(pl.Float64)
    finite = values.filter(values.is_finite())
    stats: dict[str, Any] = dict.fromkeys(("min", "p25", "median", "p75", "max", "mean"))
    if finite.len():
        stats = {
            "min": finite.min(),
            "p25": finite.quantile(0.25, "nearest"),
            "median": finite.quantile(0.5, "nearest"),
            "p75": finite.quantile(0.75, "nearest"),
            "max": finite.max(),
            "mean": finite.mean(),
        }
    return {"column": column, "kind": NUMERIC, **stats}


def _first_seen_after_start(reference: pl.DataFrame, date_column: str, column: str) -> bool:
    """Whether ``column`` took a value after the reference's first day that it did not have
    on that day (the column is "open": new values are routine)."""
    first_day = reference[date_column].min()
    first_seen = reference.group_by(column).agg(pl.col(date_column).min().alias("first"))
    return first_seen.filter(pl.col("first") > first_day).height > 0


def _categorical_row(
    current: pl.DataFrame,
    reference: pl.DataFrame,
    date_column: str,
    column: str,
    regular_days: int,
    judged: bool,
) -> tuple[dict[str, Any], list[str]]:
    values = current[column].cast(pl.String).drop_nulls()
    known = reference.select(pl.col(column).cast(pl.String)).to_series().drop_nulls()
    today = set(values.unique().to_list())
    new = sorted(today - set(known.unique().to_list())) if reference.height else []
    stable = judged and not _first_seen_after_start(reference, date_column, column)
    days_seen = (
        reference.group_by(pl.col(column).cast(pl.String))
        .agg(pl.col(date_column).n_unique().alias("days"))
        .filter(pl.col("days") >= regular_days)
    )
    absent = sorted(set(days_seen[column].drop_nulls().to_list()) - today)
    counts = values.value_counts(sort=True, name="n").head(TOP)
    top = ", ".join(f"{v} ({n})" for v, n in counts.iter_rows())
    row = {
        "column": column,
        "kind": CATEGORICAL,
        "distinct": values.n_unique(),
        "top_values": top or None,
        "new_values": ", ".join(new) or None,
        "absent_values": ", ".join(absent) or None,
        "stable": stable,
    }
    return row, new if stable else []


def _profile_day(
    spec: DatasetSpec,
    day: date,
    current: pl.DataFrame,
    reference: pl.DataFrame,
    regular_share: float,
    min_reference_days: int,
) -> DayProfile:
    date_column, segment = spec.date_column, spec.segment_column
    ref_days = reference[date_column].n_unique() if reference.height else 0
    regular_days = max(1, math.ceil(regular_share * ref_days))
    judged = ref_days >= min_reference_days
    shares = missing_shares(current, list(spec.raw_feature_columns))
    rows, new_values = [], {}
    for column in spec.numeric_features:
        rows.append(_numeric_row(current, column))
    for column in spec.categorical_features:
        row, new = _categorical_row(current, reference, date_column, column, regular_days, judged)
        rows.append(row)
        if new:
            new_values[column] = new
    for row in rows:
        row.update(rows=current.height, missing_share=shares[row["column"]])
    today = _counts(current, segment)
    seen = (
        reference.group_by(pl.col(segment).cast(pl.String))
        .agg(pl.col(date_column).n_unique().alias("days"))
        .drop_nulls(segment)
    )
    in_reference = {str(s): int(n) for s, n in seen.iter_rows()}
    regular = {s: n for s, n in in_reference.items() if ref_days and n >= regular_days}
    rules = {
        SEGMENTS_PRESENT: segments_present_rule(spec, day, today, regular, ref_days),
        NO_NEW_CATEGORIES: no_new_categories_rule(day, new_values, ref_days, min_reference_days),
    }
    return DayProfile(
        day=day,
        frame=pl.DataFrame(rows, schema=SCHEMA),
        segment_column=segment,
        segments_today=today,
        segments_reference=in_reference,
        reference_days=ref_days,
        new_values=new_values,
        rules=rules,
        current=current,
        reference=reference,
    )


def _counts(frame: pl.DataFrame, column: str) -> dict[str, int]:
    counts = frame.group_by(pl.col(column).cast(pl.String)).len().drop_nulls(column)
    return {str(s): int(n) for s, n in counts.iter_rows()}


def profile_stage(
    spec: DatasetSpec,
    days: Sequence[date],
    events: pl.DataFrame,
    reference_days: int,
    regular_share: float = 0.5,
    min_reference_days: int = 7,
) -> ProfileStageResult:
    """The profile of each of ``days`` from ``events``, which hold those days and the
    ``reference_days`` days before the first (what was known at each day's cut-off; days before
    the dataset's start are simply absent). ProfileError naming the day when one of ``days``
    has no events or a raw attribute of the spec is missing."""
    absent = [c for c in (spec.date_column, *spec.raw_feature_columns) if c not in events.columns]
    if absent:
        raise ProfileError(
            f"the stored {spec.event_noun}s have no column {', '.join(map(repr, absent))}, "
            "which the dataset spec names"
        )
    when = pl.col(spec.date_column)
    out = []
    for day in days:
        current = events.filter(when == day)
        if current.is_empty():
            raise ProfileError(
                f"no {spec.event_noun}s stored for {day}: materialize raw_events of that day first"
            )
        since = day - timedelta(days=reference_days)
        reference = events.filter(when.is_between(since, day, closed="left"))
        out.append(_profile_day(spec, day, current, reference, regular_share, min_reference_days))
    frame = pl.concat(
        [d.frame.with_columns(pl.lit(d.day, dtype=pl.Date).alias("day")) for d in out]
    ).select("day", *SCHEMA)
    return ProfileStageResult(frame, out)


# The rules the profile's checks report ------------------------------------------------


def segments_present_rule(
    spec: DatasetSpec, day: date, today: dict[str, int], regular: dict[str, int], ref_days: int
) -> RuleResult:
    """Every regular segment of the reference (``regular``: segment -> days it had events) has
    events today. Observed: how many have none."""
    gone = sorted(set(regular) - set(today))
    column, events = spec.segment_column, spec.event_noun + "s"
    reason = "; ".join(
        f"{column} {s} had no {events} on {day} (it had some on {regular[s]} of the "
        f"{ref_days} days before)"
        for s in gone
    )
    return RuleResult(
        not gone,
        len(gone),
        0,
        {
            "vanished": ", ".join(gone) or "none",
            "segments_today": len(today),
            "regular_segments": len(regular),
            "reference_days": ref_days,
            "reason": reason or f"every regular {column} has {events} on {day}",
        },
    )


def no_new_categories_rule(
    day: date, new_values: dict[str, list[str]], ref_days: int, min_reference_days: int
) -> RuleResult:
    """No value of a stable categorical column appears today that the reference never had.
    Observed: how many such values."""
    count = sum(len(v) for v in new_values.values())
    listed = "; ".join(f"{c}: {', '.join(v)}" for c, v in new_values.items())
    if count:
        reason = f"values never seen in the {ref_days} days before {day}: {listed}"
    elif ref_days < min_reference_days:
        reason = f"not judged: {ref_days} reference days, fewer than {min_reference_days}"
    else:
        reason = f"every value on {day} was seen in the {ref_days} days before"
    return RuleResult(
        count == 0,
        count,
        0,
        {
            "new_values": listed or "none",
            "columns": ", ".join(new_values) or "none",
            "reference_days": ref_days,
            "reason": reason,
        },
    )


def save_report(spec: DatasetSpec, profile: DayProfile, html_path: str | Path) -> Path:
    """Evidently's data summary of the day against its reference (sampled), written atomically
    as HTML (megabytes: link it, never inline it). Columns with no value on a side are left out
    (Evidently fails on an all-empty column); the profile's own table still lists them."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataSummaryPreset

    from mlops_assets.ml.training import sample_rows

    reference = sample_rows(profile.reference, REPORT_REFERENCE_ROWS, SEED)
    sides = [profile.current, *([reference] if reference.height else [])]
    shares = [missing_shares(f, list(spec.raw_feature_columns)) for f in sides]
    usable = [c for c in spec.raw_feature_columns if all(s[c] < 1.0 for s in shares)]
    numeric = [c for c in spec.numeric_features if c in usable]
    categorical = [c for c in spec.categorical_features if c in usable]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)

    def dataset(frame: pl.DataFrame) -> Any:
        typed = frame.select(
            *[pl.col(c).cast(pl.Float64) for c in numeric],
            *[pl.col(c).cast(pl.String) for c in categorical],
        )
        return Dataset.from_pandas(typed.to_pandas(), data_definition=definition)

    snapshot = Report([DataSummaryPreset()]).run(
        dataset(profile.current),
        dataset(reference) if reference.height else None,
        timestamp=datetime.combine(profile.day, datetime.min.time()),
        name=f"profile {profile.day}",
    )
    return write_atomic(html_path, lambda tmp: snapshot.save_html(str(tmp)))
