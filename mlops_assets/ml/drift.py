"""Model monitoring as pure functions: Evidently drift of features and predictions, null shares,
and the rules the drift checks report.

Evidently (0.7, the ``from evidently import Report`` API) is imported only inside the functions
that run it, because ``import evidently`` costs seconds that loading definitions should not pay.

What Evidently does not see, this module reports itself:

- Nulls (and NaN, +-inf in numeric columns) are dropped before a drift test, so a column that is
  60 % null can show no drift at all: :func:`null_share_rule` checks null shares separately.
- A column with no value on one side makes Evidently raise, so such a column is left out of the
  report and listed with status ``empty``; the drift share counts only the columns it tested.
- A column constant within each day (a weekday, a working-day flag) has one value on any day,
  which a distribution test against weeks of reference always calls drift:
  :func:`mlops_assets.ml.monitoring.day_constant_columns` finds such columns in the reference, and
  lists them as ``excluded`` rows with the rule that left them out.

Evidently picks a test per column from the reference size: up to 1,000 reference rows a p-value
test (K-S for numeric, chi-square or Z for categorical; drift when the p-value is below the
threshold, 0.05), above that a distance (normed Wasserstein for numeric, Jensen-Shannon for
categorical; drift when the distance reaches the threshold, 0.1). The drift flag of each column
is Evidently's own test result, so either direction is read correctly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, cast

import polars as pl

from mlops_assets.dataset import CATEGORICAL, NUMERIC

PREDICTION = "prediction"
PREDICTION_KIND = "prediction"
STATUS_OK = "ok"
STATUS_DRIFT = "drift"
STATUS_EMPTY = "empty"
STATUS_EXCLUDED = "excluded"
TARGET_KIND = "target"
# The rule that applied to a column (the ``rule`` of each row of the report).
RULE_MONITORED = "monitored"
RULE_DAY_CONSTANT = "excluded: day-constant"
RULE_SPEC = "excluded: spec"
_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"


@dataclass(frozen=True)
class ColumnDrift:
    """The drift verdict of one column. ``score`` is a p-value or a distance (see ``stattest``:
    Evidently's name of the test it chose, e.g. ``K-S p_value``, or the method given, e.g.
    ``ks``); it and ``threshold`` are NaN for an ``empty`` column, which Evidently did not test."""

    column: str
    kind: str
    stattest: str | None
    score: float
    threshold: float
    drifted: bool
    null_share_current: float
    null_share_reference: float
    rule: str = RULE_MONITORED

    @property
    def status(self) -> str:
        if self.rule.startswith("excluded"):
            return STATUS_EXCLUDED
        if self.stattest is None:
            return STATUS_EMPTY
        return STATUS_DRIFT if self.drifted else STATUS_OK

    def as_row(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "kind": self.kind,
            "stattest": self.stattest,
            "score": self.score,
            "threshold": self.threshold,
            "drifted": self.drifted,
            "null_share_current": self.null_share_current,
            "null_share_reference": self.null_share_reference,
            "status": self.status,
            "rule": self.rule,
        }


def untested(
    column: str, kind: str, rule: str, null_current: float, null_reference: float
) -> ColumnDrift:
    """The row of a column Evidently did not test (excluded by ``rule``, or nothing to test)."""
    return ColumnDrift(
        column, kind, None, math.nan, math.nan, False, null_current, null_reference, rule
    )


@dataclass(frozen=True)
class DriftResult:
    """One drift report: per-column verdicts, the prediction's, and the Evidently run.

    ``snapshot`` is the Evidently ``Snapshot`` (alias ``Run``) to save with
    ``dashboard.save_report`` and ``dashboard.add_to_workspace``; it is None when no column
    could be tested at all.
    ``excluded`` are the rows of columns left out (by their rule), ``history`` those of the
    history features (tested on one value per key and day, so not in the HTML report's run) and
    ``target`` the target's row, of the day ``target_day`` (all set by ``ml.monitoring``); none
    of them counts in the drift share, which is the share of the HTML report's columns.
    """

    columns: tuple[ColumnDrift, ...]
    prediction: ColumnDrift | None
    prediction_mean_current: float
    prediction_std_current: float
    prediction_mean_reference: float
    prediction_std_reference: float
    rows_current: int
    rows_reference: int
    sampled_current: int
    sampled_reference: int
    snapshot: Any = field(default=None, repr=False, compare=False)
    excluded: tuple[ColumnDrift, ...] = ()
    target: ColumnDrift | None = None
    target_day: date | None = None
    history: tuple[ColumnDrift, ...] = ()

    @property
    def rows(self) -> tuple[ColumnDrift, ...]:
        """Every column's row: features tested row by row, history features, excluded ones,
        the target, the prediction."""
        extra = [r for r in (self.target, self.prediction) if r is not None]
        return (*self.columns, *self.history, *self.excluded, *extra)

    @property
    def history_drifted(self) -> tuple[str, ...]:
        return tuple(c.column for c in self.history if c.status == STATUS_DRIFT)

    @property
    def target_drift(self) -> bool:
        return self.target is not None and self.target.status == STATUS_DRIFT

    @property
    def tested_columns(self) -> tuple[str, ...]:
        return tuple(c.column for c in self.columns if c.status != STATUS_EMPTY)

    @property
    def drifted_columns(self) -> tuple[str, ...]:
        return tuple(c.column for c in self.columns if c.status == STATUS_DRIFT)

    @property
    def empty_columns(self) -> tuple[str, ...]:
        return tuple(c.column for c in self.columns if c.status == STATUS_EMPTY)

    @property
    def n_drifted(self) -> int:
        return len(self.drifted_columns)

    @property
    def drift_share(self) -> float:
        """Share of the tested feature columns that drifted (0.0 when none could be tested)."""
        tested = len(self.tested_columns)
        return self.n_drifted / tested if tested else 0.0

    @property
    def prediction_drift(self) -> bool:
        return self.prediction is not None and self.prediction.status == STATUS_DRIFT

    @property
    def prediction_score(self) -> float:
        return self.prediction.score if self.prediction is not None else math.nan

    def column(self, name: str) -> ColumnDrift:
        for col in self.rows:
            if col.column == name:
                return col
        raise KeyError(f"no drift result for column {name!r}")

    def frame(self) -> pl.DataFrame:
        """One row per column: features, excluded ones, the target, the prediction (for a
        warehouse table), each with the rule that applied to it."""
        return pl.DataFrame(
            [c.as_row() for c in self.rows],
            schema={
                "column": pl.String,
                "kind": pl.String,
                "stattest": pl.String,
                "score": pl.Float64,
                "threshold": pl.Float64,
                "drifted": pl.Boolean,
                "null_share_current": pl.Float64,
                "null_share_reference": pl.Float64,
                "status": pl.String,
                "rule": pl.String,
            },
        )

    def metrics(self) -> dict[str, float | int | bool | str]:
        """The numbers worth plotting, as plain floats and ints (asset metadata)."""
        return {
            "drift_share": round(self.drift_share, 4),
            "drifted_columns": self.n_drifted,
            "tested_columns": len(self.tested_columns),
            "empty_columns": len(self.empty_columns),
            "excluded_columns": len(self.excluded),
            "history_tested_columns": sum(c.status != STATUS_EMPTY for c in self.history),
            "history_drifted_columns": len(self.history_drifted),
            "target_day": str(self.target_day) if self.target_day else "none landed",
            "target_drift": self.target_drift,
            "target_drift_score": plain(self.target.score if self.target else math.nan),
            "prediction_drift": self.prediction_drift,
            "prediction_drift_score": plain(self.prediction_score),
            "prediction_mean_current": plain(self.prediction_mean_current),
            "prediction_mean_reference": plain(self.prediction_mean_reference),
            "prediction_std_current": plain(self.prediction_std_current),
            "prediction_std_reference": plain(self.prediction_std_reference),
            "rows_current": self.rows_current,
            "rows_reference": self.rows_reference,
        }

    def summary_markdown(self) -> str:
        """A headline and a table of per-column drift scores and null shares."""
        tested = len(self.tested_columns)
        empty = ", ".join(self.empty_columns)
        empty = f"; empty, not tested: {empty}" if empty else ""
        left_out = ", ".join(f"{c.column} ({c.rule})" for c in self.excluded)
        left_out = f"; left out: {left_out}" if left_out else ""
        lines = [
            f"**{self.n_drifted} of {tested} tested feature columns drifted** "
            f"(share {self.drift_share:.2f}){empty}{left_out}."
        ]
        if self.history:
            drifted = ", ".join(self.history_drifted) or "none"
            lines.append(
                f"History features (one value per key and day, not in the share): "
                f"{len(self.history)} tested, drifted: {drifted}."
            )
        if self.target is not None:
            lines.append(f"Target {self.target.column}: {self.target.rule}, {self.target.status}.")
        if self.prediction is not None:
            verdict = {STATUS_DRIFT: "drifted", STATUS_OK: "stable", STATUS_EMPTY: "empty"}
            lines.append(
                f"Prediction {verdict[self.prediction.status]}: mean "
                f"{_fmt(self.prediction_mean_current)} vs {_fmt(self.prediction_mean_reference)} "
                f"in the reference (std {_fmt(self.prediction_std_current)} vs "
                f"{_fmt(self.prediction_std_reference)})."
            )
        lines += [
            "",
            "| column | kind | rule | test | score | threshold | status | null share | "
            "null share (reference) |",
            "|---|---|---|---|---:|---:|---|---:|---:|",
        ]
        for c in self.rows:
            lines.append(
                f"| {c.column} | {c.kind} | {c.rule} | {c.stattest or '-'} | {_fmt(c.score)} | "
                f"{_fmt(c.threshold)} | {c.status} | {c.null_share_current:.1%} | "
                f"{c.null_share_reference:.1%} |"
            )
        return "\n".join(lines)


def _fmt(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4g}"


def plain(value: float) -> float:
    return float(value) if value is not None else math.nan


def missing(frame: pl.DataFrame, column: str) -> pl.Expr:
    """True where Evidently would drop the value: null, and NaN or +-inf in a float column."""
    expr = pl.col(column).is_null()
    if frame.schema[column].is_float():
        expr = expr | ~pl.col(column).is_finite()
    return expr


def missing_shares(frame: pl.DataFrame, columns: Sequence[str]) -> dict[str, float]:
    """Share of rows per column that a drift test cannot use (1.0 for an absent column or an
    empty frame)."""
    present = [c for c in columns if c in frame.columns]
    shares = {c: 1.0 for c in columns}
    if frame.height and present:
        counts = frame.select(missing(frame, c).sum().alias(c) for c in present).row(0)
        shares.update({c: n / frame.height for c, n in zip(present, counts, strict=True)})
    return shares


def sample(frame: pl.DataFrame, max_rows: int, seed: int) -> pl.DataFrame:
    """A seeded uniform sample of at most ``max_rows`` rows (see ``training.sample_rows``)."""
    from mlops_assets.ml.training import sample_rows

    return sample_rows(frame, max_rows, seed)


def _usable(frame: pl.DataFrame, column: str) -> bool:
    if column not in frame.columns or frame.height == 0:
        return False
    return bool(frame.select((~missing(frame, column)).any()).item())


def _prediction_stats(frame: pl.DataFrame, column: str | None) -> tuple[float, float]:
    if column is None or column not in frame.columns:
        return math.nan, math.nan
    values = frame.select(pl.col(column).cast(pl.Float64)).to_series()
    values = values.filter(values.is_finite())
    if values.is_empty():
        return math.nan, math.nan
    std = cast("float | None", values.std())
    return float(cast(float, values.mean())), float(std) if std is not None else math.nan


def _as_pandas(frame: pl.DataFrame, numeric: list[str], categorical: list[str]) -> Any:
    """The columns Evidently tests, typed as declared: numeric as float, categorical as text."""
    return frame.select(
        *[pl.col(c).cast(pl.Float64) for c in numeric],
        *[pl.col(c).cast(pl.String) for c in categorical],
    ).to_pandas()


def drift_report(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    numeric: list[str],
    categorical: list[str],
    prediction: str | None = PREDICTION,
    max_reference_rows: int = 5000,
    max_current_rows: int = 20000,
    seed: int = 0,
    *,
    prediction_method: str | None = None,
    prediction_threshold: float | None = None,
    drift_share_max: float = 0.5,
    timestamp: datetime | None = None,
    name: str | None = None,
) -> DriftResult:
    """Evidently data drift of ``current`` against ``reference`` on the given feature columns
    and the ``prediction`` column (None: no prediction drift).

    Both sides are sampled deterministically (:func:`sample`) down to the caps.
    Column types are declared, never inferred. A column with no usable value on either side is
    reported ``empty`` and not passed to Evidently. ``prediction_method`` and
    ``prediction_threshold`` override Evidently's automatic test for the prediction column (e.g.
    ``"ks"`` with a p-value threshold). ``drift_share_max`` is the dataset-drift line the HTML
    report draws (pass the environment's, so the report and the check agree); ``timestamp`` and
    ``name`` label the Evidently run (a daily partition passes its day, so the workspace history
    is in day order and a re-run replaces that day's run).
    """
    both = sorted(set(numeric) & set(categorical))
    if both:
        raise ValueError(f"columns listed as both numeric and categorical: {both}")
    features = list(dict.fromkeys(c for c in [*numeric, *categorical] if c != prediction))
    kinds = {c: NUMERIC for c in numeric} | {c: CATEGORICAL for c in categorical}
    monitored = features + ([prediction] if prediction else [])
    kinds.update({prediction: NUMERIC} if prediction else {})

    null_cur = missing_shares(current, monitored)
    null_ref = missing_shares(reference, monitored)
    # Rows are sampled on all their columns, so the sample does not depend on the columns tested.
    cur = sample(current, max_current_rows, seed)
    ref = sample(reference, max_reference_rows, seed)
    tested = [c for c in monitored if _usable(cur, c) and _usable(ref, c)]

    results: dict[str, tuple[str, float, float, bool]] = {}
    snapshot = None
    if tested:
        snapshot = _run_evidently(
            ref,
            cur,
            [c for c in tested if kinds[c] == NUMERIC],
            [c for c in tested if kinds[c] == CATEGORICAL],
            prediction if prediction in tested else None,
            prediction_method,
            prediction_threshold,
            drift_share_max,
            timestamp,
            name,
        )
        results = _column_results(snapshot)
        missing = sorted(set(tested) - set(results))
        if missing:
            raise RuntimeError(f"Evidently returned no drift result for columns {missing}")

    def verdict(column: str, kind: str) -> ColumnDrift:
        method, score, threshold, drifted = results.get(column, (None, math.nan, math.nan, False))
        return ColumnDrift(
            column=column,
            kind=kind,
            stattest=method,
            score=score,
            threshold=threshold,
            drifted=drifted,
            null_share_current=null_cur[column],
            null_share_reference=null_ref[column],
        )

    mean_cur, std_cur = _prediction_stats(current, prediction)
    mean_ref, std_ref = _prediction_stats(reference, prediction)
    return DriftResult(
        columns=tuple(verdict(c, kinds[c]) for c in features),
        prediction=verdict(prediction, PREDICTION_KIND) if prediction else None,
        prediction_mean_current=mean_cur,
        prediction_std_current=std_cur,
        prediction_mean_reference=mean_ref,
        prediction_std_reference=std_ref,
        rows_current=current.height,
        rows_reference=reference.height,
        sampled_current=cur.height,
        sampled_reference=ref.height,
        snapshot=snapshot,
    )


def _run_evidently(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    numeric: list[str],
    categorical: list[str],
    prediction: str | None,
    prediction_method: str | None,
    prediction_threshold: float | None,
    drift_share_max: float,
    timestamp: datetime | None,
    name: str | None,
) -> Any:
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    features = [c for c in numeric + categorical if c != prediction]
    items: list[Any] = []
    if features:
        items.append(DataDriftPreset(columns=features, drift_share=drift_share_max))
    if prediction:
        items.append(
            ValueDrift(column=prediction, method=prediction_method, threshold=prediction_threshold)
        )
    report = Report(items, include_tests=True)
    return report.run(
        Dataset.from_pandas(_as_pandas(current, numeric, categorical), data_definition=definition),
        Dataset.from_pandas(
            _as_pandas(reference, numeric, categorical), data_definition=definition
        ),
        timestamp=timestamp,
        name=name,
    )


def _column_results(snapshot: Any) -> dict[str, tuple[str, float, float, bool]]:
    """Per column: (test name, score, threshold, drifted) from the ValueDrift metrics of a run.

    A ValueDrift metric's value is the score; its config holds the column, the test Evidently
    resolved and its threshold; its test (``include_tests=True``) says whether it drifted.
    """
    exported = snapshot.dict()
    failed = {
        t["metric_config"]["metric_id"]: t["status"] == "FAIL"
        for t in exported["tests"]
        if t["metric_config"]["params"].get("type") == _VALUE_DRIFT
    }
    results = {}
    for metric in exported["metrics"]:
        config = metric["config"]
        if config.get("type") != _VALUE_DRIFT:
            continue
        if metric["id"] not in failed:
            raise RuntimeError(f"Evidently ran no drift test for column {config['column']!r}")
        results[config["column"]] = (
            str(config["method"]),
            float(metric["value"]),
            float(config["threshold"]),
            failed[metric["id"]],
        )
    return results
