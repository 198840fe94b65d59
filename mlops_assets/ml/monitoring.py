"""The ``drift_report`` stage as a pure function: each day's Evidently drift of features and
predictions against the reference of the champion that made them, its rules, and the
persistence rule over the days before it (their drift flags as stored, or recomputed from their
features and predictions when they were not reported yet). Saving the HTML and alerting are the
caller's."""

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
            DRIFT_SHARE: drift.drift_share_rule(result, limits.drift_share_max),
            NULL_SHARE: drift.null_share_rule(
                current, numeric + categorical, limits.null_share_max
            ),
            PREDICTION_DRIFT: drift.prediction_drift_rule(result),
        }
        flags[day] = not rules[DRIFT_SHARE].passed
        window = [day - timedelta(days=k) for k in range(limits.drift_persist_m - 1, -1, -1)]
        for earlier in window:
            if earlier not in flags and earlier >= spec.start_date:
                previous, _ = run(earlier)
                if previous is not None:
                    passed = drift.drift_share_rule(previous, limits.drift_share_max).passed
                    flags[earlier] = not passed
        recent = [flags[d] for d in window if d in flags]
        persistent = drift.persistent(recent, limits.drift_persist_n, limits.drift_persist_m)
        out.append(DayDrift(day, result, current, rules, recent, persistent))
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
