"""The ``drift_report`` stage as a pure function: each day's Evidently drift of features and
predictions against the reference of the champion that made them, its rules, and the
persistence rule over the days before it (their drift flags as stored, or recomputed from their
features and predictions when they were not reported yet), and the rules its checks report.
Saving the HTML and alerting are the caller's."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import polars as pl

from mlops_assets.dataset import DatasetSpec
from mlops_assets.environments import Thresholds
from mlops_assets.ml import drift
from mlops_assets.ml.rules import RuleResult

DRIFT_SHARE, PREDICTION_DRIFT, NULL_SHARE = "drift_share", "prediction_drift", "null_share"
SUMMARY_COLUMN = "__drifted__"
TRAINING_DATE = "training_date"


class MonitoringError(RuntimeError):
    """A day cannot be monitored: no predictions, or no reference for its champion."""


@dataclass(frozen=True)
class DayDrift:
    """One day's report, the rows it was computed on, its rules and the persistence verdict
    (the drift flags of the window, oldest first)."""

    day: date
    result: drift.DriftResult
    current: pl.DataFrame
    rules: dict[str, RuleResult]
    recent: list[bool]
    persistent: bool


@dataclass(frozen=True)
class DriftStageResult:
    frame: pl.DataFrame
    days: list[DayDrift] = field(default_factory=list)

    def verdict(self, rule: str) -> tuple[bool, dict[str, Any]]:
        """A rule over every day: passed when it passed on each, with the evidence of the last
        failing day (or the last day)."""
        failed = [d for d in self.days if not d.rules[rule].passed]
        shown = (failed or self.days)[-1]
        return not failed, {
            **shown.rules[rule].metadata(),
            "day": str(shown.day),
            "days_checked": len(self.days),
            "days_failed": ", ".join(str(d.day) for d in failed) or "none",
        }

    def persistence(self, limits: Thresholds) -> tuple[bool, dict[str, Any]]:
        """The persistence rule over every day: passed when drift persisted on none."""
        on = [str(d.day) for d in self.days if d.persistent]
        recent = self.days[-1].recent
        return not on, {
            "observed": f"{sum(recent)} of {len(recent)} days drifted (up to {self.days[-1].day})",
            "threshold": f"< {limits.drift_persist_n} of {limits.drift_persist_m}",
            "persistent_on": ", ".join(on) or "none",
        }


def stored_flags(past: pl.DataFrame) -> dict[date, bool]:
    """The drift flag of each day already in the drift_report table."""
    if not past.width:
        return {}
    summary = past.filter(pl.col("column") == SUMMARY_COLUMN)
    return {r["day"]: bool(r["drifted"]) for r in summary.iter_rows(named=True)}


def drift_report_stage(
    spec: DatasetSpec,
    days: Sequence[date],
    features: pl.DataFrame,
    predictions: pl.DataFrame,
    references: pl.DataFrame,
    flags: Mapping[date, bool],
    read_day: Callable[[date], tuple[pl.DataFrame, pl.DataFrame]],
    limits: Thresholds,
) -> DriftStageResult:
    """The drift report of ``days`` (their ``features`` and ``predictions``); ``flags`` are the
    stored drift flags of earlier days and ``read_day(day)`` the features and predictions of a
    day outside ``days``, for the persistence window. MonitoringError naming the day when one of
    ``days`` has no predictions or its champion has no reference."""
    numeric, categorical = spec.monitored_numeric, spec.monitored_categorical
    flags = dict(flags)

    def run(day: date) -> tuple[drift.DriftResult | None, pl.DataFrame]:
        feats, preds = (features, predictions) if day in days else read_day(day)
        if not preds.width:
            return None, preds
        current = feats.filter(pl.col(spec.date_column) == day).join(
            preds.select(spec.event_key, drift.PREDICTION, "model_version"),
            on=spec.event_key,
            how="inner",
        )
        if current.is_empty():
            return None, current
        version = current["model_version"][0]
        reference = references.filter(pl.col("model_version") == version)
        if reference.is_empty():
            raise MonitoringError(
                f"no drift reference for champion v{version}: materialize drift_reference for "
                "its training date"
            )
        reference = reference.filter(pl.col(TRAINING_DATE) == reference[TRAINING_DATE].max())
        result = drift.drift_report(
            reference,
            current,
            numeric,
            categorical,
            name=day.isoformat(),
            timestamp=datetime.combine(day, datetime.min.time()),
            drift_share_max=limits.drift_share_max,
        )
        return result, current

    frames: list[pl.DataFrame] = []
    out: list[DayDrift] = []
    for day in days:
        result, current = run(day)
        if result is None:
            raise MonitoringError(f"no predictions for {day}: nothing to monitor")
        rules = {
            DRIFT_SHARE: drift_share_rule(result, limits.drift_share_max),
            NULL_SHARE: null_share_rule(current, numeric + categorical, limits.null_share_max),
            PREDICTION_DRIFT: prediction_drift_rule(result),
        }
        flags[day] = not rules[DRIFT_SHARE].passed
        window = [day - timedelta(days=k) for k in range(limits.drift_persist_m - 1, -1, -1)]
        for earlier in window:
            if earlier not in flags and earlier >= spec.start_date:
                previous, _ = run(earlier)
                if previous is not None:
                    passed = drift_share_rule(previous, limits.drift_share_max).passed
                    flags[earlier] = not passed
        recent = [flags[d] for d in window if d in flags]
        lasting = persistent(recent, limits.drift_persist_n, limits.drift_persist_m)
        out.append(DayDrift(day, result, current, rules, recent, lasting))
        frames.append(result.frame().with_columns(pl.lit(day, dtype=pl.Date).alias("day")))
        frames.append(
            pl.DataFrame(
                {
                    "column": [SUMMARY_COLUMN],
                    "kind": ["summary"],
                    "drifted": [flags[day]],
                    "score": [result.drift_share],
                    "day": [day],
                }
            )
        )
    return DriftStageResult(pl.concat(frames, how="diagonal_relaxed"), out)


# The rules the drift checks report -----------------------------------------------------


def null_share_rule(current: pl.DataFrame, columns: list[str], max_share: float) -> RuleResult:
    """Every column's null share (null, NaN or +-inf; an absent column counts as all null) is at
    most ``max_share``."""
    shares = drift.missing_shares(current, columns)
    worst = max(shares, key=shares.__getitem__) if shares else None
    over = sorted(c for c, s in shares.items() if s > max_share)
    return RuleResult(
        not over,
        round(shares[worst], 4) if worst else 0.0,
        max_share,
        {
            "rows": current.height,
            "columns_checked": len(columns),
            "worst_column": worst or "none",
            "worst_column_nulls": round(shares[worst] * current.height) if worst else 0,
            "columns_over": ", ".join(over) or "none",
            "n_columns_over": len(over),
        },
    )


def drift_share_rule(result: drift.DriftResult, max_share: float) -> RuleResult:
    """At most ``max_share`` of the tested feature columns drifted; fails when none could be
    tested (every column empty), since then nothing was checked."""
    tested = len(result.tested_columns)
    return RuleResult(
        tested > 0 and result.drift_share <= max_share,
        round(result.drift_share, 4),
        max_share,
        {
            "drifted": result.n_drifted,
            "tested": tested,
            "empty": len(result.empty_columns),
            "drifted_columns": ", ".join(result.drifted_columns) or "none",
            "empty_columns": ", ".join(result.empty_columns) or "none",
        },
    )


def prediction_drift_rule(result: drift.DriftResult) -> RuleResult:
    """The prediction's distribution did not drift (by Evidently's test and threshold). Fails
    when there are no predictions to test."""
    pred = result.prediction
    if pred is None or pred.status == drift.STATUS_EMPTY:
        return RuleResult(
            False,
            "no predictions to test",
            "predictions on both sides",
            {"rows_current": result.rows_current, "rows_reference": result.rows_reference},
        )
    return RuleResult(
        not pred.drifted,
        round(pred.score, 6),
        pred.threshold,
        {
            "test": pred.stattest or "none",
            "drifted": pred.drifted,
            "mean_current": drift.plain(result.prediction_mean_current),
            "mean_reference": drift.plain(result.prediction_mean_reference),
            "std_current": drift.plain(result.prediction_std_current),
            "std_reference": drift.plain(result.prediction_std_reference),
            "rows_current": result.sampled_current,
            "rows_reference": result.sampled_reference,
        },
    )


def persistent(drift_flags: list[bool], n: int, m: int) -> bool:
    """Drift on at least ``n`` of the last ``m`` days (flags in day order, oldest first)."""
    if not 1 <= n <= m:
        raise ValueError(f"need 1 <= n <= m, got n={n}, m={m}")
    return sum(bool(f) for f in drift_flags[-m:]) >= n
