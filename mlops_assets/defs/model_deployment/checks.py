"""Sanity rules of model deployment, reported from the decision objects rather than restated:
the evaluation of a training date (`champion`) and the decision history (`champion_history`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import dagster as dg

from mlops_assets.defs.common import Project, severity

if TYPE_CHECKING:
    # The promotion module imports polars, which loading the definitions does without.
    import polars as pl

    from mlops_assets.ml.promotion import Evaluation
    from mlops_assets.ml.selection import Decision

BASELINE_NEVER_CHAMPION = "baseline_never_champion"
CHAMPION_BEATS_BASELINES = "champion_beats_baselines"
CHAMPION_SERVES = "champion_serves"
ONE_DECISION = "one_decision_per_training_date"
IN_FORCE_NOT_BASELINE = "champion_in_force_never_baseline"
NO_REGRESSION = "no_regression_vs_incumbent"
# Metadata of a check result whose failure its asset alerts itself: the alert sensor skips it.
ALERTED_BY_ASSET = "alerted_by_asset"
# The promotion gates (mlops_assets.ml.gates), one check each on the decision history.
GATE_DESCRIPTIONS = {
    "segment_guardrail": "No segment holding at least {segment_min_share:.0%} of the holdout's "
    "cost (volume without a cost column) scores worse than the incumbent on it by more than "
    "{segment_margin:.0%}.",
    "business_benchmark": "Bias of the total within -{bias_under_max:.0%}..+{bias_over_max:.0%} "
    "and, with a cost column, predicted cost per outcome within {cost_per_outcome_band:.0%} of "
    "the actual (cost-weighted over segments).",
    "serving_budget": "Single-row p99 latency at most {serving_p99_factor:.1f}x and size at most "
    "{serving_size_factor:.1f}x the incumbent's, measured in the fresh-process serve check.",
    "target_leak": "No feature predicts the target almost alone (one-feature model at most "
    "{leak_feature_ratio:.0%} of the best baseline's error, or correlation at least "
    "{leak_correlation:.2f}), and no proposal at most {leak_champion_ratio:.0%} of it.",
}


def gate_limits(p: Project):
    """The environment's gate thresholds with the dataset spec's overrides applied."""
    from mlops_assets.dataset import gate_overrides

    return p.settings.thresholds.gates.with_overrides(gate_overrides(p.spec, p.settings.env))


def champion_check_specs(p: Project) -> list[dg.AssetCheckSpec]:
    margin = p.spec.training.baseline_margin
    described = {
        BASELINE_NEVER_CHAMPION: (
            "A baseline can never become champion. Fails (and proposes nothing) when a "
            "baseline tops the leaderboard: the models are no better than an average."
        ),
        CHAMPION_BEATS_BASELINES: (
            f"The proposal beats the best baseline by at least {margin:.0%} on the holdout."
        ),
        CHAMPION_SERVES: (
            "The proposed model version loads from the registry in a fresh process and "
            "predicts sample rows; if not, nothing is proposed."
        ),
    }
    # Not blocking: the decision history must still record this date (a failed proposal
    # is a "keep"), and it never puts a baseline or a non-serving model in force. A failed
    # ERROR check still alerts.
    return [
        dg.AssetCheckSpec(name, asset="champion", blocking=False, description=text)
        for name, text in described.items()
    ]


def _num(value: float | None) -> float:
    return float(value) if value is not None and math.isfinite(value) else float("nan")


def _proposed_version(decision: Decision) -> str | None:
    """The version the champion becomes, or "none" when it does not change."""
    chosen = decision.chosen
    return chosen.version if decision.promoted and chosen is not None else "none"


def champion_check_results(p: Project, ev: Evaluation) -> list[dg.AssetCheckResult]:
    decision = ev.decision
    metric = decision.metric
    margin = p.spec.training.baseline_margin
    top = sorted(ev.leaderboard, key=lambda e: (e.value(metric), not e.is_baseline, e.name))[0]
    model, baseline = decision.best_model, decision.best_baseline
    return [
        dg.AssetCheckResult(
            check_name=BASELINE_NEVER_CHAMPION,
            passed=not decision.baseline_topped,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "observed": f"{top.name} ({top.role}) tops the leaderboard",
                "threshold": "the top candidate is not a baseline",
                "top_score": _num(top.value(metric)),
                "proposal": _proposed_version(decision),
                "reason": decision.reason,
            },
        ),
        dg.AssetCheckResult(
            check_name=CHAMPION_BEATS_BASELINES,
            passed=decision.promoted,
            severity=severity(p.settings.thresholds.strict),
            metadata={
                "observed": _num(model.value(metric) if model else None),
                "threshold": _num(baseline.value(metric) * (1 - margin) if baseline else None),
                "best_baseline": baseline.name if baseline else "none",
                "margin": margin,
                "metric": metric,
                "reason": decision.reason,
            },
        ),
        dg.AssetCheckResult(
            check_name=CHAMPION_SERVES,
            passed=ev.serves_ok,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "observed": "loads and predicts" if ev.serves_ok else "failed",
                "threshold": "loads from its registry URI and predicts sample rows",
                "version": _proposed_version(decision),
                "detail": ev.serves_detail[-2000:],
            },
        ),
    ]


def history_check_specs(p: Project) -> list[dg.AssetCheckSpec]:
    strict = p.settings.thresholds.strict
    limits = gate_limits(p)
    gate_specs = [
        dg.AssetCheckSpec(
            name,
            asset="champion_history",
            blocking=False,
            description=text.format(**limits.__dict__)
            + (
                " Refuses the promotion in this environment (the incumbent stays, one alert)."
                if limits.blocks(name)
                else " Warns in this environment."
            )
            + " Reports the latest training decision's gate.",
        )
        for name, text in GATE_DESCRIPTIONS.items()
    ]
    return [
        *gate_specs,
        dg.AssetCheckSpec(
            ONE_DECISION,
            asset="champion_history",
            blocking=True,
            description="Every evaluated training date has exactly one decision.",
        ),
        dg.AssetCheckSpec(
            IN_FORCE_NOT_BASELINE,
            asset="champion_history",
            blocking=True,
            description="The champion in force is never a baseline, after any decision.",
        ),
        dg.AssetCheckSpec(
            NO_REGRESSION,
            asset="champion_history",
            blocking=strict,
            description="No training decision replaced the champion in force by a model that "
            "scored worse than it on the same holdout.",
        ),
    ]


def history_check_results(p: Project, history: pl.DataFrame) -> list[dg.AssetCheckResult]:
    import polars as pl

    from mlops_assets.ml import history_queries, promotion

    training = history.filter(pl.col("kind") == promotion.TRAINING)
    counts = training.group_by("training_date").len()
    repeated = counts.filter(pl.col("len") != 1)["training_date"].to_list()
    baselines = history_queries.baseline_in_force(history)
    changed = training.filter(
        (pl.col("to_version") != pl.col("from_version")) & pl.col("incumbent_score").is_not_null()
    )
    worse = changed.filter(pl.col("chosen_score") >= pl.col("incumbent_score"))
    return [
        *_gate_check_results(p, history),
        dg.AssetCheckResult(
            check_name=ONE_DECISION,
            passed=not repeated,
            metadata={
                "observed": f"{counts.height} training dates, {len(repeated)} with other than "
                "one decision",
                "threshold": "exactly one decision per training date",
                "training_dates": counts.height,
                "repeated": ", ".join(map(str, repeated)) or "none",
            },
        ),
        dg.AssetCheckResult(
            check_name=IN_FORCE_NOT_BASELINE,
            passed=not baselines,
            metadata={
                "observed": f"{len(baselines)} decisions left a baseline in force",
                "threshold": "0",
                "champion_in_force": history_queries.current(history) or "none",
            },
        ),
        dg.AssetCheckResult(
            check_name=NO_REGRESSION,
            passed=worse.is_empty(),
            severity=severity(p.settings.thresholds.strict),
            metadata={
                "observed": f"{worse.height} of {changed.height} replacements scored worse",
                "threshold": "0",
                "dates": ", ".join(map(str, worse["training_date"].to_list())) or "none",
            },
        ),
    ]


def _gate_check_results(p: Project, history: pl.DataFrame) -> list[dg.AssetCheckResult]:
    """Each gate as the latest training decision recorded it (never re-evaluated here)."""
    import polars as pl

    from mlops_assets.ml import history_queries, promotion

    limits = gate_limits(p)
    latest = history_queries.latest_training(history)
    recorded = history_queries.gate_results(latest) if latest else {}
    training = history.filter(pl.col("kind") == promotion.TRAINING).to_dicts()
    out = []
    for name in GATE_DESCRIPTIONS:
        result = recorded.get(name)
        refusals = sum(
            1
            for row in training
            if row["action"] == "refused"
            and (r := history_queries.gate_results(row).get(name)) is not None
            and r.refused
        )
        metadata = {
            "training_date": str(latest["training_date"]) if latest else "none",
            "verdict": result.verdict if result else "not evaluated (no proposal)",
            "observed": _num(result.observed if result else None),
            "threshold": _num(result.threshold if result else None),
            "reason": result.reason if result else "no proposal reached this gate",
            "blocking_here": limits.blocks(name),
            "decisions_refused_by_gate": refusals,
            "training_decisions": len(training),
            # A refusal is alerted once, by the decision history, naming the gate.
            ALERTED_BY_ASSET: True,
        }
        for key, value in (result.counts if result else {}).items():
            if isinstance(value, int | float):
                metadata[f"count_{key}"] = _num(float(value))
        out.append(
            dg.AssetCheckResult(
                check_name=name,
                passed=result is None or result.passed,
                severity=(
                    dg.AssetCheckSeverity.ERROR
                    if limits.blocks(name)
                    else dg.AssetCheckSeverity.WARN
                ),
                metadata=metadata,
            )
        )
    return out
