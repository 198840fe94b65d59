"""What one day's data looked like, against the days before it: the exploratory look the
write-up's lifecycle starts with ("is the data suitable for the business question?"), made daily.

:func:`profile_day` describes each column of a day's events (missing share, range and mean of a
numeric column, distinct values and the most frequent ones of a categorical column), names the
categories never seen in the reference (the days before, as a model trained today would see them)
and the segments of the reference that have no event today. Two rules read it:

- :func:`segments_present_rule`: every segment seen on at least ``min_share`` of the reference
  days has events today (a network that vanished loses its predictions and its metrics);
- :func:`no_unseen_categories_rule`: no categorical value appears that the reference never had,
  in a column whose values were stable over the reference (the models map a new value to
  "unknown"; a column that gains values routinely, such as new creatives, is not flagged).

Pure: polars in, a :class:`Profile` out. The Evidently report of the same day is built by
:func:`save_report`, which imports Evidently only when called.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Imported where used: the definitions read PROFILE_COLUMNS without importing polars.
    import polars as pl

    from mlops_assets.ml.rules import RuleResult

# The stored table's columns, described for the catalog (the day is the partition column).
PROFILE_COLUMNS = {
    "day": ("date", "the day profiled"),
    "column": ("string", "a column of the day's events"),
    "kind": ("string", "numeric or categorical"),
    "rows": ("bigint", "events on the day"),
    "missing_share": ("double", "share of empty values"),
    "min": ("double", "smallest finite value (numeric)"),
    "max": ("double", "largest finite value (numeric)"),
    "mean": ("double", "mean of the finite values (numeric)"),
    "distinct": ("bigint", "distinct values (categorical)"),
    "top_values": ("string", "most frequent values with their counts (categorical)"),
    "unseen_values": ("string", "values never seen on the reference days (categorical)"),
    "stable": ("bool", "the column took no new value over the reference days: new ones warn"),
}
TOP = 5


def profile_schema() -> dict[str, Any]:
    """The polars schema of a day's profile rows (the stored table without its day)."""
    import polars as pl

    types = {"string": pl.String, "bigint": pl.Int64, "double": pl.Float64, "bool": pl.Boolean}
    return {n: types[t] for n, (t, _) in PROFILE_COLUMNS.items() if n != "day"}


class ProfileError(ValueError):
    """The day cannot be profiled (a column the spec names is missing)."""


@dataclass(frozen=True)
class Profile:
    """One day's profile: a row per column (:data:`PROFILE_SCHEMA`) plus what the rules read."""

    rows: int
    frame: pl.DataFrame
    segment_column: str
    segments_today: dict[str, int]
    # segment -> on how many of the reference days it had events
    segments_reference: dict[str, int]
    reference_days: int
    unseen: dict[str, list[str]] = field(default_factory=dict)

    @property
    def vanished(self) -> list[str]:
        return sorted(s for s in self.segments_reference if s not in self.segments_today)

    def metrics(self) -> dict[str, float | int]:
        missing = self.frame["missing_share"]
        return {
            "rows": self.rows,
            "columns": self.frame.height,
            "max_missing_share": float(missing.max() or 0.0) if self.frame.height else 0.0,
            "segments_today": len(self.segments_today),
            "segments_vanished": len(self.vanished),
            "unseen_categories": sum(len(v) for v in self.unseen.values()),
            "reference_days": self.reference_days,
        }

    def summary_markdown(self) -> str:
        lines = [
            f"**{self.rows} rows**; {self.frame.height} columns profiled against "
            f"{self.reference_days} reference days.",
            "",
            "| column | kind | missing | min | max | mean | distinct | top values | unseen |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.frame.iter_rows(named=True):
            lines.append(
                f"| {r['column']} | {r['kind']} | {r['missing_share']:.1%} | {_num(r['min'])} | "
                f"{_num(r['max'])} | {_num(r['mean'])} | {_num(r['distinct'])} | "
                f"{r['top_values'] or ''} | {r['unseen_values'] or ''} |"
            )
        if self.vanished:
            lines += ["", f"Segments with no events today: {', '.join(self.vanished)}."]
        return "\n".join(lines)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:,.4g}"


def _missing_share(frame: pl.DataFrame, column: str) -> float:
    if not frame.height:
        return 0.0
    values = frame[column]
    missing = values.is_null().sum()
    if values.dtype.is_float():
        missing += values.is_nan().sum()
    return float(missing) / frame.height


def profile_day(
    current: pl.DataFrame,
    reference: pl.DataFrame,
    *,
    date_column: str,
    numeric: Sequence[str],
    categorical: Sequence[str],
    segment_column: str,
) -> Profile:
    """Profile ``current`` (one day's events) against ``reference`` (the days before it)."""
    import polars as pl

    needed = [date_column, segment_column, *numeric, *categorical]
    missing = [c for c in dict.fromkeys(needed) if c not in current.columns]
    if missing:
        raise ProfileError(
            f"the day's events have no column {', '.join(map(repr, missing))}, which the dataset "
            "spec names: fix the source or the spec's feature lists"
        )
    rows: list[dict[str, Any]] = []
    for column in numeric:
        values = current[column].cast(pl.Float64, strict=False)
        finite = values.filter(values.is_finite()) if values.len() else values
        rows.append(
            {
                "column": column,
                "kind": "numeric",
                "rows": current.height,
                "missing_share": _missing_share(current, column),
                "min": finite.min() if finite.len() else None,
                "max": finite.max() if finite.len() else None,
                "mean": finite.mean() if finite.len() else None,
                "distinct": None,
                "top_values": None,
                "unseen_values": None,
                "stable": None,
            }
        )
    unseen: dict[str, list[str]] = {}
    for column in categorical:
        values = current[column].cast(pl.String).drop_nulls()
        known = (
            set(reference[column].cast(pl.String).drop_nulls().unique().to_list())
            if column in reference.columns
            else set()
        )
        new = sorted(set(values.unique().to_list()) - known) if reference.height else []
        stable = bool(reference.height) and _stable(reference, date_column, column)
        if new and stable:
            unseen[column] = new
        counts = values.value_counts(sort=True, name="n").head(TOP)
        top = ", ".join(f"{v} ({n})" for v, n in counts.iter_rows())
        rows.append(
            {
                "column": column,
                "kind": "categorical",
                "rows": current.height,
                "missing_share": _missing_share(current, column),
                "min": None,
                "max": None,
                "mean": None,
                "distinct": values.n_unique(),
                "top_values": top,
                "unseen_values": ", ".join(new) or None,
                "stable": stable,
            }
        )
    today = _segment_counts(current, segment_column)
    ref_days = (
        reference.group_by(segment_column).agg(pl.col(date_column).n_unique().alias("days"))
        if reference.height
        else pl.DataFrame({segment_column: [], "days": []})
    )
    return Profile(
        rows=current.height,
        frame=pl.DataFrame(rows, schema=profile_schema()),
        segment_column=segment_column,
        segments_today=today,
        segments_reference={str(s): int(d) for s, d in ref_days.iter_rows() if s is not None},
        reference_days=reference[date_column].n_unique() if reference.height else 0,
        unseen=unseen,
    )


def _stable(reference: pl.DataFrame, date_column: str, column: str) -> bool:
    """Whether ``column`` took no new value during the reference days (every value it had was
    there on its first day). A column that gains values routinely (a new creative every week)
    is "open": a value new today is expected there, not a warning."""
    import polars as pl

    first_day = reference[date_column].min()
    first_seen = reference.group_by(column).agg(pl.col(date_column).min().alias("first"))
    return first_seen.filter(pl.col("first") > first_day).height == 0


def _segment_counts(frame: pl.DataFrame, column: str) -> dict[str, int]:
    if not frame.height:
        return {}
    counts = frame.group_by(column).len().drop_nulls(column)
    return {str(s): int(n) for s, n in counts.iter_rows()}


def segments_present_rule(profile: Profile, min_share: float) -> RuleResult:
    """Every segment that had events on at least ``min_share`` of the reference days has events
    today. Observed: the number of such segments with none today."""
    from mlops_assets.ml.rules import RuleResult

    days = profile.reference_days
    regular = {
        s: n for s, n in profile.segments_reference.items() if days and n / days >= min_share
    }
    gone = sorted(s for s in regular if s not in profile.segments_today)
    reason = (
        "; ".join(
            f"{profile.segment_column} {s} had no events today (present on {regular[s]} of the "
            f"last {days} days)"
            for s in gone
        )
        or "every regular segment has events today"
    )
    return RuleResult(
        passed=not gone,
        observed=len(gone),
        threshold=0,
        details={
            "vanished": ", ".join(gone) or "none",
            "regular_segments": len(regular),
            "reference_days": days,
            "reason": reason,
        },
    )


def no_unseen_categories_rule(profile: Profile) -> RuleResult:
    """No categorical value appears today that the reference days never had."""
    from mlops_assets.ml.rules import RuleResult

    count = sum(len(v) for v in profile.unseen.values())
    listed = "; ".join(f"{c}: {', '.join(v)}" for c, v in profile.unseen.items())
    return RuleResult(
        passed=count == 0,
        observed=count,
        threshold=0,
        details={
            "unseen": listed or "none",
            "reference_days": profile.reference_days,
            "reason": f"values never seen in the last {profile.reference_days} days: {listed}"
            if count
            else "every value was seen before",
        },
    )


def save_report(
    current: pl.DataFrame,
    reference: pl.DataFrame | None,
    numeric: Sequence[str],
    categorical: Sequence[str],
    html_path: str | Path,
) -> Path:
    """Evidently's data summary of the day (against the reference when there is one), written
    atomically as HTML (megabytes: link it, never inline it)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataSummaryPreset

    columns = [*numeric, *categorical]
    definition = DataDefinition(
        numerical_columns=list(numeric), categorical_columns=list(categorical)
    )

    def dataset(frame: pl.DataFrame) -> Any:
        pandas = frame.select(columns).to_pandas()
        for column in categorical:
            pandas[column] = pandas[column].astype("object")
        return Dataset.from_pandas(pandas, data_definition=definition)

    report = Report([DataSummaryPreset()])
    use_reference = reference is not None and reference.height > 0
    snapshot = report.run(dataset(current), dataset(reference) if use_reference else None)
    path = Path(html_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".html")
    os.close(fd)
    try:
        snapshot.save_html(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
