"""The ``drift_report`` stage as a pure function: each day's Evidently drift of features and
predictions against the reference of the champion that made them, its rules, and the
persistence rule over the days before it (their drift flags as stored, or recomputed from their
features and predictions when they were not reported yet), and the rules its checks report.
Saving the HTML and alerting are the caller's.

Which columns a day's report covers, and the rule it names on each column's row:

- ``monitored``: the spec's ``monitored_features`` (default: every model feature, the history
  features ``hist_<key>_mean`` / ``_n`` included), tested by Evidently against the reference.
- ``excluded: day-constant``: a column with one value on every day of the champion's reference
  but several across its days (a weekday, a working-day flag). One day of it holds one value,
  which Evidently calls drift against weeks of reference whatever happens; comparing it with
  reference days of the same value instead would pass by construction. Either way the test says
  nothing, so it is left out (decided on the reference alone, so every day of a champion gets the
  same rule). ``drift_exclude`` in the spec, when given, replaces this default: exactly the
  columns it lists are left out (``excluded: spec``); a day-constant column it does not list is
  tested (``monitored: day-constant, kept by drift_exclude``).
- ``target of <day>``: day D's report carries the target of day D - ``label_lag_days``, the
  newest day whose outcomes had landed by the end of D (the cut-off of D's report; features use
  the same landing rule), compared with the target of the champion's reference window. The same
  report always holds the same target day, whatever the order of runs. Before the first landed
  day the row is ``target: no day landed yet``; a landed day with no stored outcomes is
  ``empty``. The target counts in neither the drift share nor the null share.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any, cast

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
    outcomes: pl.DataFrame | None = None,
) -> DriftStageResult:
    """The drift report of ``days`` (their ``features`` and ``predictions``); ``flags`` are the
    stored drift flags of earlier days and ``read_day(day)`` the features and predictions of a
    day outside ``days``, for the persistence window; ``outcomes`` the stored outcomes of the
    target days (each day minus the label lag). MonitoringError naming the day when one of
    ``days`` has no predictions or its champion has no reference."""
    numeric, categorical = spec.monitored_numeric, spec.monitored_categorical
    flags = dict(flags)

    def reference_of(version: str) -> pl.DataFrame:
        reference = references.filter(pl.col("model_version") == version)
        if reference.is_empty():
            raise MonitoringError(
                f"no drift reference for champion v{version}: materialize drift_reference for "
                "its training date"
            )
        return reference.filter(pl.col(TRAINING_DATE) == reference[TRAINING_DATE].max())

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
        reference = reference_of(current["model_version"][0])
        rules = column_rules(spec, reference, numeric + categorical)
        tested = [c for c, rule in rules.items() if not rule.startswith("excluded")]
        per_key = history_groups(spec, tested)
        grouped = {c for cols in per_key.values() for c in cols}
        result = drift.drift_report(
            reference,
            current,
            [c for c in numeric if c in tested and c not in grouped],
            [c for c in categorical if c in tested],
            name=day.isoformat(),
            timestamp=datetime.combine(day, datetime.min.time()),
            drift_share_max=limits.drift_share_max,
        )
        left_out = [c for c in rules if c not in tested]
        null_cur = drift.missing_shares(current, left_out)
        null_ref = drift.missing_shares(reference, left_out)
        excluded = tuple(
            drift.untested(
                c,
                drift.NUMERIC if c in numeric else drift.CATEGORICAL,
                rules[c],
                null_cur[c],
                null_ref[c],
            )
            for c in left_out
        )
        named = tuple(replace(c, rule=rules.get(c.column, c.rule)) for c in result.columns)
        history = history_drift(spec, reference, current, per_key)
        return replace(result, columns=named, history=tuple(history), excluded=excluded), current

    frames: list[pl.DataFrame] = []
    out: list[DayDrift] = []
    for day in days:
        result, current = run(day)
        if result is None:
            raise MonitoringError(f"no predictions for {day}: nothing to monitor")
        reference = reference_of(current["model_version"][0])
        target, of = target_drift(spec, reference, outcomes, day)
        result = replace(result, target=target, target_day=of)
        watched = [c.column for c in result.columns]
        rules = {
            DRIFT_SHARE: drift_share_rule(result, limits.drift_share_max),
            NULL_SHARE: null_share_rule(current, watched, limits.null_share_max),
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


def column_rules(
    spec: DatasetSpec, reference: pl.DataFrame, columns: Sequence[str]
) -> dict[str, str]:
    """The rule of each of ``columns`` for a champion's ``reference`` (see the module's
    docstring): monitored, excluded as day-constant, or as the spec's ``drift_exclude`` says."""
    constant = set(day_constant_columns(reference, spec.date_column, columns))
    if spec.drift_exclude is None:
        return {
            c: drift.RULE_DAY_CONSTANT if c in constant else drift.RULE_MONITORED for c in columns
        }
    kept = f"{drift.RULE_MONITORED}: day-constant, kept by drift_exclude"
    return {
        c: drift.RULE_SPEC
        if c in spec.drift_exclude
        else (kept if c in constant else drift.RULE_MONITORED)
        for c in columns
    }


def day_constant_columns(
    reference: pl.DataFrame, date_column: str, columns: Sequence[str]
) -> list[str]:
    """The ``columns`` that hold one value on every day of ``reference`` yet more than one
    across its days (a weekday, a working-day flag). Missing values are ignored; a column
    constant over the whole reference is not day-constant (any change of it is drift), and
    without a day of two or more rows nothing is (no evidence)."""
    present = [c for c in columns if c in reference.columns]
    if not present or date_column not in reference.columns:
        return []
    per_day = reference.group_by(date_column).agg(
        pl.len().alias("__rows__"),
        *[pl.col(c).filter(~drift.missing(reference, c)).n_unique().alias(c) for c in present],
    )
    if per_day.is_empty() or cast(int, per_day["__rows__"].max()) < 2:
        return []
    found = []
    for column in present:
        values = reference.filter(~drift.missing(reference, column))[column]
        if cast(int, per_day[column].max()) <= 1 and values.n_unique() > 1:
            found.append(column)
    return found


def history_groups(spec: DatasetSpec, tested: Sequence[str]) -> dict[str, list[str]]:
    """The tested history features of each history key (``hist_<key>_mean`` / ``_n``)."""
    groups = {k: [f"hist_{k}_mean", f"hist_{k}_n"] for k in spec.history_keys}
    return {
        k: [c for c in cols if c in tested] for k, cols in groups.items() if set(cols) & set(tested)
    }


def history_drift(
    spec: DatasetSpec,
    reference: pl.DataFrame,
    current: pl.DataFrame,
    per_key: Mapping[str, Sequence[str]],
) -> list[drift.ColumnDrift]:
    """The rows of the history features, one Evidently test per history key on one value per
    key and day. A history feature holds one value per key on a day (the trailing outcomes of
    that key, known before the day), so the day's hundreds of rows repeat a few values; tested
    row by row against weeks of reference they drift every day whatever happens. One row per
    key and day on both sides asks the question that matters: have the keys' levels moved?"""
    rows: list[drift.ColumnDrift] = []
    date_column = spec.date_column
    for key, columns in per_key.items():
        cur = current.select(date_column, key, *columns).unique([date_column, key]).sort(key)
        ref = reference.select(date_column, key, *columns).unique([date_column, key])
        ref = ref.sort(date_column, key)
        null_cur = drift.missing_shares(current, columns)
        null_ref = drift.missing_shares(reference, columns)
        for row in drift.drift_report(ref, cur, list(columns), [], prediction=None).columns:
            rows.append(
                replace(
                    row,
                    rule=f"{drift.RULE_MONITORED}: one value per {key} and day",
                    null_share_current=null_cur[row.column],
                    null_share_reference=null_ref[row.column],
                )
            )
    return rows


def target_day(spec: DatasetSpec, day: date) -> date | None:
    """The day whose target day ``day``'s report carries: ``label_lag_days`` before it, the
    newest day whose outcomes had landed by the end of ``day`` (None before the first)."""
    landed = day - timedelta(days=spec.label_lag_days)
    return landed if landed >= spec.start_date else None


def target_drift(
    spec: DatasetSpec, reference: pl.DataFrame, outcomes: pl.DataFrame | None, day: date
) -> tuple[drift.ColumnDrift, date | None]:
    """The target's row of ``day``'s report and the day it is of: the stored ``outcomes`` of
    :func:`target_day` against the reference's target (one Evidently test)."""
    name, kind = spec.target, drift.TARGET_KIND
    of = target_day(spec, day)
    null_ref = drift.missing_shares(reference, [name])[name]
    if spec.target in (spec.drift_exclude or ()):
        return drift.untested(name, kind, drift.RULE_SPEC, math.nan, null_ref), of
    if of is None:
        return drift.untested(name, kind, "target: no day landed yet", 1.0, null_ref), None
    current = pl.DataFrame()
    if outcomes is not None and outcomes.width:
        current = outcomes.filter(pl.col(spec.date_column) == of)
    (row,) = drift.drift_report(reference, current, [name], [], prediction=None).columns
    return replace(row, kind=kind, rule=f"target of {of}"), of


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
