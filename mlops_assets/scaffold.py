"""`mlops-assets spec init`: a draft dataset spec from a CSV or Parquet file.

It reads the whole file and proposes what a spec needs: the date column, a key that is unique
on every row (one column, or the date with other columns), numeric and categorical features,
serving and history keys, a segment, and windows that fit the days the file holds. What looks
wrong is left out of the features with a comment saying why: a suspected target leak (a column
almost equal to the target, or two that sum to it), a near-constant column, and a column
constant within each day (it drifts whenever the day changes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

# A categorical column has at most this many levels (integer columns: CATEGORICAL_INT_LEVELS).
MAX_CATEGORICAL_LEVELS = 100
CATEGORICAL_INT_LEVELS = 12
NEAR_CONSTANT_SHARE = 0.99
LEAK_CORRELATION = 0.98
LEAK_SUM_SHARE = 0.99


class ScaffoldError(ValueError):
    """The file cannot be made into a draft spec; the message says why and what to do."""


@dataclass
class Draft:
    """What ``spec init`` proposes, and why it left columns out."""

    name: str
    source_kind: str
    source_path: str
    date_column: str
    first_day: str
    days: int
    event_key: list[str]
    target: str | None
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    other_keys: list[list[str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def window(self) -> dict[str, int | str]:
        """Training windows that fit the file: the defaults from 70 days on, else scaled down
        (daily training dates) so that two training dates fit."""
        if self.days >= 70:
            return {"cadence": "weekly", "train_days": 28, "holdout_days": 7, "history_days": 28}
        return {
            "cadence": "daily",
            "train_days": max(5, self.days * 2 // 5),
            "holdout_days": max(2, self.days // 8),
            "history_days": max(3, self.days // 6),
        }


def _read(path: Path) -> tuple[str, pl.DataFrame]:
    import polars as pl

    suffix = path.suffix.lower()
    if not path.exists():
        raise ScaffoldError(f"--source {path} does not exist")
    try:
        if suffix == ".csv":
            return "csv", pl.read_csv(path, try_parse_dates=True, infer_schema_length=None)
        if suffix in (".parquet", ".pq"):
            return "parquet", pl.read_parquet(path)
    except pl.exceptions.PolarsError as exc:
        reason = str(exc).strip().splitlines()[0]
        raise ScaffoldError(f"--source {path} cannot be read: {reason}") from exc
    raise ScaffoldError(f"--source {path}: give a .csv or .parquet file (got {suffix or 'none'})")


def _date_column(frame: pl.DataFrame) -> str:
    import polars as pl

    dated = [c for c, t in frame.schema.items() if t == pl.Date or isinstance(t, pl.Datetime)]
    if not dated:
        raise ScaffoldError(
            "no column holds dates (ISO dates such as 2025-01-31, or timestamps); add one: "
            "the pipeline is partitioned by day"
        )
    named = [c for c in dated if any(w in c.lower() for w in ("date", "day"))]
    return (named or dated)[0]


def _unique(frame: pl.DataFrame, cols: list[str]) -> bool:
    return frame.select(cols).is_duplicated().sum() == 0 and not any(
        frame[c].null_count() for c in cols
    )


def _keys(frame: pl.DataFrame, date_col: str, skip: set[str]) -> list[list[str]]:
    """Candidate keys unique on every row: single columns (not floats), else the date with one
    or two other columns."""
    import polars as pl

    usable = [
        c for c, t in frame.schema.items() if c not in skip and not t.is_float() and t != pl.Boolean
    ]
    singles = [[c] for c in usable if c != date_col and _unique(frame, [c])]
    if singles:
        return singles
    others = [c for c in usable if c != date_col]
    pairs = [[date_col, c] for c in others if _unique(frame, [date_col, c])]
    if pairs:
        return pairs
    return [
        [date_col, a, b] for a, b in combinations(others, 2) if _unique(frame, [date_col, a, b])
    ]


def _leaks(frame: pl.DataFrame, target: str, numeric: list[str]) -> dict[str, str]:
    """Columns suspected of holding the target: almost perfectly correlated with it, or one of
    two columns that sum to it."""
    import polars as pl

    found: dict[str, str] = {}
    y = frame[target].cast(pl.Float64)
    for c in numeric:
        x = frame[c].cast(pl.Float64)
        corr = frame.select(pl.corr(x, y)).item()
        if corr is not None and abs(corr) >= LEAK_CORRELATION:
            found[c] = f"correlation {corr:.3f} with {target!r}"
    for a, b in combinations(numeric, 2):
        close = ((frame[a].cast(pl.Float64) + frame[b].cast(pl.Float64) - y).abs() < 1e-9).mean()
        # The mean of a boolean column is a float (None when the frame is empty).
        if isinstance(close, float) and close >= LEAK_SUM_SHARE:
            for c in (a, b):
                found.setdefault(c, f"{a} + {b} equals {target!r} on {close:.0%} of rows")
    return found


def draft(path: Path, target: str | None = None, name: str | None = None) -> Draft:
    """Propose a spec for the file at ``path`` (target: the column to predict, if known)."""
    import polars as pl

    kind, frame = _read(path)
    if frame.is_empty():
        raise ScaffoldError(f"--source {path} holds no rows")
    if target is not None and target not in frame.columns:
        raise ScaffoldError(
            f"--target {target!r} is not a column of {path} (it has: {', '.join(frame.columns)})"
        )
    if target is not None and not frame[target].dtype.is_numeric():
        raise ScaffoldError(f"--target {target!r} must be numeric; it is {frame[target].dtype}")
    date_col = _date_column(frame)
    day = pl.col(date_col).cast(pl.Date)
    days = frame.select(day.n_unique()).item()
    skip = {target} if target else set()
    keys = _keys(frame, date_col, skip)
    if not keys:
        raise ScaffoldError(
            f"no column or combination of {date_col!r} with up to two others is unique on "
            "every row: add a key column to the file"
        )
    key = keys[0]
    d = Draft(
        name=(name or path.stem).replace("-", "_").replace(" ", "_").lower(),
        source_kind=kind,
        source_path=str(path),
        date_column=date_col,
        first_day=str(frame.select(day.min()).item()),
        days=days,
        event_key=key,
        target=target,
        other_keys=keys[1:4],
    )
    rows = frame.height
    numeric_candidates: list[str] = []
    for col, dtype in frame.schema.items():
        if col in (date_col, target) or (len(key) == 1 and col == key[0]):
            continue
        values = frame[col]
        if dtype == pl.Date or isinstance(dtype, pl.Datetime):
            d.warnings.append(f"{col}: a second date column, left out (derive features from it)")
            continue
        top_share = values.value_counts(sort=True)["count"][0] / rows
        if top_share >= NEAR_CONSTANT_SHARE:
            d.warnings.append(
                f"{col}: near-constant ({top_share:.1%} of rows hold one value), left out"
            )
            continue
        levels = values.n_unique()
        is_int = dtype.is_integer()
        if dtype.is_numeric() and not (
            is_int and levels <= CATEGORICAL_INT_LEVELS and col not in key
        ):
            numeric_candidates.append(col)
        elif levels <= MAX_CATEGORICAL_LEVELS:
            d.categorical.append(col)
        else:
            d.warnings.append(f"{col}: {levels} distinct text values, too many for a category")
            continue
        per_day = frame.group_by(day).agg(pl.col(col).n_unique().alias("n"))["n"].max()
        if days > 1 and per_day == 1:
            d.warnings.append(
                f"{col}: constant within each day; its drift compares days, not the data"
            )
    leaks = _leaks(frame, target, numeric_candidates) if target else {}
    for col, why in leaks.items():
        d.warnings.append(f"{col}: suspected target leak ({why}), left out of the features")
    d.numeric = [c for c in numeric_candidates if c not in leaks]
    if not d.categorical:
        raise ScaffoldError(
            "no column can serve as a category (text, or an integer with at most "
            f"{CATEGORICAL_INT_LEVELS} levels): serving_keys and segment_column need one"
        )
    return d


def render(d: Draft, spec_dir: Path | None = None) -> str:
    """The draft as YAML text with comments, the source path relative to ``spec_dir``."""
    import yaml

    from mlops_assets.dataset_schema import SCHEMA_PATH

    source = Path(d.source_path).resolve()
    # Relative to the spec's folder (which is where a spec's relative paths start).
    source_text = os.path.relpath(source, spec_dir.resolve()) if spec_dir else str(source)
    w = d.window()
    segment = d.categorical[0]
    serving = list(d.categorical)

    def flow(values: list[str]) -> str:
        return "[" + ", ".join(values) + "]"

    def scalar(value: object) -> str:
        return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")

    key = d.event_key[0] if len(d.event_key) == 1 else flow(d.event_key)
    lines = [
        f"# yaml-language-server: $schema={SCHEMA_PATH}",
        f"# Draft written by `mlops-assets spec init` from {source_text} ({d.days} days).",
        "# Read it, then point MLOPS_DATASET at this file.",
        f"name: {scalar(d.name)}",
        "event_noun: event",
        "outcome_noun: outcome",
        f'start_date: "{d.first_day}"',
        f"date_column: {d.date_column}",
        "# Unique on every row (checked on the whole file).",
        f"event_key: {key}",
    ]
    lines += [f"#   also unique: {flow(k)}" for k in d.other_keys]
    if d.target:
        lines.append(f"target: {d.target}")
    else:
        lines.append("# target: the numeric column to predict (pass --target COL)")
    lines += [
        f"numeric_features: {flow(d.numeric)}",
        f"categorical_features: {flow(d.categorical)}",
        f"serving_keys: {flow(serving)}",
        f"history_keys: {flow(serving)}",
        f"history_days: {w['history_days']}",
        f"segment_column: {segment}",
        "label_lag_days: 1",
        "training:",
        f"  cadence: {w['cadence']}",
        f"  train_days: {w['train_days']}",
        f"  holdout_days: {w['holdout_days']}",
        "  metric: wape",
        "source:",
        f"  kind: {d.source_kind}",
        f"  path: {scalar(source_text)}",
    ]
    if d.warnings:
        lines.append("# Warnings:")
        lines += [f"#   {w_}" for w_ in d.warnings]
    return "\n".join(lines) + "\n"
