"""Sanity rules as pure functions: each returns the observed value, the threshold and counts, so
the asset check that reports it explains itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from mlops_assets.dataset import DatasetSpec
from mlops_assets.ml.features import HISTORY_THROUGH, schema_problems


@dataclass(frozen=True)
class RuleResult:
    passed: bool
    observed: Any
    threshold: Any
    details: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        return {"observed": self.observed, "threshold": self.threshold, **self.details}


def non_empty(frame: pl.DataFrame) -> RuleResult:
    return RuleResult(frame.height > 0, frame.height, "> 0 rows", {"rows": frame.height})


def unique_keys(frame: pl.DataFrame, key: str) -> RuleResult:
    dupes = frame.height - frame[key].n_unique() if key in frame.columns else frame.height
    return RuleResult(dupes == 0, dupes, 0, {"rows": frame.height, "key": key})


def schema_matches(spec: DatasetSpec, frame: pl.DataFrame) -> RuleResult:
    expected = [spec.date_column, spec.event_key, *spec.model_feature_columns]
    missing = [c for c in expected if c not in frame.columns]
    problems = missing and [f"missing {c!r}" for c in missing]
    if not problems:
        problems = schema_problems(spec, frame, expected)
    return RuleResult(
        not problems,
        len(problems),
        0,
        {"problems": "; ".join(problems) or "none", "columns": len(frame.columns)},
    )


def null_shares(frame: pl.DataFrame, columns: list[str]) -> dict[str, float]:
    if frame.height == 0:
        return {c: 1.0 for c in columns}
    counts = frame.select(pl.col(c).null_count() for c in columns).row(0)
    return {c: n / frame.height for c, n in zip(columns, counts, strict=True)}


def null_share_under(frame: pl.DataFrame, columns: list[str], max_share: float) -> RuleResult:
    shares = null_shares(frame, columns)
    worst = max(shares, key=shares.__getitem__) if shares else None
    observed = shares.get(worst, 0.0) if worst else 0.0
    over = sorted(c for c, s in shares.items() if s > max_share)
    return RuleResult(
        not over,
        round(observed, 4),
        max_share,
        {"worst_column": worst or "none", "columns_over": ", ".join(over) or "none"},
    )


def point_in_time(spec: DatasetSpec, frame: pl.DataFrame) -> RuleResult:
    """No feature row of day D may come from outcomes that had not landed before D."""
    lag = spec.label_lag_days + 1
    if HISTORY_THROUGH not in frame.columns:
        return RuleResult(False, "no history_through column", f"<= day - {lag} days")
    allowed = pl.col(spec.date_column) - pl.duration(days=lag)
    leaked = frame.filter(pl.col(HISTORY_THROUGH) > allowed).height
    latest = frame[HISTORY_THROUGH].max()
    return RuleResult(
        leaked == 0,
        leaked,
        0,
        {
            "rule": f"history_through <= day - {lag} days",
            "latest_history_day": str(latest) if latest else "no history",
            "rows": frame.height,
        },
    )
