"""The promotion gates beyond the leaderboard, as pure functions over a holdout.

Each gate gives one :class:`GateResult`: its observed value, its threshold, the counts behind
them, and a verdict: ``pass``, ``warn`` (failed, but the environment only warns on it),
``refuse`` (failed and the environment refuses the promotion) or ``n/a`` (nothing to compare
with, e.g. no incumbent yet). The thresholds and which gates refuse come from one place, the
environment's :class:`~mlops_assets.environments.GateThresholds` with the dataset spec's
``gates:`` overrides applied.

- ``segment_guardrail``: no segment (of the spec's segment column) holding at least
  ``segment_min_share`` of the holdout's cost (its volume of events without a cost column) may
  score worse than the incumbent on that segment by more than ``segment_margin`` (relative).
- ``business_benchmark``: the bias of the total, (predicted - actual) / actual, lies within
  ``[-bias_under_max, +bias_over_max]``; with a cost column, the predicted cost per outcome of
  each segment is also within ``cost_per_outcome_band`` of the actual, on cost-weighted average.
- ``serving_budget``: the single-row p99 latency and the model's size are at most
  ``serving_p99_factor`` and ``serving_size_factor`` times the incumbent's.
- ``target_leak``: no feature predicts the target almost alone (a one-feature model fitted on
  half the holdout scores at most ``leak_feature_ratio`` of the best baseline's error on the
  other half, or the feature's correlation with the target reaches ``leak_correlation``), and
  the proposal's error is not at most ``leak_champion_ratio`` of the best baseline's.

The first two and the last are properties of the candidate alone and are decided where the
candidate is evaluated; ``segment_guardrail`` and ``serving_budget`` compare it with the
champion in force and are decided by the decision history.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from mlops_assets.dataset import DatasetSpec
from mlops_assets.environments import GATE_NAMES, GateThresholds
from mlops_assets.ml.training import metrics

SEGMENT_GUARDRAIL, BUSINESS_BENCHMARK, SERVING_BUDGET, TARGET_LEAK = GATE_NAMES
PASS, WARN, REFUSE, NOT_APPLICABLE = "pass", "warn", "refuse", "n/a"
# Quantile bins of a numeric feature's one-feature model.
LEAK_BINS = 50


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict on one candidate, with its evidence."""

    gate: str
    verdict: str
    observed: float | None
    threshold: float | None
    reason: str
    counts: dict[str, float] = field(default_factory=dict)

    @property
    def refused(self) -> bool:
        return self.verdict == REFUSE

    @property
    def passed(self) -> bool:
        return self.verdict in (PASS, NOT_APPLICABLE)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def verdict(gate: str, failed: bool, limits: GateThresholds) -> str:
    if not failed:
        return PASS
    return REFUSE if limits.blocks(gate) else WARN


def dumps(results: Sequence[GateResult]) -> str:
    """Gate results as the JSON text stored with an evaluation or a decision."""
    return json.dumps([r.as_dict() for r in results], sort_keys=True, default=_finite)


def loads(text: str | None) -> list[GateResult]:
    if not text:
        return []
    return [GateResult(**row) for row in json.loads(text)]


def _finite(value: Any) -> Any:
    return None


def _clean(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def first_refusal(results: Sequence[GateResult]) -> GateResult | None:
    return next((r for r in results if r.refused), None)


def markdown(results: Sequence[GateResult]) -> str:
    """The gates as a markdown table: gate, verdict, observed, threshold, reason."""
    lines = ["| gate | verdict | observed | threshold | reason |", "|---|---|---|---|---|"]
    for r in results:
        obs = "-" if r.observed is None else f"{r.observed:.4g}"
        thr = "-" if r.threshold is None else f"{r.threshold:.4g}"
        lines.append(f"| {r.gate} | {r.verdict} | {obs} | {thr} | {r.reason} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Segment guardrail


def segment_scores(
    holdout: pl.DataFrame, predicted: np.ndarray, spec: DatasetSpec
) -> list[dict[str, Any]]:
    """Per segment of the spec's segment column: its share of the holdout's cost (volume of
    events without a cost column), its rows and the spec metric of ``predicted`` on it."""
    metric = spec.training.metric
    segment = holdout[spec.segment_column].cast(pl.String).fill_null("(missing)").to_numpy()
    actual = holdout[spec.target].cast(pl.Float64).to_numpy()
    if spec.cost_column and spec.cost_column in holdout.columns:
        weight = holdout[spec.cost_column].cast(pl.Float64).fill_null(0.0).to_numpy()
    else:
        weight = np.ones(holdout.height)
    total = float(weight.sum()) or 1.0
    out = []
    for level in sorted(set(segment.tolist())):
        mask = segment == level
        score = metrics(actual[mask], np.asarray(predicted, dtype=float)[mask])[metric]
        out.append(
            {
                "segment": level,
                "share": float(weight[mask].sum()) / total,
                "rows": int(mask.sum()),
                "score": _clean(score),
            }
        )
    return out


def segment_guardrail(
    candidate: Sequence[Mapping[str, Any]] | None,
    incumbent: Sequence[Mapping[str, Any]] | None,
    limits: GateThresholds,
    metric: str,
) -> GateResult:
    """The candidate against the incumbent on every large segment (rule in the module doc)."""
    threshold = limits.segment_margin
    if not candidate or not incumbent:
        return GateResult(
            SEGMENT_GUARDRAIL,
            NOT_APPLICABLE,
            None,
            threshold,
            "no incumbent to compare segments with",
        )
    theirs = {s["segment"]: s for s in incumbent}
    large = [s for s in candidate if s["share"] >= limits.segment_min_share]
    worst, worst_row = -math.inf, None
    for seg in large:
        other = theirs.get(seg["segment"])
        if other is None or seg["score"] is None or other["score"] in (None, 0):
            continue
        change = seg["score"] / other["score"] - 1.0
        if change > worst:
            worst, worst_row = change, (seg, other)
    counts: dict[str, float] = {"segments": len(candidate), "large_segments": len(large)}
    if worst_row is None:
        return GateResult(
            SEGMENT_GUARDRAIL,
            NOT_APPLICABLE,
            None,
            threshold,
            f"no segment holds {limits.segment_min_share:.0%} of the holdout with a score to "
            "compare",
            counts,
        )
    seg, other = worst_row
    failed = worst > threshold
    words = (
        f"segment {seg['segment']} ({seg['share']:.0%} of the holdout): {metric} "
        f"{seg['score']:.4f} against the incumbent's {other['score']:.4f} ({worst:+.1%}; at "
        f"most {threshold:+.0%} allowed)"
    )
    return GateResult(
        SEGMENT_GUARDRAIL,
        verdict(SEGMENT_GUARDRAIL, failed, limits),
        worst,
        threshold,
        words if failed else f"worst large segment: {words}",
        {**counts, "segment_share": seg["share"], "segment_rows": seg["rows"]},
    )


# ---------------------------------------------------------------------------------------------
# Business benchmark


def business_benchmark(
    holdout: pl.DataFrame, predicted: np.ndarray, spec: DatasetSpec, limits: GateThresholds
) -> GateResult:
    """Bias band (different over and under) and, with a cost column, the cost-per-outcome band."""
    actual = holdout[spec.target].cast(pl.Float64).to_numpy()
    predicted = np.asarray(predicted, dtype=float)
    total = float(actual.sum())
    bias = (float(predicted.sum()) - total) / total if total else math.inf
    counts: dict[str, float] = {
        "rows": holdout.height,
        "actual_total": total,
        "predicted_total": float(predicted.sum()),
        "bias": _clean(bias) or math.nan,
        "bias_over_max": limits.bias_over_max,
        "bias_under_max": limits.bias_under_max,
    }
    problems = []
    if not math.isfinite(bias) or bias > limits.bias_over_max:
        problems.append(
            f"over-predicts by {bias:+.1%} (at most +{limits.bias_over_max:.0%} allowed)"
        )
    elif bias < -limits.bias_under_max:
        problems.append(
            f"under-predicts by {bias:+.1%} (at most -{limits.bias_under_max:.0%} allowed)"
        )
    observed, threshold = bias, (limits.bias_over_max if bias >= 0 else -limits.bias_under_max)
    if spec.cost_column and spec.cost_column in holdout.columns:
        deviation = float(
            _cost_per_outcome_deviation(holdout, actual, predicted, spec, spec.cost_column)
        )
        counts["cost_per_outcome_deviation"] = deviation
        counts["cost_per_outcome_band"] = limits.cost_per_outcome_band
        if not math.isfinite(deviation) or deviation > limits.cost_per_outcome_band:
            if not problems:
                observed, threshold = deviation, limits.cost_per_outcome_band
            problems.append(
                f"predicted cost per outcome is off the actual by {deviation:.1%} on "
                f"cost-weighted average over segments (at most "
                f"{limits.cost_per_outcome_band:.0%} allowed)"
            )
    failed = bool(problems)
    reason = (
        "; ".join(problems)
        if failed
        else f"bias {bias:+.1%} within -{limits.bias_under_max:.0%}..+{limits.bias_over_max:.0%}"
        + (
            f", cost per outcome off by {counts['cost_per_outcome_deviation']:.1%} (band "
            f"{limits.cost_per_outcome_band:.0%})"
            if "cost_per_outcome_deviation" in counts
            else ""
        )
    )
    return GateResult(
        BUSINESS_BENCHMARK,
        verdict(BUSINESS_BENCHMARK, failed, limits),
        _clean(observed),
        threshold,
        reason,
        counts,
    )


def _cost_per_outcome_deviation(
    holdout: pl.DataFrame,
    actual: np.ndarray,
    predicted: np.ndarray,
    spec: DatasetSpec,
    cost_column: str,
) -> float:
    """Cost-weighted mean over segments of |predicted cost per outcome / actual - 1|."""
    cost = holdout[cost_column].cast(pl.Float64).fill_null(0.0).to_numpy()
    segment = holdout[spec.segment_column].cast(pl.String).fill_null("(missing)").to_numpy()
    weighted, weights = 0.0, 0.0
    for level in set(segment.tolist()):
        mask = segment == level
        spent, got, expected = cost[mask].sum(), actual[mask].sum(), predicted[mask].sum()
        if spent <= 0 or got <= 0:
            continue
        # (spent / expected) / (spent / got) - 1
        off = abs(got / expected - 1.0) if expected > 0 else math.inf
        weighted += spent * off
        weights += spent
    return weighted / weights if weights else 0.0


# ---------------------------------------------------------------------------------------------
# Serving budget


def serving_budget(
    candidate: Mapping[str, float | None] | None,
    incumbent: Mapping[str, float | None] | None,
    limits: GateThresholds,
) -> GateResult:
    """p99 latency and size against the incumbent's (both measured by the serve check)."""
    threshold = limits.serving_p99_factor
    p99_ms = candidate.get("p99_ms") if candidate else None
    if not candidate or p99_ms is None:
        return GateResult(SERVING_BUDGET, NOT_APPLICABLE, None, threshold, "not measured")
    counts = {k: float(v) for k, v in candidate.items() if v is not None}
    incumbent_p99_ms = incumbent.get("p99_ms") if incumbent else None
    if not incumbent or incumbent_p99_ms is None:
        return GateResult(
            SERVING_BUDGET,
            NOT_APPLICABLE,
            None,
            threshold,
            f"p99 {p99_ms:.3f} ms, {candidate.get('model_bytes') or 0:,.0f} bytes; "
            "no measured incumbent to compare with",
            counts,
        )
    p99 = p99_ms / max(incumbent_p99_ms, 1e-6)
    size = (candidate.get("model_bytes") or 0.0) / max(incumbent.get("model_bytes") or 1.0, 1.0)
    counts.update(
        incumbent_p99_ms=float(incumbent_p99_ms),
        incumbent_model_bytes=float(incumbent.get("model_bytes") or 0.0),
        p99_factor=p99,
        size_factor=size,
        size_factor_max=limits.serving_size_factor,
    )
    problems = []
    if p99 > limits.serving_p99_factor:
        problems.append(
            f"p99 {p99_ms:.3f} ms is {p99:.1f}x the incumbent's "
            f"{incumbent_p99_ms:.3f} ms (at most {limits.serving_p99_factor:.1f}x)"
        )
    if size > limits.serving_size_factor:
        problems.append(
            f"model size {candidate.get('model_bytes') or 0:,.0f} bytes is {size:.1f}x the "
            f"incumbent's {incumbent.get('model_bytes') or 0:,.0f} bytes (at most "
            f"{limits.serving_size_factor:.1f}x)"
        )
    failed = bool(problems)
    reason = (
        "; ".join(problems) if failed else f"p99 {p99:.1f}x and size {size:.1f}x the incumbent's"
    )
    return GateResult(
        SERVING_BUDGET, verdict(SERVING_BUDGET, failed, limits), p99, threshold, reason, counts
    )


# ---------------------------------------------------------------------------------------------
# Target leak


def feature_leak_scores(holdout: pl.DataFrame, spec: DatasetSpec) -> list[dict[str, Any]]:
    """Per model feature: the spec metric of a one-feature model (quantile-bin or level means
    fitted on the even rows of the holdout in (date, key) order, scored on the odd rows) and,
    for numeric features, the correlation with the target."""
    metric = spec.training.metric
    keys = [c for c in (spec.date_column, spec.event_key) if c in holdout.columns]
    frame = holdout.sort(keys) if keys else holdout
    y = frame[spec.target].cast(pl.Float64).to_numpy()
    fit, test = np.arange(frame.height) % 2 == 0, np.arange(frame.height) % 2 == 1
    if fit.sum() < 2 or test.sum() < 1:
        return []
    fallback = float(y[fit].mean())
    out = []
    for col in spec.model_feature_columns:
        if col not in frame.columns:
            continue
        series = frame[col]
        corr = None
        if col in spec.categorical_features:
            groups = series.cast(pl.String).fill_null("(missing)").to_numpy()
        else:
            x = series.cast(pl.Float64).to_numpy()
            finite = np.isfinite(x)
            if finite.sum() > 2 and np.std(x[finite]) > 0 and np.std(y[finite]) > 0:
                corr = float(np.corrcoef(x[finite], y[finite])[0, 1])
            edges = np.unique(np.nanquantile(x[fit & finite], np.linspace(0, 1, LEAK_BINS + 1)))
            groups = np.where(finite, np.searchsorted(edges, x, side="right"), -1).astype(str)
        means: dict[str, float] = {}
        for level in set(groups[fit].tolist()):
            means[level] = float(y[fit & (groups == level)].mean())
        pred = np.array([means.get(g, fallback) for g in groups[test]])
        score = metrics(y[test], pred)[metric]
        out.append({"feature": col, "score": _clean(score), "correlation": corr})
    return out


def target_leak(
    features: Sequence[Mapping[str, Any]],
    proposal_score: float | None,
    best_baseline_score: float | None,
    limits: GateThresholds,
    metric: str,
) -> GateResult:
    """A feature that predicts the target almost alone, or an implausibly good proposal."""
    threshold = limits.leak_feature_ratio
    if best_baseline_score is None or not best_baseline_score > 0:
        return GateResult(
            TARGET_LEAK, NOT_APPLICABLE, None, threshold, "no baseline score to compare with"
        )
    suspects, lowest = [], math.inf
    for row in features:
        ratio = row["score"] / best_baseline_score if row["score"] is not None else math.inf
        lowest = min(lowest, ratio)
        corr = row.get("correlation")
        if ratio <= limits.leak_feature_ratio:
            suspects.append(
                f"feature {row['feature']} alone scores {metric} {row['score']:.4f}, "
                f"{ratio:.0%} of the best baseline's {best_baseline_score:.4f} (leak below "
                f"{limits.leak_feature_ratio:.0%})"
            )
        elif corr is not None and abs(corr) >= limits.leak_correlation:
            suspects.append(
                f"feature {row['feature']} correlates {corr:.3f} with the target (leak at "
                f"{limits.leak_correlation:.2f})"
            )
    champion_ratio = (
        proposal_score / best_baseline_score if proposal_score is not None else math.inf
    )
    if champion_ratio <= limits.leak_champion_ratio:
        suspects.append(
            f"the proposal's {metric} {proposal_score:.4f} is {champion_ratio:.0%} of the best "
            f"baseline's {best_baseline_score:.4f}, implausibly good (at most "
            f"{limits.leak_champion_ratio:.0%})"
        )
    counts = {
        "features": len(features),
        "suspects": len(suspects),
        "lowest_feature_ratio": _clean(lowest) or math.nan,
        "proposal_ratio": _clean(champion_ratio) or math.nan,
        "champion_ratio_min": limits.leak_champion_ratio,
        "correlation_max": limits.leak_correlation,
    }
    failed = bool(suspects)
    reason = (
        "target leak suspected: " + "; ".join(suspects)
        if failed
        else f"best one-feature model at {lowest:.0%} of the best baseline, proposal at "
        f"{champion_ratio:.0%}"
    )
    return GateResult(
        TARGET_LEAK,
        verdict(TARGET_LEAK, failed, limits),
        _clean(min(lowest, champion_ratio)),
        threshold,
        reason,
        counts,
    )
